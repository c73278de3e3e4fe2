"""Speech reconstruction pieces: the bridging speech model (supp. Table 2), the two-tower model (Ephrat et al. 2017),
Griffin-Lim and Mel-synth against avbridge.spectra on a real GRID waveform, the metrics, sliding-window averaging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avbridge.spectra import SpectrogramParams, linear_spectrogram, mel_spectrogram
from avtrain.models.bridging_speech import SpeechAudioFrontend, SpeechModel, SpeechVisualEncoder
from avtrain.models.sliding import gaussian_weights, sliding_window_average, window_starts
from avtrain.models.two_tower import Tower, TwoTowerModel, frame_windows
from avtrain.tasks.speech.vocoder import ExemplarBank, deemphasis, linear_to_wave, mel_to_wave
from tiny_recipes import bridging_step, two_tower_step

BRIDGING = SpectrogramParams()  # the bridging-grid preset: n_fft 800, hop 160, 80 mels, "log"
TWO_TOWER = SpectrogramParams(n_fft=640, win_length=640, normalisation="tacotron", preemphasis=0.97)
VCA = SpectrogramParams(n_fft=640, win_length=640, fmin=55, fmax=7500, normalisation="log-minmax", preemphasis=0.97,
                        highpass_hz=55)
TINY_DECODER = dict(prenet_dims=(32, 32), attention_rnn=48, decoder_rnn=48, attention_dim=16, location_filters=4,
                    location_kernel=5, postnet_channels=32)


def _stoi(ref: np.ndarray, est: np.ndarray, extended: bool = False) -> float:
    from pystoi import stoi

    return float(stoi(ref, est, 16000, extended=extended))


# ---------------------------------------------------------------- bridging speech model (supp. Table 2)
def _shapes(module: torch.nn.Module, kind: type, run) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: shapes.append(tuple(o.shape)))
             for m in module.modules() if isinstance(m, kind)]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return shapes


def test_speech_visual_module_matches_table2_for_96x96():
    enc = SpeechVisualEncoder(in_channels=3).eval()
    video = torch.randn(1, 5, 3, 96, 96)
    shapes = _shapes(enc.stack, torch.nn.Conv3d, lambda: enc.stack(video))
    # Table 2 (B, C, T, H, W) after each of the 16 Conv3d: H/2, H/4, H/8, H/16, H/32 (3 x 3), then H/32 - 2 = 1
    expected = [(32, 48)] * 3 + [(64, 24)] * 3 + [(128, 12)] * 3 + [(256, 6)] * 3 + [(512, 3)] * 3 + [(512, 1)]
    assert [(s[1], s[3]) for s in shapes] == expected
    assert all(s[2] == 5 and s[3] == s[4] for s in shapes)  # time kept, square maps
    with torch.no_grad():
        out = enc(video, torch.tensor([5]))
    assert out.shape == (1, 5, 512)  # BiLSTM, T x 512


def test_speech_audio_module_has_the_extra_5x5_conv():
    audio = SpeechAudioFrontend(n_mels=80).eval()
    mel = torch.randn(2, 80, 4 * 7)
    shapes = _shapes(audio.convs, torch.nn.Conv2d, lambda: audio(mel, torch.ones(2, 7, dtype=torch.bool)))
    kernels = [m.kernel_size for m in audio.convs.modules() if isinstance(m, torch.nn.Conv2d)]
    assert kernels[:3] == [(3, 3), (3, 3), (5, 5)]  # the 5x5 sits before the residual block's 3x3 convs
    assert shapes[:3] == [(2, 128, 40, 14), (2, 256, 20, 7), (2, 256, 20, 7)]  # M/2 x 2T, M/4 x T, M/4 x T
    with torch.no_grad():
        assert audio(mel, torch.ones(2, 7, dtype=torch.bool)).shape == (2, 7, 512)


def _tiny_speech(num_slots: int, variant: str = "paper") -> SpeechModel:
    torch.manual_seed(0)
    return SpeechModel.build(num_slots=num_slots, width=0.125, embed_dim=32, audio_channels=[8, 16],
                             variant=variant, decoder=TINY_DECODER)


@pytest.fixture(scope="module")
def speech_batch(grid_wave) -> dict:
    """Two real-shaped clips: 96 x 96 RGB frames (fixed noise: no face crops here) and the real GRID mel of s1/bbaf2n
    (bridging-grid parameters, normalised as avtrain.data does: (mel + 5) / 2.5), 8 and 6 frames."""
    t = 8
    mel = mel_spectrogram(grid_wave, BRIDGING, num_frames=4 * (len(grid_wave) // 640))
    mel = torch.from_numpy((mel + 5.0) / 2.5)
    g = torch.Generator().manual_seed(0)
    clips = torch.stack([mel[:, 4 * 20 : 4 * (20 + t)], mel[:, 4 * 40 : 4 * (40 + t)]])
    clips[1, :, 4 * 6 :] = 0  # second clip is 6 frames long, padded
    return {"video": torch.randn(2, t, 3, 96, 96, generator=g), "mel": clips, "lengths": torch.tensor([t, 6])}


@pytest.mark.parametrize("num_slots,variant", [(0, "paper"), (12, "paper"), (12, "official")])
def test_speech_model_optimises_and_infers_without_audio(speech_batch, num_slots, variant):
    torch.set_num_threads(1)
    model = _tiny_speech(num_slots, variant)
    assert (model.memory is None) == (num_slots == 0) and (model.audio is None) == (num_slots == 0)

    def loss() -> float:
        torch.manual_seed(1)  # same dropout masks (the prenet's stays on) for a like-for-like comparison
        with torch.no_grad():
            return float(bridging_step(model, speech_batch)[2]["task"])

    model.train()
    before = loss()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for step in range(12):
        torch.manual_seed(100 + step)
        out, total, parts = bridging_step(model, speech_batch)
        opt.zero_grad()
        total.backward()
        opt.step()
    after = loss()
    assert after < 0.88 * before, (before, after)  # measured: 0.78-0.80 of the start
    names = set(parts)
    assert {"mel_l1", "post_l1", "task", "total"} <= names
    if num_slots:
        assert {"save", "bridge", "mel_l1_audio", "post_l1_audio"} <= names
        assert out["src_address"].shape == out["tgt_address"].shape == (2, 8, num_slots)
    assert out["mel"].shape == out["mel_post"].shape == speech_batch["mel"].shape

    model.eval()
    if model.audio is not None:  # inference must not touch the audio module
        model.audio.forward = lambda *a, **k: (_ for _ in ()).throw(AssertionError("audio used at inference"))
    res = model.infer(speech_batch["video"][:1, :5])
    assert res["mel_post"].shape == (1, 80, 20) and res["alignments"].shape == (1, 5, 5)
    assert torch.isfinite(res["mel_post"]).all()
    if num_slots:
        assert res["src_address"].shape == (1, 5, num_slots)


def test_teacher_forcing_is_causal_and_masks_padding(speech_batch):
    model = _tiny_speech(8).eval()
    batch = {k: v.clone() for k, v in speech_batch.items()}
    torch.manual_seed(3)
    with torch.no_grad():
        a = bridging_step(model, batch)[0]
    batch["mel"][:, :, 4 * 5 :] += 3.0  # change the targets from step 5 on
    torch.manual_seed(3)
    with torch.no_grad():
        b = bridging_step(model, batch)[0]
    # step t reads the ground truth up to frame 4t - 1 only, so steps 0..5 (frames 0..23) are unchanged
    torch.testing.assert_close(a["mel"][0, :, : 4 * 6], b["mel"][0, :, : 4 * 6], rtol=0, atol=0)
    assert not torch.allclose(a["mel"][0, :, 4 * 6 :], b["mel"][0, :, 4 * 6 :])
    # attention never lands on the second clip's two padded frames
    assert float(a["alignments"][1, :, 6:].abs().max()) == 0.0


# ---------------------------------------------------------------- two-tower model (Ephrat et al. 2017)
def test_tower_reaches_5x4_for_a_160x128_face_with_the_paper_widths():
    tower = Tower(in_channels=9).eval()
    convs = [m for m in tower.blocks if hasattr(m, "body")]
    assert [b.body[-2].out_channels for b in convs] == [128, 128, 256, 256, 256, 256, 512, 512, 512, 512]
    assert tower.stem[0].out_channels == 128
    with torch.no_grad():
        assert tower.feature_map(torch.randn(1, 9, 160, 128)).shape == (1, 512, 5, 4)
    assert Tower(in_channels=16).stem[0].in_channels == 16  # flow: K - 1 = 8 (u, v) pairs


def test_frame_windows_repeat_a_clips_own_ends_and_zero_flow_across_them():
    # what whole-clip prediction does at a clip's first and last frames; a training window is loaded with K // 2
    # frames of context, so its borders get real neighbours (tests/test_avtrain_speech_two_tower.py)
    t, k = 6, 9
    video = torch.arange(t, dtype=torch.float32)[None, :, None, None].expand(1, t, 2, 2).clone()
    flow = torch.arange(1, t, dtype=torch.float32)[None, :, None, None, None].expand(1, t - 1, 2, 2, 2).clone()
    pixels, flows, where = frame_windows(video, flow, torch.tensor([t]), k)
    assert pixels.shape == (t, k, 2, 2) and flows.shape == (t, 2 * (k - 1), 2, 2)
    assert pixels[0, :, 0, 0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4]  # frame 0's window, centre at index 4
    assert pixels[5, :, 0, 0].tolist() == [1, 2, 3, 4, 5, 5, 5, 5, 5]
    # frame 2: pairs (-2,-1) (-1,0) (0,1) (1,2) (2,3) (3,4) (4,5) (5,6): flow value = index + 1, invalid = 0
    assert flows[2, ::2, 0, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 0]
    assert where.tolist() == [[0, i] for i in range(t)]


def _tiny_two_tower(**kw) -> TwoTowerModel:
    torch.manual_seed(0)
    return TwoTowerModel(width=0.125, fc_dim=64, n_linear=321,
                         cbhg=dict(bank_size=4, bank_channels=16, projections=(32, 80), highway_dim=16, gru_dim=16),
                         **kw)


def test_two_tower_optimises_on_real_spectrograms_and_predicts_whole_clips(grid_wave):
    torch.set_num_threads(1)
    t = 6
    mel = torch.from_numpy(mel_spectrogram(grid_wave, TWO_TOWER, num_frames=4 * (len(grid_wave) // 640)))
    lin = torch.from_numpy(linear_spectrogram(grid_wave, TWO_TOWER, num_frames=4 * (len(grid_wave) // 640)))
    g = torch.Generator().manual_seed(0)
    batch = {"video": torch.randn(2, t, 1, 40, 32, generator=g), "flow": torch.randn(2, t - 1, 2, 40, 32, generator=g),
             "mel": torch.stack([mel[:, 80 : 80 + 4 * t], mel[:, 160 : 160 + 4 * t]]),
             "linear": torch.stack([lin[:, 80 : 80 + 4 * t], lin[:, 160 : 160 + 4 * t]]),
             "lengths": torch.tensor([t, t])}
    model = _tiny_two_tower()
    out, _, parts = two_tower_step(model, batch)
    assert out["mel"].shape == (2, 80, 4 * t) and out["linear"].shape == (2, 321, 4 * t)
    assert set(parts) == {"mel", "linear", "total", "prediction"}
    model.eval()
    with torch.no_grad():
        before = float(two_tower_step(model, batch)[1])
    model.train()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(12):
        loss = two_tower_step(model, batch)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(two_tower_step(model, batch)[1])
    assert after < 0.7 * before, (before, after)

    pred = model.predict_clip(batch["video"][0], batch["flow"][0], window=4)
    assert pred["mel"].shape == (80, 4 * t) and pred["linear"].shape == (321, 4 * t)
    with torch.no_grad():  # each frame's mel depends only on its own K-window, not on the chunking
        torch.testing.assert_close(pred["mel"], two_tower_step(model, batch)[0]["mel"][0])

    model.freeze_encoder()
    model.train()
    assert not model.pixels.training and all(not p.requires_grad for p in model.flow.parameters())
    assert model.postnet.training and all(p.requires_grad for p in model.postnet.parameters())


def test_two_tower_single_tower_ablations_and_padding():
    pixels_only = _tiny_two_tower(use_flow=False)
    assert pixels_only.flow is None
    batch = {"video": torch.randn(2, 5, 1, 40, 32), "mel": torch.rand(2, 80, 20), "lengths": torch.tensor([5, 3])}
    with torch.no_grad():
        out = pixels_only.eval()(batch["video"], lengths=batch["lengths"])
    assert float(out["mel"][1, :, 12:].abs().max()) == 0.0  # padded frames get no prediction


# ---------------------------------------------------------------- sliding windows
def test_gaussian_sliding_average_recovers_a_known_sequence():
    truth = torch.randn(3, 4 * 30, dtype=torch.float64)
    exact = sliding_window_average(lambda s, e: truth[:, 4 * s : 4 * e], 30, 8, frames_per_step=4)
    torch.testing.assert_close(exact, truth)
    assert window_starts(30, 8) == list(range(23)) and window_starts(5, 8) == [0]

    # independent noise on every window: the weighted average of up to 8 predictions beats a single window
    g = torch.Generator().manual_seed(0)
    noisy = sliding_window_average(
        lambda s, e: truth[:, 4 * s : 4 * e] + 0.5 * torch.randn(3, 4 * (e - s), generator=g, dtype=torch.float64),
        30, 8, frames_per_step=4)
    inner = slice(4 * 7, 4 * 23)  # frames covered by all 8 windows
    assert float((noisy - truth)[:, inner].pow(2).mean().sqrt()) < 0.5 * 0.6

    # the weights: each window predicts its own start index; frame f averages s with w(f - 4 s) Gaussian weights
    const = sliding_window_average(lambda s, e: torch.full((1, 4 * (e - s)), float(s), dtype=torch.float64),
                                   12, 4, frames_per_step=4, sigma=1.0)
    w = gaussian_weights(16, 4.0)
    f = 20  # output frame 20 = video frame 5: windows 2..5 cover it, at positions 20 - 4 s
    expected = sum(s * w[f - 4 * s] for s in range(2, 6)) / sum(w[f - 4 * s] for s in range(2, 6))
    assert abs(float(const[0, f]) - float(expected)) < 1e-12
    assert float(w[0]) < float(w[7]) and abs(float(w[7]) - float(w[8])) < 1e-12  # peak at the centre


# ---------------------------------------------------------------- vocoder
def test_deemphasis_inverts_preemphasis_exactly():
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    y = np.append(x[:1], x[1:] - 0.97 * x[:-1])  # avbridge.spectra's pre-emphasis
    np.testing.assert_allclose(deemphasis(y, 0.97), x, atol=1e-4)


def test_griffin_lim_round_trip_on_real_grid_audio(grid_wave):
    """Thresholds from measurements on s1/bbaf2n (torch 2.13 CPU): mel -> Griffin-Lim 60 its gives STOI 0.959 /
    ESTOI 0.906 (bridging-grid), 0.974 / 0.938 (vca-grid); random phase (0 its) 0.796 / 0.623, 5 its 0.934 / 0.853.
    Linear (two-tower, tacotron + pre-emphasis) 0.991 / 0.976. A threshold ~0.02 under each measurement fails on
    random phase, a wrong STOI alignment (one hop off: 0.77) or a wrong denormalisation (0.58)."""
    w, n = grid_wave, 4 * (len(grid_wave) // 640)
    wm = mel_to_wave(mel_spectrogram(w, BRIDGING, n), BRIDGING)
    assert wm.shape == w.shape
    assert _stoi(w, wm) > 0.94 and _stoi(w, wm, extended=True) > 0.88
    # the re-analysed mel is close to the one inverted (random phase: 0.85 mean |diff| in ln units; here 0.09)
    assert np.abs(mel_spectrogram(wm, BRIDGING, n) - mel_spectrogram(w, BRIDGING, n)).mean() < 0.2

    wv = mel_to_wave(mel_spectrogram(w, VCA, n), VCA)
    assert _stoi(w, wv) > 0.95 and _stoi(w, wv, extended=True) > 0.91

    lin = linear_spectrogram(w, TWO_TOWER, n)
    wl = linear_to_wave(lin, TWO_TOWER)
    assert _stoi(w, wl) > 0.97 and _stoi(w, wl, extended=True) > 0.95
    # STOI ignores spectral tilt, so check the de-emphasis here: without it this difference is 0.056 (here 0.009)
    assert np.abs(linear_spectrogram(wl, TWO_TOWER, n) - lin).mean() < 0.02
    assert abs(float(wl.std()) / float(w.std()) - 1) < 0.1


def test_mel_synth_picks_exemplars_by_mel_and_synthesises(grid_wave):
    w, n = grid_wave, 4 * (len(grid_wave) // 640)
    mel, lin = mel_spectrogram(w, TWO_TOWER, n), linear_spectrogram(w, TWO_TOWER, n)
    clips = [(mel[:, : n // 2], lin[:, : n // 2]), (mel[:, n // 2 :], lin[:, n // 2 :])]
    by_mel = ExemplarBank.from_clips(clips, chunk=64)  # the paper's Mel-synth: the default
    both = ExemplarBank.from_clips(clips, search="mel+linear", chunk=64)
    assert by_mel.search == "mel" and by_mel.features.shape == (n, 80)
    rng = np.random.default_rng(0)
    noisy_mel, noisy_lin = mel + 0.01 * rng.standard_normal(mel.shape), lin + 0.01 * rng.standard_normal(lin.shape)
    for bank, feats, query in ((by_mel, mel.T, noisy_mel.T),
                               (both, np.concatenate([mel, lin], 0).T, np.concatenate([noisy_mel, noisy_lin], 0).T)):
        brute = ((query[:, None, :] - feats[None, :, :]) ** 2).sum(-1).argmin(1)
        idx = bank.nearest(noisy_mel, noisy_lin)
        assert idx.tolist() == brute.tolist()
        assert (idx.numpy() == np.arange(n)).mean() > 0.95  # small noise: (almost) every frame finds itself
    # a prediction whose mel is frame i's but whose linear part is frame j's: the mel search finds i whatever the
    # linear part, the concatenated search is pulled towards j (the linear part has 4x the bins)
    i, j = 10, n - 10
    assert int(by_mel.nearest(mel[:, i : i + 1], lin[:, j : j + 1])[0]) == i
    assert int(by_mel.nearest(mel[:, i : i + 1])[0]) == i  # no linear needed
    assert int(both.nearest(mel[:, i : i + 1], lin[:, j : j + 1])[0]) != i
    with pytest.raises(ValueError, match="needs the predicted linear"):
        both.nearest(mel[:, :3])
    with pytest.raises(ValueError, match="exemplar search must be one of"):
        ExemplarBank.from_clips(clips, search="linear")
    wave = by_mel.synthesise(noisy_mel, None, TWO_TOWER)
    assert _stoi(w, wave) > 0.95


# ---------------------------------------------------------------- metrics
def test_metrics_on_real_audio_count_failures_instead_of_raising(grid_wave):
    from avtrain.tasks.speech.metrics import METRICS, SpeechMetrics

    w = grid_wave
    m = SpeechMetrics()
    same = m.add("same", w, w)
    assert same["stoi"] > 0.999 and same["estoi"] > 0.999
    assert same["pesq_wb_16k"] > 4.4 and same["pesq_nb_8k"] > 4.4
    noisy = m.add("noisy", w, w + 0.05 * np.random.default_rng(0).standard_normal(len(w)).astype(np.float32))
    for name in METRICS:
        assert noisy[name] < same[name] - 0.2, name
    silent = m.add("silent", w, np.zeros_like(w))  # PESQ cannot score an all-zero estimate
    assert "pesq_wb_16k" not in silent and "pesq_nb_8k" not in silent
    m.add("short", w[:1000], w[:1000])  # 62 ms: PESQ needs >= 1/4 s
    s = m.summary()
    assert s["pesq_wb_16k"]["count"] == 2 and s["pesq_wb_16k"]["failed"] == 2
    assert any("BufferTooShort" in msg for msg in s["pesq_nb_8k"]["failures"])
    assert s["pesq_nb_8k"]["mean"] == pytest.approx((same["pesq_nb_8k"] + noisy["pesq_nb_8k"]) / 2)
    assert "wide-band" in s["pesq_wb_16k"]["label"] and "8 kHz" in s["pesq_nb_8k"]["label"]


def test_examples_write_wav_and_mel_figure(tmp_path, grid_wave):
    import soundfile as sf

    from avtrain.tasks.speech.plots import write_examples

    mel = mel_spectrogram(grid_wave, BRIDGING, 40)
    files = write_examples(tmp_path, "s1_bbaf2n", mel + 0.3, mel, 1.5 * grid_wave[:6400], 16000, grid_wave[:6400])
    wave, rate = sf.read(str(files["pred_wav"]))
    assert rate == 16000 and len(wave) == 6400 and np.abs(wave).max() <= 1.0  # loud prediction scaled, not clipped
    assert files["mel_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files["mel_png"].stat().st_size > 10_000
    assert files["true_wav"].exists()


def test_metrics_resample_other_rates_to_16k(grid_wave):
    from avtrain.tasks.speech.metrics import resample, score_clip

    w = resample(grid_wave, 16000, 14985).astype(np.float32)  # TCD-TIMIT's rate in the two-tower preset
    scores, errors = score_clip(w, w, 14985)
    assert not errors and scores["stoi"] > 0.999 and scores["pesq_nb_8k"] > 4.4


def test_speech_evaluator_synthesises_scores_and_writes_examples(tmp_path, grid_wave):
    import json

    from avtrain.tasks.speech.scoring import SpeechEvaluator

    w, n = grid_wave, 4 * (len(grid_wave) // 640)
    mel = mel_spectrogram(w, BRIDGING, n)
    ev = SpeechEvaluator(BRIDGING, tmp_path, mode="mel", examples=1, n_iter=30)
    good = ev.add("s1_bbaf2n", w, mel=mel, true_mel=mel)
    blurred = np.repeat(mel.reshape(80, -1, 8).mean(-1), 8, axis=1)  # 80 ms-smeared mel: a worse "prediction"
    worse = ev.add("s1_bbaf2n_blur", w, mel=blurred, true_mel=mel)
    assert good["stoi"] > 0.93 and worse["stoi"] < good["stoi"] - 0.05
    s = ev.summary()
    assert s["clips"] == 2 and s["metrics"]["stoi"]["count"] == 2 and s["examples"] == ["s1_bbaf2n"]
    assert json.loads((tmp_path / "speech_metrics.json").read_text())["synthesis"] == "mel"
    assert (tmp_path / "examples" / "s1_bbaf2n_pred.wav").exists()
    assert not (tmp_path / "examples" / "s1_bbaf2n_blur_pred.wav").exists()
    with pytest.raises(ValueError, match="ExemplarBank"):
        SpeechEvaluator(BRIDGING, mode="exemplar")


def test_the_speech_tasks_build_their_models_from_model_conf_and_memory_conf():
    """model_conf holds the builders' keywords; memory_conf gives N, the addressing and the memory terms' weights
    (the task's, not the model's)."""
    from avtrain.config import validate_recipe
    from avtrain.tasks import task_for

    base = {"output_dir": "x", "model": "speech", "data": {"shards": "y", "color": "rgb"},
            "model_conf": {"width": 0.125, "embed_dim": 32, "audio_channels": [8, 16], "decoder": TINY_DECODER}}
    task = task_for(validate_recipe({**base, "memory_conf": {"num_slots": 20, "variant": "official",
                                                             "save_weight": 0.5}}))
    model = task.build_model()
    assert model.memory.num_slots == 20 and model.memory.variant == "official" and task.weights.save == 0.5
    assert model.visual.out_dim == 32 and model.decoder.attention_rnn.hidden_size == 48
    baseline = task_for(validate_recipe({**base, "memory_conf": {"num_slots": 0}})).build_model()
    assert baseline.memory is None and baseline.audio is None and baseline.fusion is None
    two = task_for(validate_recipe({"output_dir": "x", "model": "two_tower", "augment": "none",
                                    "data": {"shards": "y"},
                                    "model_conf": {"width": 0.125, "fc_dim": 32, "use_flow": False,
                                                   "n_linear": 401}})).build_model()
    assert two.flow is None and two.postnet.out.out_features == 401
