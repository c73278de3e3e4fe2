"""No crop of the wrong thing: faces filmed upside down or sideways are turned upright (real GRID clips through the
real detector), implausible meshes are rejected, and clips shorter than the corpus says are rejected as truncated
(GRID's MPEG program streams declare no length of their own), as are empty files."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from avbridge.sample import decode_field
from avprep.corpora import grid
from avprep.pipeline import Options, check_length, process_clip
from avprep.presets import get_preset
from avprep.stages import landmarks, register
from avprep.stages.decode import DecodedClip, decode_clip
from avprep.stages.errors import ClipError
from avprep.types import ClipSpec, Word
from clipmaker import read_clip, truncate, write_clip

QUIET = Console(file=open(os.devnull, "w"))
PRESET = get_preset("vca-grid")  # per-clip registration: no mean face to estimate


def test_unturn_points_inverts_quarter_turns():
    frame = np.zeros((1, 6, 10, 3), np.uint8)
    frame[0, 4, 7] = 255  # row 4, column 7: (x, y) = (7, 4)
    for turns in range(4):
        turned = landmarks.quarter_turn(frame, turns)[0]
        y, x = np.argwhere(turned[..., 0] == 255)[0]
        back = landmarks.unturn_points(np.array([[x, y]], np.float32), turns, 6, 10)
        np.testing.assert_array_equal(back, [[7, 4]])


def _upright_registration(eye_distance=80.0):
    """An upright mesh-like point set: the canonical recipe's eyes at y = 0, lips one eye distance below."""
    pts = np.zeros((1, 468, 2), np.float32)
    pts[0, list(landmarks.LIPS)] = [0, eye_distance]
    pts[0, [landmarks.LEFT_EYE_OUTER, landmarks.RIGHT_EYE_OUTER]] = [[-40, 0], [40, 0]]
    return pts


def test_geometry_check_rejects_a_face_that_is_not_upright():
    pts = _upright_registration()
    ident = register.Registration(transforms=np.array([[[1, 0, 0], [0, 1, 0]]], np.float32),
                                  mouth_centre=np.zeros(2), face_centre=np.zeros(2))
    register.check_geometry(pts, ident, 80.0)  # upright: passes
    flipped = register.Registration(transforms=np.array([[[-1, 0, 0], [0, -1, 0]]], np.float32),
                                    mouth_centre=np.zeros(2), face_centre=np.zeros(2))
    with pytest.raises(ClipError, match="implausible face geometry"):
        register.check_geometry(pts, flipped, 80.0)  # the "mouth" above the eyes


def test_transcript_never_outlasts_the_clip():
    spf = 640
    spec = ClipSpec(key="k", corpus="grid", speaker="s1", utterance="u", split="train", video=Path("k.mpg"),
                    words=(Word("bin", 0.5, 0.8), Word("now", 2.5, 2.9)), expected_seconds=3.0)
    clip = lambda frames, trim=0: DecodedClip(np.zeros((frames, 2, 2, 3), np.uint8), np.zeros(frames * spf, np.float32),  # noqa: E731
                                              25.0, 16000, {"audio_trim_samples": trim})
    check_length(spec, clip(75))
    check_length(spec, clip(74))  # GRID's 74-frame clips
    with pytest.raises(ClipError, match="truncated video"):
        check_length(spec, clip(70))  # shorter than the corpus's 3 s
    no_length = replace(spec, expected_seconds=None)
    check_length(no_length, clip(72))  # 2.88 s: the last word (to 2.9 s) is within a frame
    with pytest.raises(ClipError, match="truncated video"):
        check_length(no_length, clip(60))  # the last word ends 0.5 s after the video
    with pytest.raises(ClipError, match="truncated audio"):
        check_length(spec, clip(75, trim=-4000))  # 0.25 s of zeros padded: real audio ends at 2.75 s


def test_cut_off_mpeg_program_stream_is_truncated_and_empty_file_says_so(grid_root, tmp_path):
    src = grid_root / "s2" / "video" / "swwp2s.mpg"
    root = tmp_path / "grid"
    (root / "s2" / "video").mkdir(parents=True)
    truncate(src, root / "s2" / "video" / "swwp2s.mpg", 0.6)
    cut = decode_clip(root / "s2" / "video" / "swwp2s.mpg", None, 25, 16000)
    assert cut.num_frames == 45  # decodes cleanly: the program stream has no length to contradict
    (root / "s2" / "video" / "bbaf2n.mpg").write_bytes(b"")
    (root / "s2" / "align").mkdir()
    (root / "s2" / "align" / "swwp2s.align").write_text((grid_root / "s2" / "align" / "swwp2s.align").read_text())
    clips = {c.utterance: c for c in grid.find_clips(root, ["s2"])}
    assert clips["swwp2s"].expected_seconds == pytest.approx(2.98) and clips["bbaf2n"].expected_seconds == 3.0
    reasons = {u: process_clip(c, Options(PRESET)).rejection for u, c in clips.items()}
    assert reasons["swwp2s"].reason == "truncated video" and "2.98" in reasons["swwp2s"].detail
    assert reasons["bbaf2n"].reason == "empty file"


def _face_crop(result) -> np.ndarray:
    assert result.rejection is None, result.rejection
    return decode_field("face.mp4", result.samples[0].fields["face.mp4"]).astype(np.float32)


@pytest.fixture(scope="module")
def upright(grid_root):
    clip = {c.utterance: c for c in grid.find_clips(grid_root, ["s1"])}["bbaf2n"]
    return clip, _face_crop(process_clip(clip, Options(PRESET)))


@pytest.mark.slow
@pytest.mark.parametrize("turns", [2, 1])
def test_rotated_face_is_turned_upright(upright, tmp_path, monkeypatch, turns):
    clip, want = upright
    frames, audio, rate = read_clip(clip.video)
    path = write_clip(tmp_path / "turned.mkv", landmarks.quarter_turn(frames, turns), 25, audio, rate)
    spec = ClipSpec(key="turned", corpus="grid", speaker="s1", utterance="bbaf2n", split="test", video=path)
    result = process_clip(spec, Options(PRESET))
    got = _face_crop(result)
    meta = decode_field("json", result.samples[0].fields["json"])
    assert meta["face_turned_degrees"] == (180 if turns == 2 else 0)  # a face on its side is meshed as it is
    diff = np.abs(got - want)[:, 16:-16, 16:-16].mean()
    # The same face crop as from the upright clip, up to re-encoding and mesh noise (measured 2.1-2.6 grey levels).
    assert diff < 5.0, diff

    # Without the half turn the 180-degree clip is meshed upside down; the mesh then disagrees with the detector
    # and the clip is rejected (measured) -- it never yields a crop of the wrong part of the face.
    monkeypatch.setattr(landmarks, "upright_turns", lambda det, frame, **k: (0, landmarks._faces(det, frame)))
    blind = process_clip(spec, Options(PRESET))
    if turns == 2:
        if blind.rejection is not None:
            assert blind.rejection.reason == "implausible face geometry", blind.rejection
        else:
            assert np.abs(_face_crop(blind) - want)[:, 16:-16, 16:-16].mean() > 3 * max(diff, 5.0)


@pytest.mark.slow
def test_mesh_away_from_the_detected_features_is_implausible(upright):
    clip, _ = upright
    frames = decode_clip(clip.video, None, 25, 16000).frames
    with landmarks.Detectors() as det:
        face = landmarks._faces(det.detector, frames[37])[0]
        points = landmarks.detect_landmarks(frames[37:38], detectors=det).points[0]
    assert landmarks.plausible(points, face)
    eye_distance = np.linalg.norm(face.eyes[0] - face.eyes[1])
    # The mesh one eye distance too high: its "mouth" on the nose and its "eyes" on the brows.
    assert not landmarks.plausible(points - [0, eye_distance], face)
    assert not landmarks.plausible(points + [0.6 * eye_distance, 0], face)


@pytest.mark.slow
@pytest.mark.parametrize("turns", [1, 3])
def test_the_mesh_of_a_turned_frame_maps_back_with_pixel_centres_at_whole_numbers(grid_root, turns):
    """Which pixel convention mediapipe's landmarks (normalised x frame size) follow, measured: the mesh of frames
    turned 90 degrees, mapped back by unturn_points (centres at whole numbers), lands on the upright frames' mesh
    (0.08-0.15 px apart on average here); with centres at i + 0.5 it would be 1 px off along one axis (1.03-1.08 px)."""
    frames, _, _ = read_clip(grid_root / "s2" / "video" / "swwp2s.mpg")
    frames = np.ascontiguousarray(frames[:20])
    height, width = frames.shape[1:3]
    upright = landmarks.detect_landmarks(frames).points
    turned = landmarks.detect_landmarks(landmarks.quarter_turn(frames, turns))
    assert turned.turns == 0  # a face on its side is meshed as it is
    back = landmarks.unturn_points(turned.points, turns, height, width)
    offset = np.nanmean(back - upright, axis=(0, 1))
    assert np.abs(offset).max() < 0.25, offset
    assert np.nanmean(np.linalg.norm(back - upright, axis=-1)) < 0.3
