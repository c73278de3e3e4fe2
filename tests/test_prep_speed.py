"""The speed work must not change results: detector graphs reused across clips give the landmarks a fresh graph
gives, and word crops cut from one x264 session decode like their own encodes would."""

from __future__ import annotations

import io
import os

import av
import numpy as np
import pytest

from avbridge.codecs import decode_video, encode_video_segments
from avprep.corpora import grid
from avprep.stages.decode import decode_clip
from avprep.stages.landmarks import Detectors, _serialised_outputs, _to_pixels, detect_landmarks

# The six words of s1/bbaf2n as the pipeline cuts them (whole frames covering each word: neighbours share one).
WORDS = [(23, 30), (29, 35), (35, 40), (40, 46), (46, 55), (55, 64)]


@pytest.fixture(scope="module")
def frames(grid_root):
    return decode_clip(grid_root / "s1" / "video" / "bbaf2n.mkv", None, 25, 16000).frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_word_segments_from_one_session_decode_on_their_own(frames, color):
    mouth = frames[:, 150:262, 110:222]  # a fixed box around s1's mouth: real content, no detector
    crops = mouth.mean(-1).round().astype(np.uint8) if color == "gray" else np.ascontiguousarray(mouth)
    encoded = encode_video_segments(crops, WORDS)
    decoded = [decode_video(data) for data in encoded]
    for (start, end), video in zip(WORDS, decoded):
        assert video.shape == crops[start:end].shape
        assert _psnr(video, crops[start:end]) > 38, (start, end, _psnr(video, crops[start:end]))
        with av.open(io.BytesIO(encoded[WORDS.index((start, end))])) as c:
            stream = c.streams.video[0]
            assert stream.average_rate == 25 and stream.metadata.get("name") == color
            assert next(c.demux(stream)).is_keyframe  # each sample starts on its own keyframe
    # A frame two words share is the same picture in both samples (it is the same packets).
    for (a, b), (va, vb) in zip(zip(WORDS, WORDS[1:]), zip(decoded, decoded[1:])):
        if a[1] > b[0]:
            np.testing.assert_array_equal(va[b[0] - a[0]], vb[0])
    with pytest.raises(ValueError, match="do not lie within"):
        encode_video_segments(crops, [(70, 80)])


@pytest.mark.slow
def test_reused_detectors_give_the_landmarks_of_fresh_ones(grid_root, frames):
    other = decode_clip(grid_root / "s23" / "video" / "priazn.mpg", None, 25, 16000).frames  # another speaker
    with Detectors() as fresh:
        want = detect_landmarks(frames, detectors=fresh).points
    with Detectors() as reused:
        detect_landmarks(frames, detectors=reused)
        detect_landmarks(other, detectors=reused)  # its tracking state must not reach the next clip
        got = detect_landmarks(frames, detectors=reused).points
        # Control: the same mesh without a reset starts from the last clip's face and gives other points.
        detect_landmarks(other, detectors=reused)
        mesh = reused._meshes[1]
        leaked = mesh.process(frames[0]).multi_face_landmarks
    np.testing.assert_array_equal(got, want)
    first = _to_pixels(leaked[0].SerializeToString(), frames.shape[2], frames.shape[1])
    assert not np.array_equal(first, want[0])


def test_mesh_fed_directly_on_the_calling_thread_gives_what_process_gives(grid_root):
    """The pipeline feeds the mesh graph itself (no per-call wrapper) and runs it on the worker's thread (no pool);
    on a real clip (first 25 frames, tracking state carried frame to frame) the points equal those of a plain
    FaceMesh.process on mediapipe's own threads, and a frame without a face is empty on both paths."""
    import mediapipe as mp

    frames = decode_clip(grid_root / "s1" / "video" / "bbaf2n.mkv", None, 25, 16000).frames[:25]
    frames = np.concatenate([frames, np.zeros_like(frames[:1])])  # a black frame: no face
    with Detectors() as d:
        mesh = d.mesh(1)
        assert d.lean[1]  # the pinned mediapipe has the internals the direct path needs
        direct = [_serialised_outputs(mesh, f, "multi_face_landmarks", True) for f in frames]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False) as plain:
        public = [_serialised_outputs(plain, f, "multi_face_landmarks", False) for f in frames]
    assert [len(f) for f in direct] == [1] * 25 + [0] and [len(f) for f in public] == [1] * 25 + [0]
    for a, b in zip(direct[:25], public[:25]):
        np.testing.assert_array_equal(_to_pixels(a[0], 360, 288), _to_pixels(b[0], 360, 288))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_detectors_run_their_graphs_on_the_calling_thread(grid_root):
    """A worker's detector and meshes start no threads of their own (mediapipe's default would add a pool)."""
    frames = decode_clip(grid_root / "s1" / "video" / "bbaf2n.mkv", None, 25, 16000).frames[:10]
    # Thread ids, not a count: a thread left by an earlier test may exit meanwhile (CI saw 17 -> 16).
    threads = lambda: set(os.listdir("/proc/self/task"))  # noqa: E731
    before = threads()
    with Detectors() as d:
        marks = detect_landmarks(frames, detectors=d)
        assert threads() - before == set()
    assert marks.valid.all()


@pytest.mark.slow
def test_word_samples_carry_their_own_frames_of_the_sentence_crops(grid_root):
    from avbridge.sample import decode_field
    from avprep.pipeline import Options, process_clip
    from avprep.presets import get_preset

    clip = {c.utterance: c for c in grid.find_clips(grid_root, ["s1"])}["bbaf2n"]
    preset = get_preset("vca-grid")  # per-clip registration: no mean face needed
    sentence = process_clip(clip, Options(preset))
    words = process_clip(clip, Options(preset, unit="word", vocabulary=tuple(grid.vocabulary())))
    assert sentence.rejection is None and words.rejection is None
    whole = decode_field("face.mp4", sentence.samples[0].fields["face.mp4"])
    assert len(words.samples) == 6
    for sample in words.samples:
        meta = decode_field("json", sample.fields["json"])
        start, count = meta["clip_start_frame"], meta["num_frames"]
        crop = decode_field("face.mp4", sample.fields["face.mp4"])
        assert crop.shape == (count,) + whole.shape[1:]
        # Two CRF-18 encodes of the same crops: ~44 dB each from them, so well above 35 dB from each other.
        assert _psnr(crop, whole[start : start + count]) > 35, (meta["key"], _psnr(crop, whole[start : start + count]))


@pytest.mark.slow
def test_the_benchmark_scripts_run_and_print_their_verdicts(grid_root, tmp_path):
    """make bench-prep's three scripts, on a few clips: they must keep running (numbers are not checked here, they
    mean something only on 100 clips of a quiet machine)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    prep = subprocess.run([sys.executable, "scripts/bench_prep.py", "--grid", str(grid_root), "--clips", "4",
                           "--rounds", "2", "--codecs", "mp4", "--no-extras", "--no-alternatives",
                           "--detector-log", str(tmp_path / "detector.log")],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert prep.returncode == 0, prep.stderr[-2000:]
    assert "TARGET mp4 crops vs floor (FaceMesh.process): CPU per clip" in prep.stdout
    assert "stages of bridging-grid, sentence, mp4 crops, 1 job" in prep.stdout and "landmarks" in prep.stdout
    crops = subprocess.run([sys.executable, "scripts/bench_crop_encode.py", "--grid", str(grid_root), "--clips", "1",
                            "--detector-log", str(tmp_path / "detector.log")],
                           cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert crops.returncode == 0, crops.stderr[-2000:]
    assert "JPEG quality 90" in crops.stdout and "preset veryfast, CRF 18 (today)" in crops.stdout
    threads = subprocess.run([sys.executable, "scripts/bench_mesh_threads.py", "--grid", str(grid_root), "--clips",
                              "2", "--detector-log", str(tmp_path / "detector.log")], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=600)
    assert threads.returncode == 0, threads.stderr[-2000:]
    assert "calling thread / thread pool: CPU" in threads.stdout and "landmarks equal on all 2 clips" in threads.stdout
    assert "I0000" not in crops.stderr + prep.stderr + threads.stderr  # the C++ log lines went to the log file
