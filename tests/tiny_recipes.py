"""Recipe pieces for tests that need a speech model small enough to train in seconds on a CPU. They sit inside
``str.format`` templates (braces doubled) and are joined with each test's own data, optimiser and trainer lines.
And the training step of the speech tasks for tests that drive a model directly (the model's outputs, the task's
losses)."""

from avtrain.tasks.speech.losses import BridgingWeights, bridging_speech_loss, two_tower_loss


def bridging_step(model, batch: dict, weights: BridgingWeights | None = None) -> tuple:
    """(outputs, total, parts) of the bridging speech model on a batch, as BridgingSpeechTask.losses computes it."""
    out = model(batch["video"], batch["mel"], batch.get("lengths"), batch.get("mask"))
    total, parts = bridging_speech_loss(out, batch, model.frames_per_step, weights or BridgingWeights())
    return out, total, parts


def two_tower_step(model, batch: dict, kind: str = "l2") -> tuple:
    """(outputs, total, parts) of the two-tower model on a batch, as TwoTowerTask.losses computes it."""
    out = model(batch["video"], batch.get("flow"), batch.get("lengths"), batch.get("centre"))
    total, parts = two_tower_loss(out, batch, model.r, kind)
    return out, total, parts

TINY_SPEECH_MODEL = """augment: none
model: speech
memory_conf: {{num_slots: 4}}
model_conf: {{in_channels: 1, width: 0.125, embed_dim: 16, audio_channels: [4, 8],
              decoder: {{prenet_dims: [8, 8], attention_rnn: 16, decoder_rnn: 16, attention_dim: 8,
                         location_filters: 4, postnet_channels: 8}}}}
"""
