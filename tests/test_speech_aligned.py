"""The frame-synchronous decoder of the bridging speech model (``decoder.type: aligned``): its recipe schema, its
shapes and padding, that training decodes what inference decodes, and the aligned recipes."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from avtrain.config import ALIGNED_DECODER_KEYS, RecipeError, load_recipe, validate_recipe
from avtrain.models.aligned_decoder import AlignedDecoder
from avtrain.models.bridging_speech import SpeechModel, running_stats_kept
from avtrain.models.tacotron import TacotronDecoder
from avtrain.tasks import task_for

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
BASE = {"output_dir": "x", "data": {"shards": "s", "color": "rgb"}, "model": "speech"}


def test_aligned_decoder_keys_match_its_module():
    assert set(ALIGNED_DECODER_KEYS) == set(inspect.signature(AlignedDecoder).parameters) - {"memory_dim", "n_mels"}


def test_decoder_type_is_a_discriminated_conf():
    old = validate_recipe({**BASE, "model_conf": {"decoder": {"attention_rnn": 64}}})  # no type: Tacotron 2
    assert old.model_conf["decoder"]["type"] == "tacotron" and old.model_conf["decoder"]["attention_rnn"] == 64
    new = validate_recipe({**BASE, "model_conf": {"decoder": {"type": "aligned", "channels": 64}}})
    assert new.model_conf["decoder"] == {**new.model_conf["decoder"], "type": "aligned", "channels": 64}
    assert "attention_rnn" not in new.model_conf["decoder"]
    with pytest.raises(RecipeError) as err:  # a Tacotron key under the aligned decoder is refused, in one line
        validate_recipe({**BASE, "model_conf": {"decoder": {"type": "aligned", "attention_rnn": 64}}})
    assert "attention_rnn" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RecipeError):
        validate_recipe({**BASE, "model_conf": {"decoder": {"type": "wavenet"}}})
    with pytest.raises(RecipeError, match="even"):
        validate_recipe({**BASE, "model_conf": {"decoder": {"type": "aligned", "channels": 33}}})
    model = task_for(new).build_model()
    assert isinstance(model.decoder, AlignedDecoder) and model.frames_per_step == 4
    tacotron = task_for(validate_recipe({**BASE, "model_conf": {"width": 0.125}})).build_model()
    assert isinstance(tacotron.decoder, TacotronDecoder)


def _tiny(num_slots: int) -> SpeechModel:
    return SpeechModel.build(num_slots=num_slots, in_channels=1, n_mels=16, width=0.125, embed_dim=32,
                             audio_channels=[8, 16], pad_last_conv=True, variant="official",
                             decoder={"type": "aligned", "channels": 32, "postnet_channels": 16})


def test_aligned_decoder_upsamples_4x_and_ignores_padding():
    torch.manual_seed(0)
    dec = AlignedDecoder(24, n_mels=16, channels=32, postnet_channels=16).eval()
    x = torch.randn(2, 7, 24)
    mask = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    out = dec(x, mask)
    assert out["mel"].shape == out["mel_post"].shape == (2, 16, 28) and out["alignments"] is None
    y = x.clone()
    y[1, 5:] = 100.0  # what sits in the padding must not change the real frames' mel
    again = dec(y, mask)
    assert torch.allclose(out["mel_post"][1, :, :20], again["mel_post"][1, :, :20], atol=1e-5)
    assert torch.allclose(out["mel_post"][0], again["mel_post"][0])
    short = dec(x[1:, :5], mask[1:, :5])  # the padded clip decodes as the clip alone
    assert torch.allclose(short["mel_post"][0], out["mel_post"][1, :, :20], atol=1e-5)


@pytest.mark.parametrize("num_slots", [0, 8])
def test_training_decodes_what_inference_decodes(num_slots):
    """No teacher forcing: the training forward's recall-path mel is infer()'s, whatever the target mel says."""
    torch.manual_seed(0)
    model = _tiny(num_slots).eval()
    video = torch.rand(2, 6, 1, 32, 32)
    mel = torch.randn(2, 16, 24)
    out = model(video, mel)
    inf = model.infer(video)
    assert torch.allclose(out["mel_post"], inf["mel_post"], atol=1e-5)
    other = model(video, torch.randn(2, 16, 24))
    assert torch.allclose(other["mel_post"], out["mel_post"], atol=1e-5)
    # so validation may take its loss as the free-running error (one pass); a Tacotron model may not
    assert model.training_loss_is_inference
    tacotron = SpeechModel.build(num_slots=num_slots, in_channels=1, n_mels=16, embed_dim=32, width=0.125,
                                 audio_channels=[8, 16], decoder={"prenet_dims": [16, 16], "attention_rnn": 32,
                                                                  "decoder_rnn": 32, "attention_dim": 16,
                                                                  "location_filters": 4, "postnet_channels": 16})
    assert not tacotron.training_loss_is_inference


def test_audio_path_leaves_the_decoders_running_statistics_to_the_recall_path():
    torch.manual_seed(0)
    model = _tiny(8).train()
    batch = {"video": torch.rand(2, 6, 1, 32, 32), "mel": torch.randn(2, 16, 24)}
    norms = [m for m in model.decoder.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    with running_stats_kept(model.decoder):
        before = [n.running_mean.clone() for n in norms]
        model.decoder(torch.randn(2, 6, 32) * 5)
        assert all(torch.equal(a, n.running_mean) for a, n in zip(before, norms))
    assert all(n.momentum == 0.1 for n in norms)
    # one training step moves them exactly as the recall path alone does
    recall_only = _tiny(8).train()
    recall_only.load_state_dict(model.state_dict())
    recall_only.audio_path = False
    torch.manual_seed(1)  # the same dropout masks on the recall path of both
    model(batch["video"], batch["mel"])
    torch.manual_seed(1)
    recall_only(batch["video"], batch["mel"])
    for a, b in zip(norms, [m for m in recall_only.decoder.modules() if isinstance(m, torch.nn.BatchNorm1d)]):
        assert torch.allclose(a.running_mean, b.running_mean, atol=1e-6)
        assert torch.allclose(a.running_var, b.running_var, atol=1e-6)


@pytest.mark.parametrize("name,slots", [("grid-s1-speech-aligned", 150), ("grid-s1-speech-aligned-baseline", 0)])
def test_aligned_recipes(name, slots):
    full, cpu = load_recipe(RECIPES / f"{name}.yaml"), load_recipe(RECIPES / f"{name}-cpu.yaml")
    for r in (full, cpu):
        assert r.model == "speech" and r.model_conf["decoder"]["type"] == "aligned"
        assert r.memory_conf["num_slots"] == slots and r.memory_conf["variant"] == "official"
    # the paper's face front for the GPU recipe; the CPU recipe reads the mouth crop, resized by the data module
    assert (full.data.video_field, full.data.color, full.data.video_size) == ("face", "rgb", None)
    assert full.model_conf["width"] == 1.0 and full.model_conf["embed_dim"] == 512
    assert (cpu.data.video_field, cpu.data.color, cpu.data.video_size) == ("mouth", "gray", 64)
    assert cpu.model_conf["in_channels"] == 1 and cpu.model_conf["pad_last_conv"]
    assert full.trainer.threads is None and cpu.trainer.threads == 2
