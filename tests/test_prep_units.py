"""Fast checks of avprep's pure pieces: GRID grammar and layouts, registration maths, spectrograms, codecs, shards."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from avbridge import codecs, spectra
from avbridge.sample import decode_field, encode_field, sample_key
from avprep.corpora import grid
from avprep.presets import PRESETS, CropSpec, Preset, get_preset
from avprep.shards import ShardSink, iter_raw_samples, shard_paths
from avprep.stages import crops, register
from avprep.stages.errors import ClipError
from avprep.types import ClipResult, Rejection, Sample


def test_grid_grammar_gives_the_sentence():
    assert grid.text_from_utterance("bbaf2n") == "bin blue at f two now"
    assert grid.text_from_utterance("swwp2s") == "set white with p two soon"
    assert grid.text_from_utterance("priazn") == "place red in a zero now"
    with pytest.raises(ValueError, match="not a GRID utterance"):
        grid.text_from_utterance("xxaf2n")


def test_vocabulary_has_the_51_grid_words():
    vocab = grid.vocabulary()
    assert len(vocab) == len(set(vocab)) == 51
    assert vocab[:4] == ["bin", "lay", "place", "set"] and "w" not in vocab


def test_alignment_units_are_1_25000_s(grid_root):
    words = grid.read_alignment(grid_root / "s1" / "align" / "bbaf2n.align")
    assert [w.word for w in words] == "bin blue at f two now".split()
    assert words[0].start == pytest.approx(23750 / 25000) and words[-1].end == pytest.approx(53000 / 25000)


def test_grid_layouts_are_found(grid_root, tmp_path):
    clips = grid.find_clips(grid_root, ["s1", "s2", "s23"])
    s1 = [c for c in clips if c.speaker == "s1"]
    assert len(s1) == 1000
    counts = {split: sum(c.split == split for c in s1) for split in ("train", "val", "test")}
    assert counts == {"train": 890, "val": 49, "test": 50}  # the published speaker-dependent s1 split
    assert all(c.split == "unlisted" for c in clips if c.speaker == "s23")
    # The official archive layout: sN/video/mpg_6000/*.mpg with alignments/sN/*.align.
    (tmp_path / "s2" / "video" / "mpg_6000").mkdir(parents=True)
    (tmp_path / "alignments" / "s2").mkdir(parents=True)
    (tmp_path / "s2" / "video" / "mpg_6000" / "swwp2s.mpg").symlink_to(grid_root / "s2" / "video" / "swwp2s.mpg")
    alignment = (grid_root / "s2" / "align" / "swwp2s.align").read_text()
    (tmp_path / "alignments" / "s2" / "swwp2s.align").write_text(alignment)
    [clip] = grid.find_clips(tmp_path)
    assert clip.key == "s2_swwp2s" and clip.split == "train" and len(clip.words) == 6


def test_missing_speaker_is_a_clear_error(grid_root):
    with pytest.raises(FileNotFoundError, match="speaker folder .*s99"):
        grid.find_clips(grid_root, ["s99"])


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (8, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = register.similarity(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-5)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-3)


def test_fill_missing_interpolates_and_rejects():
    pts = np.full((10, 468, 2), np.nan, np.float32)
    pts[0], pts[9] = 0.0, 9.0
    pts[5] = 5.0
    with pytest.raises(ClipError, match="too few face frames"):
        register.fill_missing(pts, 0.5)
    filled, missing = register.fill_missing(pts, 0.3)
    assert missing == [1, 2, 3, 4, 6, 7, 8]
    np.testing.assert_allclose(filled[:, 0, 0], np.arange(10))
    with pytest.raises(ClipError, match="no face"):
        register.fill_missing(np.full((4, 468, 2), np.nan, np.float32), 0.5)


def test_smoothing_keeps_a_linear_track_and_damps_noise():
    t = np.arange(50, dtype=np.float32)
    offsets = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    track = np.stack([t, 2 * t], -1)[:, None, :] + offsets  # a square shape moving steadily
    # Exact at every frame, the first and last included: the window shrinks on both sides alike at the ends.
    np.testing.assert_allclose(register.smooth(track, 5), track, atol=1e-4)
    np.testing.assert_allclose(register.smooth(track, 13), track, atol=1e-4)
    rng = np.random.default_rng(1)
    noisy = offsets + rng.normal(0, 1, (500, 4, 2)).astype(np.float32)
    smoothed = register.smooth(noisy, 5)
    shape = lambda p: p - p.mean(1, keepdims=True)  # noqa: E731
    assert np.std(shape(smoothed) - offsets) < 0.6 * np.std(shape(noisy) - offsets)


def test_smoothing_is_centred_at_the_ends_and_keeps_the_current_frame_position():
    rng = np.random.default_rng(2)
    points = rng.normal(0, 5, (29, 6, 2)).astype(np.float32)  # an LRW-length clip
    smoothed = register.smooth(points, 13)
    # Re-centred as the canonical recipe does: every frame keeps its own centroid.
    np.testing.assert_allclose(smoothed.mean(1), points.mean(1), atol=1e-4)
    shape = points - points.mean(1, keepdims=True)
    got = smoothed - smoothed.mean(1, keepdims=True)
    np.testing.assert_allclose(got[0], shape[0], atol=1e-4)  # frame 0: a window of itself only
    np.testing.assert_allclose(got[1], shape[:3].mean(0), atol=1e-4)  # frame 1: frames 0-2
    np.testing.assert_allclose(got[-2], shape[-3:].mean(0), atol=1e-4)
    np.testing.assert_allclose(got[6], shape[:13].mean(0), atol=1e-4)  # the full +-6 window from frame 6 on
    np.testing.assert_allclose(got[14], shape[8:21].mean(0), atol=1e-4)
    # No lag at the ends: a shape that changes steadily is reproduced at the first and last frames.
    ramp = np.arange(29, dtype=np.float32)[:, None, None] * np.array([[1, 0], [-1, 0], [0, 2]], np.float32)
    np.testing.assert_allclose(register.smooth(ramp, 13), ramp, atol=1e-4)


def test_crop_matrix_maps_the_box_onto_the_crop():
    spec = CropSpec(height=112, width=112, color="gray", box=72)
    m = crops.crop_matrix(spec, np.array([10.0, 70.0]))
    corners = np.array([[10 - 36, 70 - 36, 1], [10 + 36, 70 + 36, 1]]) @ m.T
    np.testing.assert_allclose(corners, [[0, 0], [112, 112]])


def test_mel_filterbank_has_slaney_unit_area():
    fb = spectra.mel_filterbank(16000, 800, 80, 0.0, 8000.0)
    assert fb.shape == (80, 401) and (fb >= 0).all()
    # Slaney normalisation gives every triangle unit area in Hz; bins are 20 Hz apart. Filters spanning many bins
    # integrate accurately (the narrow low ones are sampled too coarsely for this check).
    area = fb.sum(1) * 20.0
    np.testing.assert_allclose(area[30:], 1.0, atol=0.03)
    centres = np.argmax(fb, axis=1)
    assert (np.diff(centres) >= 0).all() and centres[-1] > 350


def test_spectrogram_has_exactly_four_frames_per_video_frame():
    p = get_preset("bridging-grid").mel
    wave = np.random.default_rng(0).normal(0, 0.1, 75 * 640).astype(np.float32)
    mel = spectra.mel_spectrogram(wave, p, num_frames=300)
    assert mel.shape == (80, 300)
    # Frame k is centred on sample 160 k: a click at sample 160*100 peaks in frame 100.
    click = np.zeros(48000, np.float32)
    click[16000] = 1.0
    energy = spectra.magnitude(click, p, 300).sum(0)
    assert int(np.argmax(energy)) == 100


def test_presets_are_valid_and_hashed():
    assert {"bridging-grid", "two-tower", "vca-grid"} <= set(PRESETS)
    hashes = {p.hash for p in PRESETS.values()}
    assert len(hashes) == len(PRESETS)
    with pytest.raises(ValueError, match="hop"):
        Preset(name="x", description="", mel=spectra.SpectrogramParams(hop_length=150))
    with pytest.raises(KeyError, match="known presets"):
        get_preset("nope")


def test_video_codec_round_trip_is_close_and_keeps_colour_layout():
    # A smooth colour field (like skin and background; per-pixel random colour has no place in 4:2:0 video).
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    base = np.stack([60 + 2 * xx, 80 + 2 * yy, 200 - xx - yy], -1).clip(0, 255).astype(np.uint8)[None]
    rgb = np.repeat(base, 10, 0)  # a static clip: H.264 at CRF 18 should reproduce it closely
    back = codecs.decode_video(codecs.encode_video(rgb))
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 3
    gray = rgb[..., 0].copy()
    back = codecs.decode_video(codecs.encode_video(gray))
    assert back.shape == gray.shape and np.abs(back.astype(int) - gray).mean() < 6


def test_yuv_planes_from_opencv_equal_the_numpy_path_within_a_level(monkeypatch):
    """avprep converts RGB crops with OpenCV, the core install (no OpenCV) with numpy: one format either way."""
    import sys

    rgb = np.random.default_rng(0).integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)
    fast, gray = codecs._yuv_planes(rgb)
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError, as without OpenCV
    plain, _ = codecs._yuv_planes(rgb)
    assert not gray and fast.shape == plain.shape == (5, 24, 24)
    luma, chroma = (np.abs(fast[:, rows].astype(int) - plain[:, rows]) for rows in (slice(0, 16), slice(16, None)))
    assert luma.max() == 1 and (luma > 0).mean() < 0.01  # OpenCV's fixed-point arithmetic
    assert chroma.max() == 1 and (chroma > 0).mean() < 0.25  # also rounded before the 2x2 mean, not after


def test_flac_and_npy_fields_round_trip():
    wave = np.sin(np.linspace(0, 100, 4800)).astype(np.float32) * 0.5
    back = decode_field("wav.flac", encode_field("wav.flac", wave, sample_rate=16000))
    assert np.abs(back - wave).max() < 1e-4
    mel = np.random.default_rng(0).normal(size=(80, 12)).astype(np.float32)
    np.testing.assert_allclose(decode_field("mel.npy", encode_field("mel.npy", mel)), mel, atol=1e-2)
    assert sample_key("s1", "a.b/c") == "s1_a_b_c"


def _result(key: str, split: str, n: int = 1) -> ClipResult:
    samples = [Sample(key=f"{key}_{i}", split=split, fields={"json": json.dumps({"k": i}).encode(),
                      "mel.npy": encode_field("mel.npy", np.zeros((2, 4)))}, seconds=1.0) for i in range(n)]
    return ClipResult(key=key, samples=samples)


def test_shard_sink_resumes_without_loss_or_duplicates(tmp_path: Path):
    config = {"corpus": "t", "unit": "word", "preset_hash": "abc"}
    sink = ShardSink(tmp_path, config, max_clips=2)
    for i in range(5):
        sink.add(_result(f"c{i}", "train", n=3))
    sink.add(ClipResult(key="bad", rejection=Rejection(key="bad", split="train", reason="no face", detail="x")))
    sink.abort()  # killed: c4 sits in an unfinished shard
    assert not list(tmp_path.glob("*.tmp"))
    sink = ShardSink(tmp_path, config, max_clips=2)
    assert sink.done_clips == {"c0", "c1", "c2", "c3"} and sink.is_done("bad") and not sink.is_done("c4")
    sink.add(_result("c4", "train", n=3))
    index = sink.close()
    keys = [raw["__key__"] for p in shard_paths(tmp_path) for raw in iter_raw_samples(p)]
    assert sorted(keys) == sorted(f"c{i}_{j}" for i in range(5) for j in range(3))
    assert index["samples"] == 15 and index["rejected_by_reason"] == {"no face": 1}
    assert [p.name for p in shard_paths(tmp_path)] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]


def test_shard_sink_as_a_context_manager_closes_on_success_and_aborts_on_an_exception(tmp_path: Path):
    config = {"corpus": "t", "unit": "word", "preset_hash": "abc"}
    with pytest.raises(RuntimeError, match="killed"):
        with ShardSink(tmp_path, config, max_clips=2) as sink:
            for i in range(3):
                sink.add(_result(f"c{i}", "train"))
            raise RuntimeError("killed")  # c2 sits in an open shard: dropped, and redone by the next run
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "index.json").exists()
    with ShardSink(tmp_path, config, max_clips=2) as sink:  # the lock was released: a new sink resumes
        assert sink.done_clips == {"c0", "c1"}
        sink.add(_result("c2", "train"))
    assert sink.index == json.loads((tmp_path / "index.json").read_text())
    assert sink.index["clips"] == 3 and not list(tmp_path.glob("*.tmp"))


def test_shard_sink_refuses_another_preset(tmp_path: Path):
    ShardSink(tmp_path, {"corpus": "t", "unit": "word", "preset_hash": "abc"}).close()
    with pytest.raises(ValueError, match=r"preset hash: 'abc' \(this folder\) vs 'def' \(this run\)"):
        ShardSink(tmp_path, {"corpus": "t", "unit": "word", "preset_hash": "def"})


def test_partitions_split_clips_disjointly_and_merge_into_one_index(tmp_path: Path):
    from avprep.shards import Partition, write_index

    keys = [f"s{i % 7}_utt{i:04d}" for i in range(400)]
    parts = [Partition(i, 4) for i in range(4)]
    owned = [{k for k in keys if p.owns(k)} for p in parts]
    assert set().union(*owned) == set(keys) and sum(map(len, owned)) == len(keys)  # disjoint, complete
    assert all(60 < len(o) < 140 for o in owned)  # roughly balanced
    assert {k for k in reversed(keys) if parts[1].owns(k)} == owned[1]  # order does not matter
    with pytest.raises(ValueError, match="does not exist"):
        Partition(4, 4)
    config = {"corpus": "t", "unit": "sentence", "preset_hash": "abc", "partitions": 2}
    for p in (Partition(0, 2), Partition(1, 2)):  # two machines writing into one shared folder
        sink = ShardSink(tmp_path, config, partition=p)
        for key in keys[:20]:
            if p.owns(key):
                sink.add(_result(key, "train"))
        sink.close()
    index = write_index(tmp_path)
    assert index["samples"] == 20 and index["splits"]["train"]["clips"] == 20
    assert {p.name for p in shard_paths(tmp_path)} == {"train-p000of002-000000.tar", "train-p001of002-000000.tar"}
    with pytest.raises(ValueError, match="partitions"):
        ShardSink(tmp_path, {**config, "partitions": 3})


def _meta_sample(key: str, frames: int, wav_frames: int) -> ClipResult:
    meta = {"key": key, "split": "train", "num_frames": frames, "fps": 25, "samples_per_frame": 640,
            "spectrogram": {"hop_length": 160}, "text": ""}
    fields = {"json": encode_field("json", meta),
              "wav.flac": encode_field("wav.flac", np.zeros(640 * wav_frames, np.float32)),
              "mel.npy": encode_field("mel.npy", np.zeros((80, 4 * frames), np.float32))}
    return ClipResult(key=key, samples=[Sample(key=key, split="train", fields=fields, seconds=frames / 25)])


def test_inspect_finds_length_mismatches_truncated_shards_and_duplicates(tmp_path: Path):
    from avprep.inspect import check_shards

    sink = ShardSink(tmp_path / "good", {"corpus": "t", "unit": "sentence", "preset_hash": "x"})
    sink.add(_meta_sample("a", 3, 3))
    sink.add(_meta_sample("b", 3, 2))  # audio one frame short
    sink.close()
    report = check_shards(tmp_path / "good")
    assert sum(report.samples.values()) == 2
    assert report.errors == ["b.wav.flac: length 1280, expected 1920 for 3 frames"]

    [shard] = shard_paths(tmp_path / "good")
    broken = tmp_path / "broken.tar"
    broken.write_bytes(shard.read_bytes()[:700])  # cut inside the first member
    assert any("cannot be read" in e or "does not decode" in e for e in check_shards(broken).errors)

    twice = tmp_path / "twice"
    for name in ("p", "q"):
        sink = ShardSink(twice / name, {"corpus": "t", "unit": "sentence", "preset_hash": "x"})
        sink.add(_meta_sample("a", 3, 3))
        sink.close()
    (twice / "q" / "train-000000.tar").rename(twice / "p" / "train-000001.tar")
    (twice / "p" / "ledger.jsonl").unlink()  # without a ledger, every .tar in the folder is read
    report = check_shards(twice / "p")
    assert report.duplicates == 1 and "a: duplicate key" in report.errors[0]

    # One sample whose field is in the tar twice (a hand-edited or badly merged shard): named, not one copy kept.
    import tarfile

    doubled = tmp_path / "doubled" / "train-000000.tar"
    doubled.parent.mkdir()
    with tarfile.open(doubled, "w") as tar:
        for name, data in (("a.json", b"{}"), ("a.json", b'{"x": 1}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert check_shards(doubled.parent).errors == [
        "train-000000.tar: cannot be read (ValueError: train-000000.tar: sample a holds 'json' twice)"]


def test_landmark_parsing_matches_the_protobuf_fields_and_falls_back():
    from mediapipe.framework.formats import landmark_pb2

    from avprep.stages.landmarks import NUM_POINTS, _parse_xy, _to_pixels

    rng = np.random.default_rng(0)
    values = rng.uniform(0.05, 0.95, (NUM_POINTS, 3)).astype(np.float32)
    face = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in values:
        face.landmark.add(x=float(x), y=float(y), z=float(z))
    expected = values[:, :2] * np.array([360, 288], np.float32)
    np.testing.assert_array_equal(_parse_xy(face.SerializeToString()), values[:, :2])  # the numpy fast path
    np.testing.assert_array_equal(_to_pixels(face.SerializeToString(), 360, 288), expected)
    face.landmark[7].z = 0.0  # proto3 drops a zero float: the record layout changes...
    face.landmark[9].visibility = 0.5
    assert _parse_xy(face.SerializeToString()) is None
    # ...and the loop takes over
    np.testing.assert_allclose(_to_pixels(face.SerializeToString(), 360, 288), expected, rtol=1e-6)


def test_inspect_table_keeps_split_and_field_names_whole_in_80_columns():
    from collections import Counter

    from rich.console import Console

    from avprep.inspect import InspectReport

    fields = ["face.mp4", "flow.npz", "json", "landmarks.npy", "linear.npy", "mel.npy", "mouth.mp4",
              "transforms.npy", "wav.flac"]  # the two-tower preset's, the widest set
    splits = {"pretrain": 118516, "test": 1321, "trainval": 31982, "unlisted": 66}
    report = InspectReport(samples=Counter(splits), seconds=Counter({s: n * 3.0 for s, n in splits.items()}))
    for split, n in splits.items():
        report.fields[split] = Counter({f: n for f in fields})
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(report.table())
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in [*splits, *fields, "118516", "98.763"]:  # 118516 clips of 3 s: 98.763 h
        assert name in text, name


# --- issue 22, item 11 and the terminal: each confirmed by a test that failed on the code before -------------------

def test_a_lone_face_far_from_the_one_followed_is_not_taken():
    from avprep.stages.landmarks import LEFT_EYE_OUTER, NUM_POINTS, RIGHT_EYE_OUTER, follow

    def face(cx: float, eye: float = 40.0) -> np.ndarray:
        points = np.zeros((NUM_POINTS, 2), np.float32) + [cx, 100.0]
        points[LEFT_EYE_OUTER], points[RIGHT_EYE_OUTER] = [cx - eye / 2, 90], [cx + eye / 2, 90]
        return points

    speaker = face(100)
    assert follow([face(300)], None) is not None  # nothing followed yet: take it
    assert follow([face(110)], speaker) is not None  # a small step: the same face
    # The only face in the frame, 200 px (5 eye distances) away: someone else, or a false detection. Before: taken.
    assert follow([face(300)], speaker) is None
    assert follow([face(300)], speaker, gap=45) is not None  # unseen for 1.8 s: it may have moved that far
    assert follow([face(300), face(95)], speaker)[0, 0] == 95  # several: the nearest


def test_landmarks_of_frames_over_1024_px_keep_sub_pixel_precision():
    from avbridge.sample import decode_field
    from avprep.pipeline import encode_landmarks

    points = np.array([[[1500.3, 1070.55], [1901.26, 1033.1]]], np.float32)  # a 1920x1080 frame
    back = decode_field("landmarks.npy", encode_landmarks(points, [1920, 1080]))
    assert np.abs(back - points).max() < 1e-3  # float16 rounds these to whole pixels (1500.3 -> 1500)
    small = np.array([[[300.3, 200.55]]], np.float32)
    stored = encode_landmarks(small, [360, 288])
    assert np.load(io.BytesIO(stored)).dtype == np.float16  # smaller frames: float16 on disk as before (0.5 px)
    assert np.load(io.BytesIO(encode_landmarks(points, [1920, 1080]))).dtype == np.float32
    # A clip decoded at full size (no source_size): one dtype for all its samples, from the whole clip's points,
    # even for a word whose own points all lie below 1024.
    clip = np.concatenate([small, points[:, :1]])
    assert np.load(io.BytesIO(encode_landmarks(clip[:1], None, clip))).dtype == np.float32
    assert np.load(io.BytesIO(encode_landmarks(small, None, small))).dtype == np.float16


def test_landmarks_of_a_turned_frame_come_back_to_the_pixel_they_mark():
    from avprep.stages.landmarks import quarter_turn, unturn_points

    frame = np.zeros((1, 6, 8, 3), np.uint8)
    frame[0, 2, 5] = 255  # row 2, column 5: (x, y) = (5, 2), pixel centres at whole numbers
    for turns in (1, 2, 3):
        turned = quarter_turn(frame, turns)[0]
        row, col = np.argwhere(turned[..., 0])[0]
        back = unturn_points(np.array([[col, row]], np.float32), turns, 6, 8)
        np.testing.assert_allclose(back[0], [5, 2], err_msg=str(turns))


def test_the_preset_hash_ignores_the_description():
    from avprep.presets import with_overrides

    grid = get_preset("bridging-grid")
    reworded = Preset.model_validate({**grid.to_dict(), "description": "the same parameters, other words"})
    assert reworded.hash == grid.hash
    assert with_overrides(grid, video_crf=23).hash != grid.hash


def test_presets_at_80_columns_show_every_name_whole():
    from typer.testing import CliRunner

    from avprep.cli import app

    result = CliRunner().invoke(app, ["presets"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name, preset in PRESETS.items():  # the names a user types after --preset (before: "bridgi…", "two-to…")
        assert any(name in line.split() or f"│ {name} " in line for line in lines), name
        assert preset.hash in result.output


def test_the_contact_sheet_credits_the_corpus_it_shows():
    from avprep.inspect import attribution

    assert attribution({"lrs3"}) == "LRS3-TED, Afouras et al. 2018 (TED talks, CC BY-NC-ND 4.0)"
    assert "GRID" not in attribution({"lrs3"}) and "Cooke" in attribution({"grid"})
    assert attribution({"grid", "lrw"}).count(";") == 1
