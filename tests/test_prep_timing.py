"""Issue 22, timing in the corner cases: a frame without a timestamp, word times counted on the audio's clock (a late
audio stream), LRW-1000's audio starting inside an image's 40 ms, a segment of a long clip decoded on its own, and
frames decoded smaller. Each on a clip made to show it from a real GRID clip."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avbridge.sample import decode_field
from avprep.corpora import grid
from avprep.pipeline import Options, process_clip
from avprep.presets import get_preset
from avprep.stages import decode, span
from avprep.stages import window as window_module
from avprep.stages.decode import decode_clip
from avprep.types import ClipSpec, Word
from clipmaker import read_clip

FPS, SR, SPF = 25, 16000, 640
LRW = get_preset("bridging-lrw")  # a fixed box (rows 59-195, columns 95-231 fit GRID's 360x288): no detector


def write_timed(path: Path, frames: np.ndarray, audio: np.ndarray | None, video_start: float = 0.0,
                audio_start: float = 0.0, audio_codec: str = "flac", gop: int = 25) -> Path:
    """H.264 frames from ``video_start`` seconds and int16 16 kHz ``audio`` from ``audio_start`` seconds of the
    container's clock (an MPEG-TS that starts at 1.4 s, an audio stream that starts late)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=Fraction(FPS))
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.options = {"crf": "18", "preset": "veryfast", "g": str(gop)}
        a = None
        if audio is not None:
            a = c.add_stream(audio_codec, rate=SR)
            a.layout = "mono"
        first = round(video_start * FPS)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = first + i, Fraction(1, FPS)
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            fmt, step = {"aac": ("fltp", 1024), "mp2": ("s16", 1152)}.get(audio_codec, ("s16", 4096))
            samples = np.asarray(audio, np.float32) / 32768 if fmt == "fltp" else np.asarray(audio, np.int16)
            fixed = audio_codec in ("aac", "mp2")  # encoders that take whole frames only
            start = round(audio_start * SR)
            for i in range(0, len(samples), step):
                chunk = np.ascontiguousarray(samples[i : i + step].reshape(1, -1))
                if fixed and chunk.shape[1] < step:
                    chunk = np.pad(chunk, ((0, 0), (0, step - chunk.shape[1])))
                af = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
                af.sample_rate, af.pts, af.time_base = SR, start + i, Fraction(1, SR)
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


@pytest.fixture(scope="module")
def bbaf2n(grid_root):
    spec = {c.utterance: c for c in grid.find_clips(grid_root, ["s1"])}["bbaf2n"]
    frames, audio, rate = read_clip(spec.video)
    assert rate == SR
    return spec, frames, audio


# --- a frame without a timestamp ------------------------------------------------------------------------------------

def test_one_missing_timestamp_is_filled_from_its_neighbours_not_from_zero():
    from avprep.stages.decode import fill_times

    times = [1.4 + i / FPS for i in range(75)]
    holed = list(times)
    holed[10] = None
    np.testing.assert_allclose(fill_times(holed, FPS), times, atol=1e-9)
    holed[0] = holed[1] = None  # leading ones: one step before the first known
    np.testing.assert_allclose(fill_times(holed, FPS), times, atol=1e-9)
    assert fill_times([None, None, None], FPS) == [0.0, 1 / FPS, 2 / FPS]  # nothing known: the nominal rate


def test_an_mpeg_ts_starting_at_1_4_s_with_a_frame_without_timestamp_keeps_its_audio_offset(bbaf2n, tmp_path,
                                                                                              monkeypatch):
    _, frames, audio = bbaf2n
    clip = write_timed(tmp_path / "late.ts", frames, audio, video_start=1.4, audio_start=1.6, audio_codec="mp2")
    intact = decode_clip(clip, None, FPS, SR)
    # 0.2 s, less what MPEG layer II's codec delay puts in front (481 samples here)
    assert 0.2 * SR - 600 < intact.info["audio_offset_samples"] <= 0.2 * SR
    real = decode._frame_time
    count = {"n": 0}

    def one_missing(frame):
        count["n"] += 1
        return None if count["n"] == 11 else real(frame)

    monkeypatch.setattr(decode, "_frame_time", one_missing)
    holed = decode_clip(clip, None, FPS, SR)
    # Before: one missing stamp re-timed every frame from 0, so the audio (at 1.6 s) looked 1.6 s late.
    assert holed.info["frames_without_timestamp"] == 1
    assert holed.info["audio_offset_samples"] == intact.info["audio_offset_samples"]
    np.testing.assert_array_equal(holed.frames, intact.frames)
    np.testing.assert_array_equal(holed.audio, intact.audio)


# --- word times on the audio's clock --------------------------------------------------------------------------------

def test_word_samples_of_a_late_audio_stream_are_cut_where_their_words_are_heard(bbaf2n, tmp_path):
    spec, frames, audio = bbaf2n
    late = write_timed(tmp_path / "late.mkv", frames, audio, audio_start=0.2)  # 5 frames late, FLAC: exact
    clip = ClipSpec(key="late", corpus="grid", speaker="s1", utterance="bbaf2n", split="train", video=late,
                    words=spec.words, text=spec.text)
    result = process_clip(clip, Options(LRW, unit="word"))
    assert result.rejection is None, result.rejection
    assert len(result.samples) == len(spec.words) == 6
    for sample, w in zip(result.samples, spec.words):
        meta = decode_field("json", sample.fields["json"])
        assert meta["audio_offset_samples"] == 3200
        # The alignment's times count from the first audio sample: on the video's clock they are 0.2 s later.
        start, end = math.floor((w.start + 0.2) * FPS + 1e-6), math.ceil((w.end + 0.2) * FPS - 1e-6)
        assert (meta["clip_start_frame"], meta["num_frames"]) == (start, end - start), w
        wav = decode_field("wav.flac", sample.fields["wav.flac"])
        heard = audio[start * SPF - 3200 : end * SPF - 3200].astype(np.float32) / 32768
        np.testing.assert_array_equal(wav, heard)  # the word's own samples (before: 0.2 s before them)


def test_an_lrs_segment_of_a_late_audio_stream_is_cut_where_its_words_are_heard(bbaf2n, tmp_path):
    spec, frames, audio = bbaf2n
    long = np.concatenate([frames] * 4)  # 12 s
    late = write_timed(tmp_path / "long.mkv", long, np.tile(audio, 4), audio_start=0.2)
    words = tuple(Word(w.word, w.start + 6.0, w.end + 6.0) for w in spec.words)  # the third sentence's words
    segment = (words[0].start - 0.1, words[-1].end + 0.1)
    clip = ClipSpec(key="seg", corpus="lrs3", speaker="x", utterance="x", split="pretrain", video=late, words=words,
                    span=segment, text=" ".join(w.word for w in words))
    result = process_clip(clip, Options(LRW))
    assert result.rejection is None, result.rejection
    meta = decode_field("json", result.samples[0].fields["json"])
    first = math.floor((segment[0] + 0.2) * FPS + 1e-6)
    assert meta["segment_frames"][0] == first and meta["audio_offset_samples"] == 3200
    wav = decode_field("wav.flac", result.samples[0].fields["wav.flac"])
    heard = np.tile(audio, 4)[first * SPF - 3200 :][: len(wav)].astype(np.float32) / 32768
    np.testing.assert_array_equal(wav, heard)
    assert [w["start_frame"] for w in meta["words"]] == [math.floor((w.start + 0.2) * FPS + 1e-6) - first
                                                         for w in words]


# --- LRW-1000: the audio starts inside an image's 40 ms -------------------------------------------------------------

def test_lrw1000_audio_starts_at_its_time_within_the_first_image(bbaf2n, tmp_path):
    import cv2
    import soundfile as sf

    from avprep.corpora import lrw1000

    _, frames, audio = bbaf2n
    base = tmp_path / "LRW1000_Public"
    folder = base / "images" / "abc"
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames[:40], 1):
        cv2.imwrite(str(folder / f"{i}.jpg"), cv2.cvtColor(frame[100:212, 120:232], cv2.COLOR_RGB2BGR))
    (base / "audio").mkdir()
    sf.write(base / "audio" / "a1.wav", audio[SR // 2 : SR // 2 + 12000], SR, subtype="PCM_16")  # 0.75 s
    (base / "info").mkdir()
    # The word starts at 0.30 s: inside image 8 (0.28-0.32 s), 0.02 s after its start.
    (base / "info" / "trn_1000.txt").write_text("abc,a1,\u4e2d\u6587,zhong wen,0.30,0.60\n")
    [spec] = lrw1000.find_clips(base, ("train",))
    assert spec.first_image == 8 and spec.audio_start == pytest.approx(0.02)
    result = process_clip(spec, Options(get_preset("bridging-lrw1000")))
    assert result.rejection is None, result.rejection
    meta = decode_field("json", result.samples[0].fields["json"])
    assert meta["audio_offset_samples"] == 320  # before: 0, the audio pulled 20 ms early against the images
    wav = decode_field("wav.flac", result.samples[0].fields["wav.flac"])
    assert not wav[:320].any()
    np.testing.assert_array_equal(wav[320 : 320 + 1000], audio[SR // 2 : SR // 2 + 1000].astype(np.float32) / 32768)


# --- a segment decoded on its own -----------------------------------------------------------------------------------

def test_a_segment_of_a_long_clip_decodes_only_its_span_to_the_same_frames_and_samples(bbaf2n, tmp_path):
    _, frames, audio = bbaf2n
    path = write_timed(tmp_path / "long.mkv", np.concatenate([frames] * 7), np.tile(audio, 7))  # 21 s
    whole = decode_clip(path, None, FPS, SR)
    for window in [(8.3, 11.7), (0.0, 2.5), (19.9, 30.0)]:
        cut = span.cut(whole, window)
        alone = decode_clip(path, None, FPS, SR, window=window)
        np.testing.assert_array_equal(alone.frames, cut.frames)
        np.testing.assert_array_equal(alone.audio, cut.audio)
        assert alone.info["segment_frames"] == cut.info["segment_frames"], window
        # Only the span and a second on either side (from the key frame before it) were decoded.
        assert alone.info["file_frames"] <= (window[1] - window[0] + 2 * window_module.WINDOW_MARGIN + 1) * FPS + 1
    assert decode_clip(path, None, FPS, SR, window=(19.9, 30.0)).info["source_frames"] == whole.num_frames == 525


# --- frames decoded smaller -----------------------------------------------------------------------------------------

def test_frames_are_scaled_as_they_are_decoded(bbaf2n):
    import cv2

    spec, frames, _ = bbaf2n
    full = decode_clip(spec.video, None, FPS, SR)
    half = decode_clip(spec.video, None, FPS, SR, scale=0.5)
    assert half.frames.shape == (75, 144, 180, 3) and half.info["decode_scale"] == [0.5, 0.5]
    expected = np.stack([cv2.resize(f, (180, 144), interpolation=cv2.INTER_AREA) for f in full.frames])
    np.testing.assert_array_equal(half.frames, expected)
    np.testing.assert_array_equal(half.audio, full.audio)
    chosen = decode_clip(spec.video, None, FPS, SR, scale=lambda first: 0.25 if first.shape == (288, 360, 3) else 1)
    assert chosen.frames.shape[1:3] == (72, 90)


@pytest.mark.slow
def test_a_large_frame_is_decoded_at_what_the_crops_need_and_landmarks_stay_in_source_pixels(bbaf2n, tmp_path):
    import cv2

    from avprep.pipeline import crop_pixels_per_eye_distance

    spec, frames, audio = bbaf2n
    big = np.stack([cv2.resize(f, (1440, 1152), interpolation=cv2.INTER_CUBIC) for f in frames])  # 4x
    path = write_timed(tmp_path / "big.mkv", big, audio)
    del big
    preset = get_preset("two-tower")
    assert crop_pixels_per_eye_distance(preset) == 64  # a 160-px face from a 200-px box, eyes 80 apart
    base = ClipSpec(key="k", corpus="grid", speaker="s1", utterance="bbaf2n", split="train", video=spec.video)
    small = process_clip(base, Options(preset))
    large = process_clip(replace(base, video=path), Options(preset))
    assert small.rejection is None and large.rejection is None, (small.rejection, large.rejection)
    meta = decode_field("json", large.samples[0].fields["json"])
    sx, sy = meta["decode_scale"]
    assert 0.2 < sx < 0.8 and meta["source_size"] == [1440, 1152]
    marks = decode_field("landmarks.npy", large.samples[0].fields["landmarks.npy"])
    assert marks.dtype == np.float32 and decode_field("landmarks.npy", small.samples[0].fields["landmarks.npy"]).dtype \
        == np.float32  # (decoded as float32; stored float32 above 1024 px)
    ref = decode_field("landmarks.npy", small.samples[0].fields["landmarks.npy"]) * 4
    assert np.median(np.abs(marks - ref)) < 4.0  # source pixels of the 4x frame (the mesh ran on ~1/4 of them)
    face = decode_field("face.mp4", large.samples[0].fields["face.mp4"]).astype(float)
    ref_face = decode_field("face.mp4", small.samples[0].fields["face.mp4"]).astype(float)
    assert face.shape == ref_face.shape and np.abs(face - ref_face).mean() < 12
