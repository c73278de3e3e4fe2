"""Two-tower training windows (issue 13, item 3a): a training window of ``data.max_frames`` frames is loaded with
K // 2 frames of context on each side, so its border frames get the same K-frame windows (real neighbours, real
flow) as when the whole clip is predicted; the loss covers the window only; only the loaded frames' flow is kept.

Synthetic samples, encoded with avbridge's own field codecs, so every value can be traced to its frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avbridge.sample import encode_field
from avtrain.config import load_recipe
from avtrain.data import ClipLoader, collate
from avtrain.models.two_tower import TwoTowerModel, centre_frames, frame_windows
from avtrain.tasks import task_for
from avtrain.tasks.base import Fields
from tiny_recipes import two_tower_step

REPO = Path(__file__).resolve().parents[1]
T, H, W, WINDOW, SCALE = 30, 40, 32, 8, 0.05


def _raw_clip(seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    """A 30-frame two-tower sample: random gray faces and flow; mel row 0 holds each spectrogram column's index
    (exact in float16), which tells where a loaded window starts."""
    rng = np.random.default_rng(seed)
    face = rng.integers(0, 256, (T, H, W), dtype=np.uint8)
    flow = rng.integers(-100, 100, (T - 1, H, W, 2), dtype=np.int8)
    mel = rng.random((80, 4 * T)).astype(np.float32)
    mel[0] = np.arange(4 * T)
    linear = rng.random((321, 4 * T)).astype(np.float32)
    meta = {"num_frames": T, "samples_per_frame": 640, "sample_rate": 16000, "label": None, "text": "",
            "spectrogram": {"hop_length": 160, "n_mels": 80, "n_fft": 640}, "flow": {"scale": SCALE}}
    raw = {"__key__": f"clip{seed}", "face.npy": encode_field("face.npy", face), "json": encode_field("json", meta),
           "flow.npz": encode_field("flow.npz", flow), "mel.npy": encode_field("mel.npy", mel),
           "linear.npy": encode_field("linear.npy", linear)}
    return raw, face, flow.astype(np.float32) * SCALE


def _recipe(tmp_path: Path, max_frames: int | None = WINDOW):
    return load_recipe(REPO / "recipes" / "grid-s1-speech-two-tower-cpu.yaml",
                       [f"data.shards={tmp_path}", f"output_dir={tmp_path / 'run'}",
                        f"data.max_frames={'null' if max_frames is None else max_frames}"])


FIELDS = Fields(flow=True, linear=True, context=4)  # the two-tower task's (K = 9), as the engine passes them


def _tiny_model() -> TwoTowerModel:
    torch.manual_seed(0)
    return TwoTowerModel(width=0.125, fc_dim=32, n_linear=321,
                         cbhg=dict(bank_size=2, bank_channels=8, projections=(16, 80), highway_dim=8, gru_dim=8)).eval()


def test_two_tower_task_asks_for_k_half_frames_of_context(tmp_path):
    fields = task_for(_recipe(tmp_path)).fields()
    assert fields == Fields(flow=True, linear=True, context=4) == FIELDS  # K = 9


def test_training_windows_load_context_and_keep_only_their_flow(tmp_path):
    recipe = _recipe(tmp_path)
    raw, _, flow = _raw_clip()
    seen = set()
    for epoch in range(40):  # random windows: some at the clip's start or end, where the context is cut short
        s = ClipLoader(recipe, train=True, epoch=epoch, task_fields=FIELDS)(raw)
        first = int(s["mel"][0, 0]) // 4  # the first loaded frame
        c0, c1 = s["centre"]
        start, stop = first + c0, first + c1
        assert c1 - c0 == WINDOW
        assert first == max(0, start - 4) and first + len(s["video"]) == min(T, stop + 4)
        n = len(s["video"])
        assert s["mel"].shape == (80, 4 * n) and s["linear"].shape == (321, 4 * n)
        np.testing.assert_array_equal(s["flow"], flow[first : first + n - 1])  # only the loaded frames' flow
        seen.add("start" if start < 4 else "end" if stop > T - 4 else "inside")
    assert seen == {"start", "end", "inside"}
    s = ClipLoader(recipe, train=False, task_fields=FIELDS)(raw)  # validation: the centre window, with its context
    assert int(s["mel"][0, 0]) // 4 == (T - WINDOW) // 2 - 4 and s["centre"] == (4, 4 + WINDOW)
    # no max_frames: the whole clip is the window
    whole = ClipLoader(_recipe(tmp_path, None), train=True, task_fields=FIELDS)(raw)
    assert len(whole["video"]) == T and whole["centre"] == (0, T) and whole["flow"].shape[0] == T - 1


def _whole_clip_mel(model: TwoTowerModel, tmp_path: Path, raw: dict) -> torch.Tensor:
    s = ClipLoader(_recipe(tmp_path, None), train=False, task_fields=FIELDS)(raw)
    out = model.predict_clip(torch.from_numpy(s["video"]), torch.from_numpy(s["flow"]).permute(0, 3, 1, 2))
    return out["mel"]


def test_a_training_window_predicts_what_the_whole_clip_prediction_does(tmp_path):
    """The fix: every frame of a training window, border frames included, gets exactly the mel that whole-clip
    inference gives it. Without the context (the old loader) the border frames' windows repeat edge frames and see
    zero flow, and their mel differs."""
    recipe, model = _recipe(tmp_path), _tiny_model()
    raw, _, _ = _raw_clip()
    reference = _whole_clip_mel(model, tmp_path, raw)  # (80, 4T)
    samples = [ClipLoader(recipe, train=True, epoch=e, task_fields=FIELDS)(raw) for e in range(6)]
    batch = collate(samples)
    with torch.no_grad():
        mel = model.frame_mel(batch["video"], batch["flow"], batch["lengths"], batch["centre"])
    assert mel.shape == (6, 80, 4 * WINDOW)
    for i, s in enumerate(samples):
        start = int(s["mel"][0, 0]) // 4 + s["centre"][0]
        torch.testing.assert_close(mel[i], reference[:, 4 * start : 4 * (start + WINDOW)], rtol=1e-4, atol=1e-5)

    old = ClipLoader(recipe, train=True, epoch=0, task_fields=Fields(flow=True, linear=True))(raw)  # no context
    assert "centre" not in old and len(old["video"]) == WINDOW
    start = int(old["mel"][0, 0]) // 4
    b = collate([old])
    with torch.no_grad():
        cut = model.frame_mel(b["video"], b["flow"], b["lengths"])[0]
    want = reference[:, 4 * start : 4 * (start + WINDOW)]
    assert 0 < start < T - WINDOW  # a window with frames on both sides in the clip: both borders are wrong
    assert not torch.allclose(cut[:, :4], want[:, :4], atol=1e-3)  # the first frame's window lost its left side
    assert not torch.allclose(cut[:, -4:], want[:, -4:], atol=1e-3)


def test_two_tower_loss_counts_the_window_only(tmp_path):
    recipe, model = _recipe(tmp_path), _tiny_model()
    raw, _, _ = _raw_clip()
    batch = collate([ClipLoader(recipe, train=True, epoch=e, task_fields=FIELDS)(raw) for e in range(3)])
    with torch.no_grad():
        base, base_total, base_parts = two_tower_step(model, batch)
        assert base["mel"].shape == (3, 80, 4 * WINDOW) and base["linear"].shape == (3, 321, 4 * WINDOW)
        outside, inside = dict(batch), dict(batch)
        keep = torch.zeros_like(batch["mel"][:1, :1], dtype=torch.bool).expand_as(batch["mel"][:, :1]).clone()
        for i, (c0, c1) in enumerate(batch["centre"].tolist()):
            keep[i, 0, 4 * c0 : 4 * c1] = True
        outside["mel"] = torch.where(keep, batch["mel"], batch["mel"] + 5)
        outside["linear"] = torch.where(keep, batch["linear"], batch["linear"] + 5)
        inside["mel"] = torch.where(keep, batch["mel"] + 5, batch["mel"])
        assert float(two_tower_step(model, outside)[1]) == pytest.approx(float(base_total), rel=1e-6)
        assert float(two_tower_step(model, inside)[2]["mel"]) > float(base_parts["mel"]) + 1


def test_centre_frames_cuts_each_clips_window():
    spec = torch.arange(2 * 3 * 40, dtype=torch.float32).view(2, 3, 40)
    out = centre_frames(spec, torch.tensor([[2, 5], [0, 2]]), 4)
    assert out.shape == (2, 3, 12)
    torch.testing.assert_close(out[0], spec[0, :, 8:20])
    torch.testing.assert_close(out[1, :, :8], spec[1, :, :8])
    assert float(out[1, :, 8:].abs().max()) == 0.0  # a shorter window is padded with zeros


def test_frame_windows_of_a_centre_use_the_real_neighbours():
    t, k = 12, 9
    video = torch.arange(t, dtype=torch.float32)[None, :, None, None].expand(1, t, 2, 2).clone()
    flow = torch.arange(1, t, dtype=torch.float32)[None, :, None, None, None].expand(1, t - 1, 2, 2, 2).clone()
    pixels, flows, where = frame_windows(video, flow, torch.tensor([t]), k, torch.tensor([[4, 8]]))
    assert where.tolist() == [[0, i] for i in range(4, 8)]  # only the centre's frames are windowed
    assert pixels[0, :, 0, 0].tolist() == list(range(0, 9))  # frame 4: frames 0..8, none repeated
    assert pixels[3, :, 0, 0].tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert flows[0, ::2, 0, 0].tolist() == list(range(1, 9))  # pairs (0,1) .. (7,8): all real flow


def test_two_tower_validation_scores_the_whole_clip_inference(tmp_path):
    """Validation runs what inference runs (whole clip, sliding post-net), once: its ``free_running`` is the L1 of
    ``predict_clip``'s mel + linear, its loss terms the model's MSE of the same prediction; the mel term equals the
    training forward's on the whole clip (each frame's mel depends on its own K-window only)."""
    from avtrain.tasks.speech.predict import post_net_window

    recipe, model = _recipe(tmp_path), _tiny_model()
    task = task_for(recipe)
    assert task.whole_clip_validation and task.metric == "free_running"
    samples = [ClipLoader(_recipe(tmp_path, None), train=False, task_fields=FIELDS)(_raw_clip(seed)[0])
               for seed in (0, 1)]
    batch = collate(samples)
    sums = task.validation_sums(model, batch)
    assert sums["samples"] == 2
    l1 = mse = 0.0
    with torch.no_grad():
        for s in samples:
            out = model.predict_clip(torch.from_numpy(s["video"]), torch.from_numpy(s["flow"]).permute(0, 3, 1, 2),
                                     window=post_net_window(recipe))
            for name in ("mel", "linear"):
                diff = out[name] - torch.from_numpy(s[name])
                l1, mse = l1 + float(diff.abs().mean()), mse + float((diff ** 2).mean())
        forward = two_tower_step(model, batch)[2]
    assert sums["free_running"] == pytest.approx(l1, rel=1e-5)
    assert sums["prediction"] == pytest.approx(mse, rel=1e-5) and sums["total"] == sums["prediction"]
    assert sums["mel"] / 2 == pytest.approx(float(forward["mel"]), rel=1e-4)
