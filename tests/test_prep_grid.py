"""avprep end to end on real GRID clips through the real detector: samples, A/V alignment, registration stability,
a killed and resumed run, and bad inputs built from real clips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from avbridge.sample import decode_field
from avprep.corpora import grid
from avprep.inspect import check_shards, contact_sheet
from avprep.options import PrepOptions
from avprep.pipeline import Options, process_clip
from avprep.prepare import prepare
from avprep.presets import get_preset
from avprep.reference import estimate_mean_face
from avprep.shards import iter_raw_samples, shard_paths
from avprep.stages import crops
from avprep.stages.landmarks import LIPS
from avprep.types import ClipSpec
from clipmaker import read_clip, retime, side_by_side, truncate, write_clip
from killing import kill_mid_shard

pytestmark = pytest.mark.slow
QUIET = Console(file=open(os.devnull, "w"))
PRESET = get_preset("bridging-grid")
RUN = PrepOptions(preset=PRESET, console=QUIET, progress=False)
# Spread over the corpus so the handful covers different sentences (and both 74- and 75-frame clips).
HANDFUL = ["bbaf2n", "lrae3s", "pgwr6p", "sbbbzp", "swao7a"]


@pytest.fixture(scope="module")
def s1_clips(grid_root):
    return {c.utterance: c for c in grid.find_clips(grid_root, ["s1"])}


@pytest.fixture(scope="module")
def mean_face(s1_clips):
    clips = [s1_clips[u] for u in sorted(s1_clips)[::125]]  # 8 clips
    return estimate_mean_face(clips, PRESET)


@pytest.fixture(scope="module")
def sentence_run(tmp_path_factory, s1_clips, mean_face):
    out = tmp_path_factory.mktemp("sentences")
    np.save(out / "mean_face.npy", mean_face)
    report = prepare([s1_clips[u] for u in HANDFUL], "grid", out, RUN)
    return out, report


def _samples(out: Path) -> dict[str, dict]:
    return {raw["__key__"]: raw for p in shard_paths(out) for raw in iter_raw_samples(p)}


def test_pipeline_writes_verified_samples(sentence_run, tmp_path):
    out, report = sentence_run
    assert report.clips_written == len(HANDFUL) and not report.rejected
    index = json.loads((out / "index.json").read_text())
    assert index["samples"] == len(HANDFUL) and index["run"]["preset_hash"] == PRESET.hash
    assert set(index["field_bytes_per_sample"]) == {"mouth.mp4", "face.mp4", "wav.flac", "mel.npy", "landmarks.npy",
                                                     "transforms.npy", "json"}
    check = check_shards(out)
    assert check.errors == [] and sum(check.samples.values()) == len(HANDFUL)
    raw = _samples(out)["s1_lrae3s"]
    meta = decode_field("json", raw["json"])
    assert meta["num_frames"] == 74 and meta["text"] == "lay red at e three soon"
    assert [w["word"] for w in meta["words"]] == meta["text"].split()
    assert decode_field("mouth.mp4", raw["mouth.mp4"]).shape == (74, 112, 112)
    assert decode_field("face.mp4", raw["face.mp4"]).shape == (74, 96, 96, 3)
    contact_sheet(out, tmp_path / "sheet.png", count=2)
    assert (tmp_path / "sheet.png").stat().st_size > 10_000


def test_audio_is_sample_exact_against_the_source(sentence_run, s1_clips):
    out, _ = sentence_run
    for key, raw in _samples(out).items():
        _, source, rate = read_clip(s1_clips[key.split("_")[1]].video)
        assert rate == 16000
        stored = decode_field("wav.flac", raw["wav.flac"])
        meta = decode_field("json", raw["json"])
        assert len(stored) == 640 * meta["num_frames"]
        n = min(len(source), len(stored))
        # Same samples at the same positions (no offset, no resampling), then zero padding to 640 per frame.
        np.testing.assert_array_equal(np.round(stored[:n] * 32768).astype(np.int16), source[:n])
        assert not stored[n:].any()
        assert decode_field("mel.npy", raw["mel.npy"]).shape == (80, 4 * meta["num_frames"])


def test_word_samples_are_exact_slices_of_the_sentence(sentence_run, s1_clips, mean_face):
    out, _ = sentence_run
    sentence = _samples(out)["s1_bbaf2n"]
    vocab = tuple(grid.vocabulary())
    result = process_clip(s1_clips["bbaf2n"], Options(PRESET, unit="word", vocabulary=vocab), mean_face)
    assert [s.key for s in result.samples] == [f"s1_bbaf2n_w{i}" for i in range(6)]
    wav, mel = decode_field("wav.flac", sentence["wav.flac"]), decode_field("mel.npy", sentence["mel.npy"])
    for sample in result.samples:
        meta = decode_field("json", sample.fields["json"])
        s, t = meta["clip_start_frame"], meta["num_frames"]
        assert vocab[meta["label"]] == meta["text"]
        np.testing.assert_array_equal(decode_field("wav.flac", sample.fields["wav.flac"]), wav[640 * s : 640 * (s + t)])
        np.testing.assert_array_equal(decode_field("mel.npy", sample.fields["mel.npy"]), mel[:, 4 * s : 4 * (s + t)])
    # "bin" is aligned to 23750..29500 units = frames 23.75..29.5 -> frames 23..29 (whole frames covering the word).
    first = decode_field("json", result.samples[0].fields["json"])
    assert (first["clip_start_frame"], first["num_frames"]) == (23, 7)


def test_word_samples_with_context_keep_frames_around_the_word_and_say_where_it_is(s1_clips, mean_face):
    vocab = tuple(grid.vocabulary())
    plain = process_clip(s1_clips["bbaf2n"], Options(PRESET, unit="word", vocabulary=vocab), mean_face)
    wide = process_clip(s1_clips["bbaf2n"], Options(PRESET, unit="word", vocabulary=vocab, word_context=3),
                        mean_face)
    assert [s.key for s in wide.samples] == [s.key for s in plain.samples]  # the same samples, only longer
    clip_frames = 75
    for p, w in zip(plain.samples, wide.samples):
        word, both = decode_field("json", p.fields["json"]), decode_field("json", w.fields["json"])
        assert "word_span" not in word  # without context the sample is the word, as before
        s, t = word["clip_start_frame"], word["num_frames"]
        first, end = max(0, s - 3), min(clip_frames, s + t + 3)
        assert (both["clip_start_frame"], both["num_frames"]) == (first, end - first)
        assert both["word_span"] == [s - first, s - first + t]
        assert (both["label"], both["text"]) == (word["label"], word["text"])
        # the word's own frames of the context sample are the plain sample's, bit for bit (audio)
        a, b = both["word_span"]
        np.testing.assert_array_equal(decode_field("mel.npy", w.fields["mel.npy"])[:, 4 * a : 4 * b],
                                      decode_field("mel.npy", p.fields["mel.npy"]))
    # "bin" (frames 23..29) gets 20..32 with its indicator on 3..9; the last word ends where the clip ends
    first = decode_field("json", wide.samples[0].fields["json"])
    assert (first["clip_start_frame"], first["num_frames"], first["word_span"]) == (20, 13, [3, 10])
    from avtrain.data.clips import word_boundary

    np.testing.assert_array_equal(word_boundary(first, 13), [0] * 3 + [1] * 7 + [0] * 3)
    np.testing.assert_array_equal(word_boundary({}, 4), [1, 1, 1, 1])  # a clip without word_span is all word


def _mouth_centres(raw: dict) -> np.ndarray:
    """Mouth centre (mean of the lip points) per frame, in mouth-crop pixels up to a constant offset."""
    meta = decode_field("json", raw["json"])
    marks = decode_field("landmarks.npy", raw["landmarks.npy"])
    lips = [meta["landmark_ids"].index(i) for i in LIPS]
    transforms = decode_field("transforms.npy", raw["transforms.npy"])
    return crops.crop_points(marks[:, lips], transforms, PRESET.mouth, np.zeros(2)).mean(1)


def test_registered_mouth_crop_is_stable(sentence_run):
    # Jitter = frame-to-frame movement of the mouth centre inside the 112 px mouth crop. Measured over all 5830 s1
    # word samples of 3+ frames (docs/preprocessing.md): per-sample median step 0.64 px (95th percentile 1.28 px),
    # largest single step 5.87 px -- lip motion itself, since GRID speakers hardly move their heads. A crop that
    # drifted or jumped (a failed fit, a face switch) moves by the face's size, tens of pixels. Thresholds: the
    # median step under 1.5 px (1.3% of the crop), every step under 8 px. Head motion is tested on its own below.
    out, _ = sentence_run
    for key, raw in _samples(out).items():
        steps = np.linalg.norm(np.diff(_mouth_centres(raw), axis=0), axis=1)
        assert np.median(steps) < 1.5, (key, np.median(steps))
        assert steps.max() < 8.0, (key, steps.max())


def test_registration_cancels_head_motion(s1_clips, mean_face, tmp_path):
    """The same clip with a synthetic head motion (drift, rotation, zoom) gives nearly the same mouth crops."""
    import cv2

    frames, audio, rate = read_clip(s1_clips["bbaf2n"].video)
    moved = []
    for t, frame in enumerate(frames):
        m = cv2.getRotationMatrix2D((180, 144), 4 * np.sin(t / 8), 1 + 0.05 * np.sin(t / 11))
        m[:, 2] += [12 * np.sin(t / 6), 6 * np.cos(t / 9)]
        moved.append(cv2.warpAffine(frame, m, (360, 288), borderMode=cv2.BORDER_REPLICATE))
    path = write_clip(tmp_path / "moved.mkv", np.stack(moved), 25, audio, rate)
    spec = ClipSpec(key="moved", corpus="grid", speaker="s1", utterance="bbaf2n", split="test", video=path)
    still = process_clip(s1_clips["bbaf2n"], Options(PRESET), mean_face)
    moving = process_clip(spec, Options(PRESET), mean_face)
    a = decode_field("mouth.mp4", still.samples[0].fields["mouth.mp4"]).astype(float)
    b = decode_field("mouth.mp4", moving.samples[0].fields["mouth.mp4"]).astype(float)
    raw_diff = np.abs(np.stack(moved).astype(float) - frames).mean()
    crop_diff = np.abs(a - b)[:, 16:-16, 16:-16].mean()
    assert crop_diff < 6.0 and crop_diff < raw_diff / 3, (crop_diff, raw_diff)


def test_bad_inputs_are_rejected_with_reasons_and_the_run_goes_on(s1_clips, mean_face, tmp_path):
    src = s1_clips["bbaf2n"].video
    frames, audio, rate = read_clip(src)
    root = tmp_path / "grid"
    video = root / "s1" / "video"
    video.mkdir(parents=True)
    # Real GRID utterance ids, so text and split come from the corpus as for any clip.
    (video / "bbaf3s.mkv").symlink_to(s1_clips["bbaf3s"].video)  # a good clip
    truncate(src, video / "bbaf4p.mkv", 0.4)
    write_clip(video / "bbaf5a.mkv", frames, 25, None)  # no audio stream
    write_clip(video / "bbal6n.mkv", np.zeros_like(frames), 25, audio, rate)  # blacked out: no face
    write_clip(video / "bbal7s.mkv", side_by_side(frames), 25, audio, rate)  # two faces, the left one larger
    write_clip(video / "bbal8p.mkv", retime(frames, 25, 30000 / 1001), Fraction(30000, 1001), audio, rate)  # 29.97
    write_clip(video / "bbal9a.mkv", frames, 25, audio[: len(audio) // 2], rate)  # audio half as long as video
    (video / "bbas1s.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really a video" * 50)  # corrupt
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "mean_face.npy", mean_face)
    report = prepare(grid.find_clips(root), "grid", out, RUN)

    failures = {json.loads(line)["key"]: json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()}
    assert {k: v["reason"] for k, v in failures.items()} == {
        "s1_bbaf4p": "truncated video",
        "s1_bbaf5a": "no audio stream",
        "s1_bbal6n": "no face",
        "s1_bbal9a": "audio/video length",
        "s1_bbas1s": "unreadable video",
    }
    assert all(v["detail"] for v in failures.values())
    samples = _samples(out)
    assert set(samples) == {"s1_bbaf3s", "s1_bbal7s", "s1_bbal8p"} and report.clips_written == 3
    two = decode_field("json", samples["s1_bbal7s"]["json"])
    marks = decode_field("landmarks.npy", samples["s1_bbal7s"]["landmarks.npy"])
    assert two["max_faces"] == 2 and marks[..., 0].max() < 360  # the larger, left face, in every frame
    ntsc = decode_field("json", samples["s1_bbal8p"]["json"])
    assert ntsc["source_fps"] == pytest.approx(29.97, abs=0.01) and ntsc["num_frames"] == 75
    assert ntsc["resampled_from_frames"] == 90
    assert len(decode_field("wav.flac", samples["s1_bbal8p"]["wav.flac"])) == 75 * 640
    assert check_shards(out).errors == []
    # A re-run does nothing more: every clip is either written or recorded as failed.
    again = prepare(grid.find_clips(root), "grid", out, RUN)
    assert again.clips_skipped == 8 and again.clips_written == 0


def _avprep(root: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "avprep", "grid", "--root", str(root), "--speakers", "s1", "--out", str(out),
           "--limit", "8", "--unit", "word", "--shard-clips", "2", "--no-progress", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_run_resumes_to_the_uninterrupted_sample_set(grid_root, mean_face, tmp_path):
    np.save(tmp_path / "mf.npy", mean_face)
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert _avprep(grid_root, full, "--mean-face", str(tmp_path / "mf.npy")).wait(timeout=300) == 0

    proc = _avprep(grid_root, killed, "--mean-face", str(tmp_path / "mf.npy"))
    kill_mid_shard(proc, killed, shards=1, timeout=240)
    assert 0 < len(_samples(killed)) < len(_samples(full))
    assert _avprep(grid_root, killed).wait(timeout=300) == 0  # re-run: resumes with the saved mean face

    a, b = _samples(full), _samples(killed)
    assert sorted(a) == sorted(b)  # no sample lost, none duplicated
    for key in a:
        for name in a[key]:
            if name != "__shard__":
                assert a[key][name] == b[key][name], (key, name)  # every field, the H.264 crops too, byte for byte
    shards = lambda out: {p.name: p.read_bytes() for p in out.glob("*.tar")}  # noqa: E731
    assert shards(full) == shards(killed)  # and the same samples in the same shards, in the same order


def test_two_partitions_write_one_folder_and_merge(s1_clips, mean_face, tmp_path):
    from avprep.shards import Partition, write_index

    clips = [s1_clips[u] for u in HANDFUL + ["bbaf3s", "bbaf4p", "bbaf5a"]]
    np.save(tmp_path / "mean_face.npy", mean_face)
    parts = [Partition(i, 2) for i in range(2)]
    reports = [prepare(clips, "grid", tmp_path, replace(RUN, partition=p.index, num_partitions=p.count))
               for p in parts]  # on two machines these run at the same time against a shared folder
    owned = [sum(p.owns(c.key) for c in clips) for p in parts]
    assert all(owned) and [r.clips_written for r in reports] == owned
    index = write_index(tmp_path)
    assert index["clips"] == len(clips) and check_shards(tmp_path).errors == []
    assert sorted(_samples(tmp_path)) == sorted(c.key for c in clips)
