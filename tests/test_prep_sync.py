"""Audio and video in sync from timestamps, on clips re-encoded from real GRID clips: a variable-frame-rate file
with dropped and repeated frames, audio that starts after (or before) the video, a separate 50 kHz wav.

Each is checked sample-exactly against the source where the codec allows it, and for lip sync by cross-correlating
the mouth opening (from the real detector's landmarks) with the audio envelope."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avbridge.sample import decode_field, encode_field
from avprep.corpora import grid
from avprep.pipeline import Options, process_clip
from avprep.presets import get_preset
from avprep.stages.decode import decode_clip, place_frames
from avprep.types import ClipSpec
from clipmaker import read_clip

PRESET = get_preset("bridging-grid")
# A clip whose mouth opening follows its audio envelope closely (peak correlation 0.74 at lag 0, measured with
# _lip_lag below); on most clips the peak is broad enough for a whole frame either way.
CLIP = "lrik4p"
DROPPED = (10, 11, 30, 50, 74)  # source frames left out of the variable-frame-rate file


def write_timed(path: Path, frames: np.ndarray, times: list[float], audio: np.ndarray | None, rate: int,
                audio_start: float = 0.0) -> Path:
    """H.264 + FLAC in Matroska with each frame at its own presentation time (ms): a variable-frame-rate file whose
    nominal rate still says 25 fps. The audio track starts ``audio_start`` seconds in, with the recording's sound
    from that time on (in sync, as when an encoder starts the audio late)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.codec_context.time_base = Fraction(1, 1000)
        v.options = {"crf": "18", "preset": "veryfast"}
        a = None
        if audio is not None:
            a = c.add_stream("flac", rate=rate)
            a.layout = "mono"
        for frame, t in zip(frames, times):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            first = int(round(audio_start * rate))
            audio = audio[first:]
            for i in range(0, len(audio), 4096):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[i : i + 4096].reshape(1, -1)), format="s16",
                                                layout="mono")
                af.sample_rate, af.pts, af.time_base = rate, first + i, Fraction(1, rate)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


@pytest.fixture(scope="module")
def source(grid_root):
    clip = {c.utterance: c for c in grid.find_clips(grid_root, ["s1"])}[CLIP]
    frames, audio, rate = read_clip(clip.video)
    assert rate == 16000 and len(frames) == 75
    return clip, _stamp(frames), audio


def _vfr(frames: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Frames dropped (DROPPED), frames shown twice (a repeat 12 ms after frames 20 and 40) and +-3 ms of
    timestamp jitter: what a phone or a screen recorder writes."""
    jitter = np.random.default_rng(0).integers(-3, 4, len(frames)) / 1000
    jitter[0] = 0  # the first frame fixes the audio's offset: keep it on the clock for a sample-exact check
    picks, times = [], []
    for k in range(len(frames)):
        if k in DROPPED:
            continue
        picks.append(k)
        times.append(max(0.0, k / 25 + jitter[k]))
        if k in (20, 40):
            picks.append(k)
            times.append(k / 25 + 0.012)
    return frames[picks], times


def _stamp(frames: np.ndarray) -> np.ndarray:
    """Each frame's index as a 7-bit code of 8x8 black/white blocks in its top-left corner (far from the face)."""
    out = frames.copy()
    for k in range(len(out)):
        for bit in range(7):
            out[k, :8, 8 * bit : 8 * bit + 8] = 255 if (k >> bit) & 1 else 0
    return out


def _read_stamps(decoded: np.ndarray) -> np.ndarray:
    """The source frame index each decoded frame shows, read back from its stamp."""
    bits = decoded[:, 2:6, [8 * b + 4 for b in range(7)]].mean(axis=(1, 3)) > 128  # (T, 7)
    return (bits * (1 << np.arange(7))).sum(1)


def _assert_audio_at(wave: np.ndarray, source: np.ndarray, start: int) -> None:
    """``wave`` holds ``source`` sample for sample at the same positions from ``start`` on, silence before it."""
    assert not wave[:start].any()
    n = min(len(wave), len(source))
    np.testing.assert_array_equal(np.round(wave[start:n] * 32768).astype(np.int16), source[start:n])


def test_place_frames_nearest_timestamp():
    times = np.array([0.0, 0.04, 0.08, 0.20, 0.21, 0.24])  # a gap after 0.08, a repeat at 0.21
    np.testing.assert_array_equal(place_frames(times, 25.0, 0.04), [0, 1, 2, 2, 3, 3, 5])
    # 29.97 fps onto 25: 90 frames span 3.003 s = 75 target frames, each the source frame nearest k / 25.
    ntsc = np.arange(90) / 29.97
    picks = place_frames(ntsc, 25.0, 1 / 29.97)
    assert len(picks) == 75 and np.abs(ntsc[picks] - np.arange(75) / 25).max() <= 0.5 / 29.97 + 1e-9


@pytest.mark.parametrize("audio_start", [0.0, 0.3])
def test_variable_frame_rate_frames_land_on_their_timestamps(source, tmp_path, audio_start):
    clip, frames, audio = source
    vfr_frames, times = _vfr(frames)
    path = write_timed(tmp_path / "vfr.mkv", vfr_frames, times, audio, 16000, audio_start)
    with av.open(str(path)) as c:
        assert c.streams.video[0].average_rate == 25  # the container still claims a constant 25 fps
    decoded = decode_clip(path, None, 25, 16000)
    # The dropped last frame shortens the clip by one frame; nothing else changes its length.
    assert decoded.num_frames == 74
    assert (_read_stamps(_stamp(frames)) == np.arange(75)).all()
    best = _read_stamps(decoded.frames)
    for k, b in enumerate(best):
        if k in DROPPED:
            assert abs(b - k) == 1, (k, b)  # a neighbour stands in for a dropped frame
        else:
            assert b == k, (k, b)  # every other target frame shows the source frame of its own time
    # Target frames 10, 11, 30, 50 show a neighbour again; the two repeated frames are never shown.
    assert decoded.info["duplicated_frames"] == 4 and decoded.info["unused_frames"] == 2
    _assert_audio_at(decoded.audio, audio, int(round(audio_start * 16000)))
    assert decoded.info["audio_offset_samples"] == int(round(audio_start * 16000))


def test_video_starting_after_the_audio_loses_the_audio_head(source, tmp_path):
    clip, frames, audio = source
    # The picture starts 0.2 s (5 frames) into the recording, the audio at 0: the audio's first 0.2 s is cut.
    path = write_timed(tmp_path / "late.mkv", frames[5:], [0.2 + k / 25 for k in range(70)], audio, 16000, 0.0)
    decoded = decode_clip(path, None, 25, 16000)
    assert decoded.num_frames == 70 and (_read_stamps(decoded.frames) == np.arange(5, 75)).all()
    assert decoded.info["audio_offset_samples"] == -3200
    _assert_audio_at(decoded.audio, audio[3200:], 0)


def test_separate_50khz_wav_is_aligned_to_the_video(source, tmp_path):
    import soundfile as sf

    clip, frames, audio = source
    # The official corpus ships 50 kHz wavs beside the video: make one from the clip's own track (band-limited
    # resampling by FFmpeg), so the video's 16 kHz track is the ground truth.
    up = av.AudioResampler(format="s16", layout="mono", rate=50000)
    chunks = []
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 16000, 0
    for f in up.resample(frame) + up.resample(None):
        chunks.append(f.to_ndarray().reshape(-1))
    wav = tmp_path / "s1" / "audio" / f"{CLIP}.wav"
    wav.parent.mkdir(parents=True)
    sf.write(wav, np.concatenate(chunks), 50000, subtype="PCM_16")
    decoded = decode_clip(clip.video, wav, 25, 16000)
    own = decode_clip(clip.video, None, 25, 16000)
    assert decoded.audio.shape == own.audio.shape == (75 * 640,)
    n = len(audio) - 200  # the resampler's tail
    a, b = decoded.audio[:n], own.audio[:n]
    lags = np.arange(-20, 21)
    cc = [np.dot(a[max(0, lag) : n + min(0, lag)], b[max(0, -lag) : n - max(0, lag)]) for lag in lags]
    assert lags[int(np.argmax(cc))] == 0  # sample-aligned
    assert np.corrcoef(a, b)[0, 1] > 0.99  # and the same signal (50 kHz round trip)
    # The corpus module finds the wav and uses it instead of the video's track.
    (tmp_path / "s1" / "video").mkdir()
    (tmp_path / "s1" / "video" / f"{CLIP}.mkv").symlink_to(clip.video)
    found = grid.find_clips(tmp_path, ["s1"])
    assert [c.audio for c in found] == [wav]


def _lip_lag(raw: dict, max_lag: int = 10) -> tuple[int, float]:
    """Frame lag at which the mouth opening best matches the audio log-energy envelope, and that correlation."""
    meta = decode_field("json", raw["json"])
    marks = decode_field("landmarks.npy", raw["landmarks.npy"])
    ids = meta["landmark_ids"]
    at = lambda i: marks[:, ids.index(i)]  # noqa: E731
    opening = np.linalg.norm(at(13) - at(14), axis=1) / np.linalg.norm(at(33) - at(263), axis=1)
    wave = decode_field("wav.flac", raw["wav.flac"])
    spf = meta["samples_per_frame"]
    env = np.log(np.sqrt((wave[: len(opening) * spf].reshape(-1, spf) ** 2).mean(1)) + 1e-2)  # floor: any silence
    a, b = (opening - opening.mean()) / opening.std(), (env - env.mean()) / env.std()
    cc = [np.mean(a[max(0, lag) : len(a) + min(0, lag)] * b[max(0, -lag) : len(b) - max(0, lag)])
          for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(cc)) - max_lag, float(max(cc))


@pytest.mark.slow
def test_lips_and_audio_stay_in_sync_through_the_pipeline(source, tmp_path):
    clip, frames, audio = source
    preset = get_preset("vca-grid")  # per-clip registration: no mean face needed; stores 16 kHz audio
    raw = lambda result: {**result.samples[0].fields}  # noqa: E731
    ref = process_clip(clip, Options(preset))
    assert ref.rejection is None
    ref_lag, ref_peak = _lip_lag(raw(ref))
    assert abs(ref_lag) <= 1 and ref_peak > 0.6, (ref_lag, ref_peak)

    vfr_frames, times = _vfr(frames)
    path = write_timed(tmp_path / "vfr.mkv", vfr_frames, times, audio, 16000, audio_start=0.3)
    spec = ClipSpec(key="vfr", corpus="grid", speaker="s1", utterance=CLIP, split="test", video=path)
    got = process_clip(spec, Options(preset))
    assert got.rejection is None, got.rejection
    lag, peak = _lip_lag(raw(got))
    assert abs(lag - ref_lag) <= 1 and peak > 0.5, (lag, peak, ref_lag)

    # The measure can fail: the same sample with the audio offset ignored (the track taken from its own first
    # sample, as if it started with the video) is 7.5 frames early, and the peak moves with it. (Rolled, not
    # padded: a block of digital silence would weigh on the envelope's statistics.)
    wrong = raw(got)
    wave = decode_field("wav.flac", wrong["wav.flac"])
    wrong["wav.flac"] = encode_field("wav.flac", np.roll(wave, -4800), sample_rate=16000)
    assert _lip_lag(wrong)[0] - ref_lag >= 6


def test_timestamp_jump_and_far_away_audio_are_rejected_not_allocated(source, tmp_path):
    from avprep.stages.errors import ClipError

    clip, frames, audio = source
    # Frame 40 stamped an hour late: placing by timestamp would mean ~90 000 duplicated frames.
    times = [k / 25 + (3600.0 if k >= 40 else 0.0) for k in range(75)]
    with pytest.raises(ClipError, match="bad timestamps"):
        decode_clip(write_timed(tmp_path / "jump.mkv", frames, times, audio, 16000), None, 25, 16000)
    # An audio track that starts after the picture has ended (write_timed keeps the sound from 60 s on).
    late = write_timed(tmp_path / "late.mkv", frames, [k / 25 for k in range(75)], np.tile(audio, 22), 16000,
                       audio_start=60.0)
    with pytest.raises(ClipError, match="audio/video offset"):
        decode_clip(late, None, 25, 16000)
