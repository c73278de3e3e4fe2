"""Recipe pieces for tests that need a speech model small enough to train in seconds on a CPU. They sit inside
``str.format`` templates (braces doubled) and are joined with each test's own data, optimiser and trainer lines."""

TINY_SPEECH_MODEL = """augment: none
model: speech
memory_conf: {{num_slots: 4}}
model_conf: {{in_channels: 1, width: 0.125, embed_dim: 16, audio_channels: [4, 8],
              decoder: {{prenet_dims: [8, 8], attention_rnn: 16, decoder_rnn: 16, attention_dim: 8,
                         location_filters: 4, postnet_channels: 8}}}}
"""
