"""LRW, LRW-1000, TCD-TIMIT and folder corpora end to end, on trees built here from the real GRID clips:
the layouts each corpus ships, run through prepare() (the real detector where the preset uses one) and checked."""

from __future__ import annotations

import hashlib
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from avbridge.sample import decode_field
from avprep.cli import app
from avprep.corpora import folder, grid, lrw, lrw1000, tcd_timit
from avprep.inspect import check_shards
from avprep.options import PrepOptions
from avprep.pipeline import Options, process_clip
from avprep.prepare import prepare
from avprep.presets import get_preset, with_overrides
from avprep.shards import iter_raw_samples, shard_paths
from avprep.stages import crops
from avprep.stages.decode import decode_clip
from avprep.stages.landmarks import LIPS
from avtrain.data.clips import word_boundary
from clipmaker import read_clip, retime, write_clip
from docexamples import run_example

QUIET = Console(file=open(os.devnull, "w"))


def quiet(preset) -> PrepOptions:
    return PrepOptions(preset=preset, console=QUIET, progress=False)
NTSC = Fraction(30000, 1001)


def write_mp4(path: Path, frames: np.ndarray, fps, audio: np.ndarray, rate: int) -> Path:
    """H.264 + AAC in mp4, as LRW and TCD-TIMIT ship their clips."""
    return write_clip(path, frames, fps, audio, rate, audio_codec="aac")


def _samples(out: Path) -> dict[str, dict]:
    return {raw["__key__"]: raw for p in shard_paths(out) for raw in iter_raw_samples(p)}


def _meta(raw: dict) -> dict:
    return decode_field("json", raw["json"])


@pytest.fixture(scope="module")
def s1(grid_root) -> dict[str, grid.ClipSpec]:
    return {c.utterance: c for c in grid.find_clips(grid_root, ["s1"], split_scheme="none")}


# ---------------------------------------------------------------------------------------------------------- LRW

LRW_WORDS = {"BIN": ("bbaf2n", "bbaf3s", "bbal6n", "bbal7s"), "PLACE": ("pbac1s", "pbac2p", "pbac3a", "pbaczn")}
LRW_SPLITS = ("train", "train", "val", "test")
# GRID frames (360x288) scaled by 1.2 and shifted so the mouth sits where LRW's official box expects it.
LRW_WARP = np.array([[1.2, 0, -26], [0, 1.2, -130]])


@pytest.fixture(scope="module")
def lrw_tree(tmp_path_factory, s1) -> tuple[Path, dict]:
    import cv2

    root = tmp_path_factory.mktemp("lrw") / "lipread_mp4"
    truth = {}
    for word, utterances in LRW_WORDS.items():
        for number, (utt, split) in enumerate(zip(utterances, LRW_SPLITS), 1):
            frames, audio, rate = read_clip(s1[utt].video)
            w = next(w for w in s1[utt].words if w.word == word.lower())
            centre = int(round((w.start + w.end) / 2 * 25))
            first = min(max(centre - 14, 0), len(frames) - 29)
            clip = np.stack([cv2.warpAffine(f, LRW_WARP, (256, 256), borderMode=cv2.BORDER_REPLICATE)
                             for f in frames[first : first + 29]])
            stem = f"{word}_{number:05d}"
            video = write_mp4(root / word / split / f"{stem}.mp4", clip, 25, audio[first * 640 : (first + 29) * 640],
                              rate)
            duration = round(w.end - w.start, 2)
            video.with_suffix(".txt").write_text(f"Text: {word}\nConf: 5\nDuration: {duration} seconds\n")
            truth[f"{word}_{split}_{number:05d}"] = {"word": word, "split": split, "duration": duration, "video": video}
    return root, truth


def test_lrw_fixed_box_samples(lrw_tree, tmp_path):
    import cv2

    root, truth = lrw_tree
    preset = get_preset("bridging-lrw")
    clips = lrw.find_clips(root.parent)  # the folder above lipread_mp4 is accepted too
    report = prepare(clips, "lrw", tmp_path, quiet(preset), vocabulary=tuple(lrw.vocabulary(root)))
    assert report.clips_written == 8 and not report.rejected
    index = json.loads((tmp_path / "index.json").read_text())
    assert {s: v["samples"] for s, v in index["splits"].items()} == {"train": 4, "val": 2, "test": 2}
    assert index["run"]["vocabulary"] == ["BIN", "PLACE"]
    samples = _samples(tmp_path)
    assert set(samples) == set(truth)
    for key, raw in samples.items():
        meta, t = _meta(raw), truth[key]
        label = ["BIN", "PLACE"].index(t["word"])
        assert (meta["text"], meta["split"], meta["label"]) == (t["word"], t["split"], label)
        assert meta["word_duration"] == t["duration"] and meta["num_frames"] == 29
        # The word is centred in LRW's 1.16 s clip: its span comes from the .txt duration.
        assert meta["words"][0]["start"] == pytest.approx(0.58 - t["duration"] / 2, abs=1e-4)
        assert (meta["preset"], meta["preset_hash"], meta["registration"]) == ("bridging-lrw", preset.hash, "fixed-box")
        assert meta["crop_box"] == [59, 195, 95, 231] and meta["max_faces"] is None
        assert "landmarks.npy" not in raw and meta["tool_version"]
        assert len(decode_field("wav.flac", raw["wav.flac"])) == 29 * 640
        assert decode_field("mel.npy", raw["mel.npy"]).shape == (80, 116)
        # model_conf.boundary marks the word's own frames of the clip (Ma et al. 2022's LRW indicator), not all 29
        w = meta["words"][0]
        frame = np.arange(29)
        np.testing.assert_array_equal(word_boundary(meta, 29), (frame >= w["start_frame"]) & (frame < w["end_frame"]))
        assert 0 < w["end_frame"] - w["start_frame"] < 29
    assert check_shards(tmp_path).errors == []

    # The crop is the official loader's: rows 59-195, columns 95-231 of the decoded frame, resized to 112, gray.
    key = "BIN_train_00001"
    mouth = decode_field("mouth.mp4", samples[key]["mouth.mp4"]).astype(float)
    frames = decode_clip(truth[key]["video"], None, 25, 16000).frames

    def box(dy: int, dx: int) -> np.ndarray:
        return np.stack([cv2.cvtColor(cv2.resize(f[59 + dy : 195 + dy, 95 + dx : 231 + dx], (112, 112)),
                                      cv2.COLOR_RGB2GRAY) for f in frames]).astype(float)

    exact, shifted = np.abs(mouth - box(0, 0)).mean(), np.abs(mouth - box(6, 6)).mean()
    assert mouth.shape == (29, 112, 112) and exact < 1.5 and shifted > 3 * exact, (exact, shifted)


@pytest.mark.slow
def test_lrw_landmark_registered_mouth(lrw_tree, tmp_path):
    root, _ = lrw_tree
    preset = get_preset("bridging-lrw-registered")
    clips = lrw.find_clips(root, splits=("train",))
    report = prepare(clips, "lrw", tmp_path, quiet(preset))
    assert report.clips_written == 4 and not report.rejected
    mean_face = np.load(tmp_path / "mean_face.npy")
    centre = mean_face[list(LIPS)].mean(0)
    for key, raw in _samples(tmp_path).items():
        meta = _meta(raw)
        assert meta["registration"] == "mean-face" and meta["label"] == ["BIN", "PLACE"].index(key.split("_")[0])
        assert decode_field("mouth.mp4", raw["mouth.mp4"]).shape == (29, 96, 96)
        marks = decode_field("landmarks.npy", raw["landmarks.npy"])
        lips = [meta["landmark_ids"].index(i) for i in LIPS]
        transforms = decode_field("transforms.npy", raw["transforms.npy"])
        # The lips' centre lands in the middle of the 96x96 crop in every frame (registered, not a fixed box).
        lip_centres = crops.crop_points(marks[:, lips], transforms, preset.mouth, centre).mean(1)
        assert np.abs(lip_centres - 48).max() < 6, (key, lip_centres)


def test_the_lrw_example_of_the_docs_runs(lrw_tree, tmp_path, monkeypatch):
    root, truth = lrw_tree
    report = run_example("prepare_lrw", "/data/lrw/lipread_mp4", root, tmp_path, monkeypatch, jobs=2)["report"]
    assert report.clips_written == 6 and not report.rejected  # BIN and PLACE: 2 train and 1 val clip each
    samples = _samples(tmp_path / "shards" / "lrw")
    assert set(samples) == {k for k, t in truth.items() if t["split"] in ("train", "val")}
    assert all("mouth.jpg" in raw for raw in samples.values())  # the example's crop_codec="jpg"


def test_lrw_cli_and_wrong_root(lrw_tree, tmp_path):
    root, _ = lrw_tree
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["lrw", "--root", str(root), "--out", str(out), "--splits", "val", "--words",
                                      "PLACE", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert list(_samples(out)) == ["PLACE_val_00003"] and _meta(_samples(out)["PLACE_val_00003"])["label"] == 1
    bad = CliRunner().invoke(app, ["lrw", "--root", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "WORD/{train,val,test}/WORD_NNNNN.mp4" in bad.output
    listed = CliRunner().invoke(app, ["presets", "--json"])
    presets = json.loads(listed.output)
    assert {"bridging-lrw", "bridging-lrw-registered", "bridging-lrw1000", "two-tower-tcd-timit"} <= set(presets)
    assert presets["bridging-lrw"]["registration"]["box"] == [59, 195, 95, 231]


# ----------------------------------------------------------------------------------------------------- LRW-1000

LRW1000_CLASSES = {"bin": ("并", "bing"), "blue": ("蓝", "lan"), "at": ("在", "zai"), "lay": ("放", "fang")}


@pytest.fixture(scope="module")
def lrw1000_tree(tmp_path_factory, s1) -> tuple[Path, dict]:
    import cv2
    import soundfile as sf

    root = tmp_path_factory.mktemp("lrw1000") / "LRW1000_Public"
    for sub in ("images", "audio", "info"):
        (root / sub).mkdir(parents=True)
    plan = {"bbaf2n": [("bin", "trn"), ("blue", "trn"), ("at", "tst")], "lrae3s": [("lay", "val")]}
    lines: dict[str, list[str]] = {"trn": [], "val": [], "tst": []}
    index_lines, truth = [], {}
    for utt, words in plan.items():
        frames, audio, rate = read_clip(s1[utt].video)
        name = hashlib.md5(f"s1_{utt}".encode()).hexdigest()  # the corpus names its folders by hashes too
        (root / "images" / name).mkdir()
        for n, frame in enumerate(frames, 1):  # pre-cropped lips, numbered from 1
            lips = cv2.cvtColor(frame[170:260, 110:210], cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(root / "images" / name / f"{n}.jpg"), lips)
        for word, split in words:
            w = next(x for x in s1[utt].words if x.word == word)
            op, ed = f"{w.start:.2f}", f"{w.end:.2f}"
            # The corpus's audio for a word starts at the word and runs 0.4 s past its end.
            segment = audio[int(float(op) * rate) : int(round((float(ed) + 0.4) * rate))]
            audio_name = f"{name}_{op}_{ed}"
            sf.write(root / "audio" / f"{audio_name}.wav", segment, rate, subtype="PCM_16")
            chinese, pinyin = LRW1000_CLASSES[word]
            lines[split].append(f"{name},{chinese},{pinyin},{op},{ed}")
            index_lines.append(f"{name},{audio_name},{chinese},{pinyin},{op},{ed}")
            truth[f"{name}_{op.replace('.', '_')}_{ed.replace('.', '_')}"] = {
                "op": float(op), "ed": float(ed), "segment": segment, "pinyin": pinyin, "chinese": chinese,
                "split": {"trn": "train", "val": "val", "tst": "test"}[split], "folder": root / "images" / name}
    for split, rows in lines.items():
        (root / "info" / f"{split}_1000.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "info" / "all_audio_video.txt").write_text("\n".join(index_lines) + "\n", encoding="utf-8")
    return root, truth


def test_lrw1000_video_span_matches_the_audio(lrw1000_tree, tmp_path):
    import cv2

    root, truth = lrw1000_tree
    preset = get_preset("bridging-lrw1000")
    clips = lrw1000.find_clips(root.parent)
    vocab = ("bing", "fang", "lan", "zai")
    assert lrw1000.vocabulary(root) == list(vocab)
    report = prepare(clips, "lrw1000", tmp_path, quiet(preset), vocabulary=vocab)
    assert report.clips_written == 4 and not report.rejected
    samples = _samples(tmp_path)
    assert set(samples) == set(truth)
    for key, raw in samples.items():
        meta, t = _meta(raw), truth[key]
        assert "." not in key and meta["split"] == t["split"]
        assert (meta["preset"], meta["preset_hash"], meta["registration"]) == ("bridging-lrw1000", preset.hash, "none")
        assert (meta["text"], meta["pinyin"], meta["label"]) == (t["chinese"], t["pinyin"], vocab.index(t["pinyin"]))
        # Video as long as the audio (word + 0.4 s), starting at the image of the word's first frame; the audio
        # starts at the word, inside that image's 40 ms (issue 22): that much silence first.
        frames = meta["num_frames"]
        assert meta["first_image"] == int(t["op"] * 25) + 1
        span_start = (meta["first_image"] - 1) / 25
        lead = round((t["op"] - span_start) * 16000)
        assert meta["audio_offset_samples"] == lead
        assert frames == round((lead + len(t["segment"])) / 640)
        assert abs(frames - (t["ed"] - span_start + 0.4) * 25) <= 0.5 + 1e-6
        assert meta["words"][0]["start_frame"] == 0
        assert meta["words"][0]["end_frame"] == math.ceil((t["ed"] - span_start) * 25 - 1e-6)
        # the boundary indicator is on for the word, off for the 0.4 s of audio after it
        ones = meta["words"][0]["end_frame"]
        np.testing.assert_array_equal(word_boundary(meta, frames), [1] * ones + [0] * (frames - ones))
        assert 0 < ones < frames
        # The stored audio is the corpus's file, sample for sample, after the lead, fitted to whole frames.
        wav = decode_field("wav.flac", raw["wav.flac"])
        n = min(len(wav) - lead, len(t["segment"]))
        assert len(wav) == 640 * frames and not wav[:lead].any()
        np.testing.assert_array_equal(np.round(wav[lead : lead + n] * 32768).astype(np.int16), t["segment"][:n])
        assert decode_field("mel.npy", raw["mel.npy"]).shape == (80, 4 * frames)
        mouth = decode_field("mouth.mp4", raw["mouth.mp4"]).astype(float)
        images = np.stack([cv2.cvtColor(cv2.resize(cv2.imread(str(t["folder"] / f"{meta['first_image'] + k}.jpg")),
                                                   (112, 112)), cv2.COLOR_BGR2GRAY) for k in range(frames)])
        assert mouth.shape == (frames, 112, 112) and np.abs(mouth - images).mean() < 2.0
    assert check_shards(tmp_path).errors == []


def test_the_lrw1000_example_of_the_docs_runs(lrw1000_tree, tmp_path, monkeypatch):
    root, truth = lrw1000_tree
    report = run_example("prepare_lrw1000", "/data/LRW1000_Public", root, tmp_path, monkeypatch, jobs=2)["report"]
    assert report.clips_written == 4 and not report.rejected
    assert set(_samples(tmp_path / "shards" / "lrw1000")) == set(truth)
    assert report.index["run"]["vocabulary"] == ["bing", "fang", "lan", "zai"]


def test_lrw1000_short_image_folder_is_rejected(lrw1000_tree, tmp_path):
    import shutil

    root, truth = lrw1000_tree
    copy = tmp_path / "LRW1000_Public"
    shutil.copytree(root, copy)
    clip = next(c for c in lrw1000.find_clips(copy) if c.split == "test")
    for image in clip.video.glob("*.jpg"):  # the folder ends 3 images after the word's first frame
        if int(image.stem) >= clip.first_image + 3:
            image.unlink()
    result = process_clip(clip, Options(get_preset("bridging-lrw1000")))
    assert result.rejection.reason == "audio/video length" and "3 frames" in result.rejection.detail


def test_lrw1000_six_column_lists_in_either_column_order(lrw1000_tree, tmp_path):
    import shutil

    root, _ = lrw1000_tree
    copy = tmp_path / "LRW1000_Public"
    shutil.copytree(root, copy)
    expected = {c.key: (c.audio.name, c.label, c.text, c.split) for c in lrw1000.find_clips(root)}
    # Split lists that name the audio themselves, pinyin before Chinese, and no audio index.
    index = (copy / "info" / "all_audio_video.txt").read_text(encoding="utf-8")
    rows = [line.split(",") for line in index.splitlines()]
    (copy / "info" / "all_audio_video.txt").unlink()
    for name in ("trn_1000.txt", "val_1000.txt", "tst_1000.txt"):
        listed = {tuple(line.split(",")[i] for i in (0, 3, 4)) for line in
                  (copy / "info" / name).read_text(encoding="utf-8").splitlines()}
        lines = [",".join([f, a, p, c, s, e]) for f, a, c, p, s, e in rows if (f, s, e) in listed]
        (copy / "info" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert {c.key: (c.audio.name, c.label, c.text, c.split) for c in lrw1000.find_clips(copy)} == expected


def test_lrw1000_wrong_root_says_what_layout_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected images/FOLDER/N\.jpg"):
        lrw1000.find_clips(tmp_path)


# ---------------------------------------------------------------------------------------------------- TCD-TIMIT

TCD_SECONDS = 1.6


@pytest.fixture(scope="module")
def tcd_tree(tmp_path_factory, s1) -> Path:
    import soxr

    root = tmp_path_factory.mktemp("tcd")
    plan = [("lipspeakers/Lipspkr1", "sa1", "bbaf2n"), ("lipspeakers/Lipspkr1", "sx12", "lrae3s"),
            ("volunteers/01M", "sa1", "bbaf3s")]
    for speaker, utt, source in plan:
        frames, audio, rate = read_clip(s1[source].video)
        n = int(TCD_SECONDS * 25)
        # TCD-TIMIT: 29.97 fps video with 48 kHz audio.
        video = retime(frames[:n], 25, float(NTSC))
        audio48 = np.round(soxr.resample(audio[: n * 640].astype(np.float32), rate, 48000)).astype(np.int16)
        path = write_mp4(root / speaker / "Clips" / "straightcam" / f"{utt}.mp4", video, NTSC, audio48, 48000)
        path.with_suffix(".txt").write_text("0 46797 She had your dark suit in greasy wash water all year\n")
    return root


@pytest.mark.slow
def test_tcd_timit_keeps_29_97_fps_with_whole_spectrogram_frames(tcd_tree, s1, tmp_path):
    import soxr

    preset = get_preset("two-tower-tcd-timit")
    clips = tcd_timit.find_clips(tcd_tree, "lipspeakers")
    assert [c.key for c in clips] == ["Lipspkr1_sa1", "Lipspkr1_sx12"]  # the volunteer is not a lipspeaker
    report = prepare(clips, "tcd-timit", tmp_path, quiet(preset))
    assert report.clips_written == 2 and not report.rejected
    raw = _samples(tmp_path)["Lipspkr1_sa1"]
    meta = _meta(raw)
    frames = int(round(TCD_SECONDS * float(NTSC)))  # 48
    assert (meta["fps"], meta["sample_rate"], meta["samples_per_frame"]) == (29.97, 14985, 500)
    assert meta["num_frames"] == frames and "resampled_from_frames" not in meta
    assert meta["source_fps"] == pytest.approx(29.97, abs=1e-3)
    assert meta["text"] == "She had your dark suit in greasy wash water all year"
    assert decode_field("face.mp4", raw["face.mp4"]).shape == (frames, 160, 128)
    assert decode_field("flow.npz", raw["flow.npz"]).shape == (frames - 1, 160, 128, 2)
    assert decode_field("mel.npy", raw["mel.npy"]).shape == (80, 4 * frames)
    assert decode_field("linear.npy", raw["linear.npy"]).shape == (251, 4 * frames)
    wav = decode_field("wav.flac", raw["wav.flac"])
    assert len(wav) == 500 * frames
    # The audio is the clip's own, resampled to 14985 Hz and in sync: best match at lag 0.
    _, source, rate = read_clip(s1["bbaf2n"].video)
    ref = soxr.resample(source[: int(TCD_SECONDS * 25) * 640].astype(np.float32) / 32768, rate, 14985)[: len(wav)]

    def corr(lag: int) -> float:
        a, b = (wav[lag:], ref[: len(ref) - lag]) if lag >= 0 else (wav[:lag], ref[-lag:])
        m = min(len(a), len(b))
        return float(np.corrcoef(a[:m], b[:m])[0, 1])

    assert corr(0) > 0.9 and corr(0) > max(corr(-40), corr(40)) + 0.1, (corr(0), corr(-40), corr(40))
    assert check_shards(tmp_path).errors == []


def test_tcd_timit_90_10_lipspeaker_split(tmp_path):
    counts = {"Lipspkr1": 85, "Lipspkr2": 85, "Lipspkr3": 84}  # the 254 videos of the paper
    for speaker, n in {**counts, "01M": 20}.items():
        group = "volunteers" if speaker[0].isdigit() else "lipspeakers"
        folder_ = tmp_path / group / speaker / "Clips" / "straightcam"
        folder_.mkdir(parents=True)
        for i in range(n):
            (folder_ / f"sx{i}.mp4").touch()
    clips = tcd_timit.find_clips(tmp_path, "lipspeakers")
    assert len(clips) == 254 and {c.speaker for c in clips} == set(counts)
    test = [c for c in clips if c.split == "test"]
    assert len(test) == 26 and {c.split for c in clips} == {"train", "test"}  # 9 + 9 + 8
    # Reproducible, and independent of which other speakers are in the run.
    alone = {c.key: c.split for c in tcd_timit.find_clips(tmp_path, "Lipspkr1")}
    assert alone == {c.key: c.split for c in clips if c.speaker == "Lipspkr1"}
    reseeded = {c.key: c.split for c in tcd_timit.find_clips(tmp_path, "lipspeakers", seed=1)}
    assert reseeded != {c.key: c.split for c in clips}
    assert {c.speaker for c in tcd_timit.find_clips(tmp_path, "volunteers")} == {"01M"}
    with pytest.raises(FileNotFoundError, match="Lipspkr9"):
        tcd_timit.find_clips(tmp_path, "Lipspkr9")
    with pytest.raises(FileNotFoundError, match="lipspeakers/LipspkrN/Clips/straightcam"):
        tcd_timit.find_clips(tmp_path / "lipspeakers")


@pytest.mark.slow
def test_the_tcd_timit_example_of_the_docs_runs(tcd_tree, tmp_path, monkeypatch):
    report = run_example("prepare_tcd_timit", "/data/tcd-timit", tcd_tree, tmp_path, monkeypatch, jobs=2)["report"]
    assert report.clips_written == 2 and not report.rejected  # Lipspkr1's two clips; not the volunteer's
    samples = {k: _meta(raw) for k, raw in _samples(tmp_path / "shards" / "tcd-lipspeakers").items()}
    assert set(samples) == {"Lipspkr1_sa1", "Lipspkr1_sx12"}
    assert {m["preset"] for m in samples.values()} == {"two-tower-tcd-timit"}


def test_two_tower_tcd_timit_preset_arithmetic():
    preset = get_preset("two-tower-tcd-timit")
    # 14985 / 29.97 is 500.00000000000006 in floats; the preset must still see exactly 500 samples per frame.
    assert preset.samples_per_frame == 500 and preset.spectrogram_frames_per_video_frame == 4
    assert preset.mel.hop_length / preset.sample_rate == pytest.approx(0.00834, abs=1e-5)
    assert preset.mel.win_length / preset.sample_rate == pytest.approx(0.03337, abs=1e-5)
    with pytest.raises(ValueError, match="does not divide"):
        with_overrides(preset, mel={**preset.mel.to_dict(), "hop_length": 124})


# ------------------------------------------------------------------------------------------------------- folder


def test_folder_of_videos_with_sidecars_and_manifest(s1, tmp_path):
    root = tmp_path / "videos"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    (root / "alice" / "take1.mkv").symlink_to(s1["bbaf2n"].video)
    (root / "alice" / "take1.txt").write_text("bin blue at f two now\n")
    (root / "bob" / "take.2.mkv").symlink_to(s1["lrae3s"].video)  # a dot in the name
    preset = get_preset("bridging-lrw")  # a fixed box fits 360x288 frames: no detector needed here
    report = prepare(folder.find_clips(root), "folder", tmp_path / "out", quiet(preset))
    assert report.clips_written == 2
    samples = {k: _meta(v) for k, v in _samples(tmp_path / "out").items()}
    assert set(samples) == {"alice_take1", "bob_take_2"}
    assert (samples["alice_take1"]["speaker"], samples["alice_take1"]["text"]) == ("alice", "bin blue at f two now")
    assert samples["bob_take_2"]["num_frames"] == 74 and samples["bob_take_2"]["split"] == "train"

    manifest = tmp_path / "list.csv"
    manifest.write_text("path,text,speaker,split\nalice/take1.mkv,a new text,A,val\n")
    clips = folder.find_clips(root, manifest)
    assert [(c.key, c.text, c.speaker, c.split) for c in clips] == [("alice_take1", "a new text", "A", "val")]
    result = CliRunner().invoke(app, ["folder", "--root", str(root), "--manifest", str(manifest), "--out",
                                      str(tmp_path / "cli"), "--preset", "bridging-lrw", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert [_meta(r)["split"] for r in _samples(tmp_path / "cli").values()] == ["val"]

    (root / "alice_take1.mkv").symlink_to(s1["bbaf2n"].video)  # alice/take1 and alice_take1: the same key
    with pytest.raises(ValueError, match="same key|both map"):
        folder.find_clips(root)


@pytest.mark.slow
def test_the_folder_example_of_the_docs_runs(s1, tmp_path, monkeypatch):
    root = tmp_path / "videos" / "alice"
    root.mkdir(parents=True)
    for utt in ("bbaf2n", "lrae3s"):
        (root / f"{utt}.mkv").symlink_to(s1[utt].video)
        (root / f"{utt}.txt").write_text(s1[utt].text + "\n")
    report = run_example("prepare_folder", "/data/my-videos", root.parent, tmp_path, monkeypatch, jobs=2)["report"]
    assert report.clips_written == 2 and not report.rejected
    samples = {k: _meta(raw) for k, raw in _samples(tmp_path / "shards" / "my-videos").items()}
    assert {k: (m["speaker"], m["text"], m["preset"]) for k, m in samples.items()} == {
        f"alice_{u}": ("alice", s1[u].text, "bridging-grid") for u in ("bbaf2n", "lrae3s")}
