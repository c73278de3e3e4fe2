"""process_clip: one source clip -> its samples (or one rejection). The stage order, and nothing else.

Stages run on the whole clip once (decode, landmarks, registration, crops, flow, spectrograms); ``unit="word"``
then slices the results at the aligned word boundaries, so word samples cost no second pass over the video. A
segment of a long clip (``ClipSpec.span``) decodes only its own stretch of the file.

Word times that count on the audio's clock (alignments: GRID, LRS) are moved onto the video's by the decoded audio
offset before frames and samples are cut at them. Pixel coordinates (landmarks, transforms) put pixel ``i``'s
centre at ``i``, as OpenCV's warp samples and as mediapipe's normalised landmarks times the frame size behave
(measured: the mesh of frames turned 90 degrees, mapped back with that convention, lands 0.08-0.15 px from the
upright frames' mesh, against 1.03-1.08 px with centres at ``i + 0.5``; tests/test_prep_geometry.py).

A worker process keeps its detector graphs from clip to clip (:func:`worker_detectors`); a caller that wants
its own passes ``detectors`` to :func:`process_clip`.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from avbridge import __version__, spectra
from avbridge.codecs import encode_npy, encode_video_segments
from avbridge.sample import encode_field
from avprep.presets import LANDMARK_MODES, Preset
from avprep.stages import crops, flow, register, span
from avprep.stages.decode import DecodedClip, decode_clip
from avprep.stages.errors import TRANSIENT_ERRNOS, ClipError
from avprep.stages.images import decode_images
from avprep.stages.landmarks import NUM_POINTS, SUBSET, Detectors, detect_landmarks, face_eye_distance
from avprep.stages.window import start_times
from avprep.types import ClipResult, ClipSpec, Rejection, Sample


@dataclass(frozen=True)
class Options:
    preset: Preset
    unit: str = "sentence"  # "sentence" | "word"
    vocabulary: tuple[str, ...] = ()  # word labels for unit="word"
    # unit="word": frames of the clip kept on each side of the word (as far as the clip has them), the word's own
    # frames recorded as ``word_span`` in the sample's JSON (LRW-style context, for word-boundary indicators)
    word_context: int = 0
    silent: bool = False  # video only: the audio stream is not read (avtrain synth on a silent video)


# The detectors of this worker process, built on its first clip. Keyed by process id so that a forked child
# builds its own instead of using graphs (and threads) that belong to its parent.
_WORKER: dict[int, Detectors] = {}


def worker_detectors() -> Detectors:
    """This process's reusable detectors; the first call also limits OpenCV to one thread (parallelism comes
    from clip-level jobs, and OpenCV's own pool only contends with them)."""
    pid = os.getpid()
    if pid not in _WORKER:
        import cv2

        cv2.setNumThreads(1)
        for stale in _WORKER.values():
            stale.close()
        _WORKER.clear()
        _WORKER[pid] = Detectors()
    return _WORKER[pid]


def start_worker(options: Options) -> None:
    """What a worker process does before its first clip: build the detectors when the preset uses them (the
    mediapipe import and graph set-up are then start-up cost, not the first clip's)."""
    if options.preset.registration.mode in LANDMARK_MODES:
        worker_detectors()


def close_worker_detectors() -> None:
    """Free this process's detectors (a worker that is done; tests that want a fresh start)."""
    for detectors in _WORKER.values():
        detectors.close()
    _WORKER.clear()


@contextmanager
def _timed(result: ClipResult, stage: str):
    """Wall and process CPU seconds of a stage (CPU: what a machine shared with other work distorts least)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    yield
    result.timings[stage] = result.timings.get(stage, 0.0) + time.perf_counter() - start
    result.cpu_timings[stage] = result.cpu_timings.get(stage, 0.0) + time.process_time() - start_cpu


@dataclass
class _ClipArrays:
    """Everything computed for the whole clip, sliced later into samples."""

    mouth: np.ndarray | None
    face: np.ndarray | None
    flow: np.ndarray | None
    wave: np.ndarray
    mel: np.ndarray | None
    linear: np.ndarray | None
    landmarks: np.ndarray
    transforms: np.ndarray
    meta: dict


# Decoding at reduced size: frames above this many pixels are checked (GRID's 360x288 and LRS's 224x224 never are).
SCALE_CHECK_PIXELS = 640 * 480
# Source pixels per output pixel a crop keeps at least when frames are decoded smaller (room for the warp's
# rotation and sub-pixel shifts, and for a face that comes closer during the clip).
SCALE_MARGIN = 1.25
# A decoded-smaller frame that would be more than this fraction of the source's size is not worth it.
SCALE_WORTH = 0.8
# The canonical eye distance is between the outer eye corners; the face detector's eye keypoints are the eye centres,
# ~1.4x closer together on adult faces (65 mm against ~90 mm).
OUTER_CORNERS_PER_EYE_CENTRES = 1.4


def crop_pixels_per_eye_distance(preset: Preset) -> float:
    """Output pixels per outer-eye-corner distance of the preset's largest-scale crop (bridging-grid's 112-px mouth
    from a 72-px box: 124; two-tower's 160-px face from a 200-px box: 64)."""
    crops_ = [c for c in (preset.mouth, preset.face) if c is not None]
    return max((c.height / c.box for c in crops_), default=0.0) * preset.registration.eye_distance


def decode_scale(preset: Preset, detectors: Detectors | None) -> Callable[[np.ndarray], float] | None:
    """For presets that register on landmarks: a function of a clip's first frame giving the factor its frames may
    be decoded at. A large frame whose face is bigger than the crops need (with :data:`SCALE_MARGIN`) is decoded
    smaller, so that the crops keep every pixel they would have had; a small frame, one without a face in its first
    frame, or a preset whose crops need more, keeps full size."""
    if preset.registration.mode not in LANDMARK_MODES or detectors is None:
        return None
    need = SCALE_MARGIN * crop_pixels_per_eye_distance(preset)

    def decide(frame: np.ndarray) -> float:
        if frame.shape[0] * frame.shape[1] <= SCALE_CHECK_PIXELS or need <= 0:
            return 1.0
        eyes = face_eye_distance(detectors.detector, frame)
        if not eyes:
            return 1.0
        factor = need / (eyes * OUTER_CORNERS_PER_EYE_CENTRES)
        return factor if factor <= SCALE_WORTH else 1.0

    return decide


def _decode(spec: ClipSpec, preset: Preset, silent: bool, scale=None) -> DecodedClip:
    """A video file, or numbered images plus an audio file (pre-cropped corpora), as the spec says; for a segment
    (``spec.span``, on the video's clock) only its frames."""
    for path in (spec.video, spec.audio):
        if path is not None and path.is_file() and path.stat().st_size == 0:
            raise ClipError("empty file", f"{path.name} is 0 bytes")
    if spec.first_image is not None:
        if spec.audio is None:
            raise ClipError("no audio stream", "an image-sequence clip needs an audio file")
        return decode_images(spec.video, spec.first_image, spec.image_suffix, spec.audio, preset.fps,
                             preset.sample_rate, preset.samples_per_frame_range, audio_start=spec.audio_start)
    return decode_clip(spec.video, spec.audio, preset.fps, preset.sample_rate, preset.samples_per_frame_range,
                       silent=silent, scale=scale, window=spec.span)


def _decode_on_video_clock(spec: ClipSpec, preset: Preset, silent: bool, scale) -> tuple[ClipSpec, DecodedClip]:
    """The decoded clip (or segment), and the spec with its words (and span) on the video's clock and, for a
    segment, in the segment's time. Raises ClipError."""
    if spec.span is None:
        clip = _decode(spec, preset, silent, scale)
        offset = clip.info.get("audio_offset_samples", 0) / clip.sample_rate
        spec = span.on_video_clock(spec, offset)
        check_length(spec, clip)
        return spec, clip
    # A segment: where it lies on the video's clock needs the audio offset before decoding (first packets only).
    offset = 0.0
    if spec.words_clock == "audio" and not silent:
        first_video, first_audio = start_times(spec.video, spec.audio)
        if first_audio is not None:
            offset = round((first_audio - first_video) * preset.sample_rate) / preset.sample_rate
    whole = span.on_video_clock(spec, offset)
    spec = span.localise(whole, preset.fps)
    clip = _decode(whole, preset, silent, scale)
    span.check_window(clip, whole.span, spec.words)
    return spec, clip


def check_length(spec: ClipSpec, clip: DecodedClip) -> None:
    """Reject a clip shorter than its corpus says it is, or whose words run past its audio. Raises ClipError.

    A cut-off MPEG program stream (GRID's format) declares no length of its own and decodes cleanly up to the
    cut, so the corpus is the only witness: its fixed clip length, or the end of its word alignment.
    """
    seconds = clip.num_frames / clip.fps
    if spec.expected_seconds is not None:
        # Two frames of slack: GRID's "3 s" clips have 74 or 75 frames.
        if seconds < spec.expected_seconds - 2.0 / clip.fps:
            raise ClipError("truncated video",
                            f"{seconds:.2f} s decoded, the corpus says {spec.expected_seconds:.2f} s")
    if spec.words:
        last = max(w.end for w in spec.words)
        # Audio that was zero-padded to the video's length ends where its real samples end.
        audio_seconds = seconds + min(0, clip.info.get("audio_trim_samples", 0)) / clip.sample_rate
        if last > seconds + 1.0 / clip.fps:
            raise ClipError("truncated video", f"{seconds:.2f} s decoded, the last word ends at {last:.2f} s")
        if not clip.info.get("silent") and last > audio_seconds + 1.0 / clip.fps:
            raise ClipError("truncated audio", f"{audio_seconds:.2f} s of audio, the last word ends at {last:.2f} s")


def _compute(spec: ClipSpec, preset: Preset, mean_face: np.ndarray | None, result: ClipResult,
             silent: bool = False, detectors: Detectors | None = None) -> tuple[ClipSpec, _ClipArrays]:
    """The clip's arrays, and its spec with the words on the video's clock (in the segment's time for a segment)."""
    if preset.registration.mode in LANDMARK_MODES:
        detectors = detectors or worker_detectors()
    with _timed(result, "decode"):
        spec, clip = _decode_on_video_clock(spec, preset, silent, decode_scale(preset, detectors))
    mode = preset.registration.mode
    box = None
    turns = 0
    # Frames decoded smaller: landmarks and transforms are found on them and stored in source pixels.
    sx, sy = clip.info.get("decode_scale", (1.0, 1.0))
    if mode in LANDMARK_MODES:
        with _timed(result, "landmarks"):
            marks = detect_landmarks(clip.frames, detectors=detectors)
            turns = marks.turns
        with _timed(result, "register"):
            points, missing = register.fill_missing(marks.points, preset.min_valid_fraction)
            smoothed = register.smooth(points, preset.registration.smooth_frames)
            reg = register.register(smoothed, mode, mean_face, preset.registration.eye_distance)
            register.check_geometry(smoothed, reg, preset.registration.eye_distance)
        max_faces: int | None = marks.max_faces
    else:  # fixed box or pre-cropped: no detector, nothing to register
        box = register.frame_box(mode, preset.registration.box, *clip.frames.shape[1:3])
        reg = register.identity(clip.num_frames, box)
        points, missing, max_faces = np.zeros((clip.num_frames, 0, 2), np.float32), [], None
    arrays: dict = {}
    with _timed(result, "crops"):
        for name in ("mouth", "face"):
            crop_spec = getattr(preset, name)
            centre = reg.mouth_centre if name == "mouth" else reg.face_centre
            if crop_spec is None:
                arrays[name] = None
            elif box is not None:
                arrays[name] = crops.cut_box(clip.frames, box, crop_spec)
            else:
                arrays[name] = crops.cut(clip.frames, reg.transforms, crop_spec, centre)
    with _timed(result, "flow"):
        arrays["flow"] = flow.dense_flow(arrays["face"], preset.flow) if preset.flow else None
    with _timed(result, "spectra"):
        n_spec = clip.num_frames * preset.spectrogram_frames_per_video_frame
        mel = spectra.mel_spectrogram(clip.audio, preset.mel, n_spec) if preset.mel else None
        linear = spectra.linear_spectrogram(clip.audio, preset.mel, n_spec) if preset.linear else None
    ids = {"subset": list(SUBSET), "full": list(range(NUM_POINTS)), "none": []}[preset.landmarks]
    transforms = reg.transforms
    if (sx, sy) != (1.0, 1.0):
        # Pixel centres at whole numbers: a decoded pixel q shows source pixels around (q + 0.5) / s - 0.5, so a
        # source pixel p lies at q = S (p + 0.5) - 0.5 in the decoded frame (INTER_AREA keeps the edges in place).
        scale = np.array([sx, sy], np.float32)
        points = (points + 0.5) / scale - 0.5
        shift = transforms[..., :2] @ (0.5 * scale - 0.5)  # A (S 0.5 - 0.5): the decoded frame's origin, moved
        transforms = transforms * np.array([sx, sy, 1.0], np.float32)  # (A S) p + b ...
        transforms[..., 2] += shift  # ... + A (0.5 S - 0.5): source pixels in
    meta = {
        **clip.info,
        "missing_face_frames": missing,
        "max_faces": max_faces,
        "face_turned_degrees": 90 * turns,  # the quarter turns that showed the face upright to the detector
        "landmark_ids": ids,
        "registration": mode,
    }
    if box is not None:
        meta["crop_box"] = list(box)
    if mode in LANDMARK_MODES and marks.far_faces_skipped:
        meta["far_faces_skipped"] = marks.far_faces_skipped
    return spec, _ClipArrays(
        mouth=arrays["mouth"], face=arrays["face"], flow=arrays["flow"], wave=clip.audio, mel=mel, linear=linear,
        landmarks=points[:, ids] if ids else points[:, :0], transforms=transforms, meta=meta,
    )


class _Segment(NamedTuple):
    key: str
    start: int  # first frame of the sample in the clip
    end: int  # one past its last frame
    text: str
    label: int | None
    word_span: tuple[int, int] | None  # words with context: the word's own frames, [start, end) in the sample


def _segments(spec: ClipSpec, num_frames: int, options: Options) -> list[_Segment]:
    """Each sample the clip yields."""
    if options.unit == "sentence":
        return [_Segment(spec.key, 0, num_frames, spec.text, spec.label, None)]
    if not spec.words:
        raise ClipError("no alignment", "unit=word needs word alignments")
    fps, context = options.preset.fps, options.word_context
    out = []
    for i, w in enumerate(spec.words):
        # Whole frames covering the word: a frame belongs to it if any of its 40 ms does.
        start, end = max(0, math.floor(w.start * fps + 1e-6)), min(num_frames, math.ceil(w.end * fps - 1e-6))
        if end - start < 1:
            continue
        label = options.vocabulary.index(w.word) if w.word in options.vocabulary else None
        if options.vocabulary and label is None:
            raise ClipError("word not in vocabulary", f"{w.word!r} at {w.start:.2f}s")
        first, last = max(0, start - context), min(num_frames, end + context)
        # without context the sample is the word (no word_span: the JSON stays as avprep wrote it before context)
        span = (start - first, end - first) if context else None
        out.append(_Segment(f"{spec.key}_w{i}", first, last, w.word, label, span))
    return out


def _words_in(spec: ClipSpec, start: int, end: int, fps: float) -> list[dict]:
    words = []
    for w in spec.words:
        s, e = math.floor(w.start * fps + 1e-6), math.ceil(w.end * fps - 1e-6)
        if e > start and s < end:
            words.append({"word": w.word, "start_frame": max(s, start) - start, "end_frame": min(e, end) - start,
                          "start": round(w.start, 4), "end": round(w.end, 4)})
    return words


def _encode_crops(arrays: _ClipArrays, segments: list, preset: Preset) -> list[dict[str, bytes]]:
    """The crop fields of every sample. Several samples of one clip (words) share one x264 session per crop."""
    out: list[dict[str, bytes]] = [{} for _ in segments]
    ext = preset.crop_codec
    for name in ("mouth", "face"):
        video = getattr(arrays, name)
        if video is None:
            continue
        field = f"{name}.{ext}"
        if ext == "mp4" and len(segments) > 1:
            spans = [(seg.start, seg.end) for seg in segments]
            encoded = encode_video_segments(video, spans, fps=preset.fps, crf=preset.video_crf,
                                            speed=preset.video_speed)
        else:
            encoded = [encode_field(field, video[seg.start : seg.end], fps=preset.fps, crf=preset.video_crf,
                                    speed=preset.video_speed) for seg in segments]
        for fields, data in zip(out, encoded):
            fields[field] = data
    return out


def _encode(spec: ClipSpec, arrays: _ClipArrays, seg: _Segment, options: Options, crops: dict[str, bytes]
            ) -> Sample:
    key, start, end, text, label = seg.key, seg.start, seg.end, seg.text, seg.label
    preset = options.preset
    spf, k = preset.samples_per_frame, preset.spectrogram_frames_per_video_frame
    fields: dict[str, bytes] = dict(crops)
    if arrays.flow is not None and end - start > 1:
        fields["flow.npz"] = encode_field("flow.npz", arrays.flow[start : end - 1])
    if preset.store_wave:
        fields["wav.flac"] = encode_field("wav.flac", arrays.wave[start * spf : end * spf],
                                          sample_rate=preset.sample_rate)
    for name, values in (("mel", arrays.mel), ("linear", arrays.linear)):
        if values is not None:
            field_name = f"{name}.q8.npz" if preset.feature_dtype == "uint8" else f"{name}.npy"
            fields[field_name] = encode_field(field_name, values[:, start * k : end * k],
                                              value_range=preset.mel.value_range())
    if arrays.landmarks.shape[1]:
        fields["landmarks.npy"] = encode_landmarks(arrays.landmarks[start:end], arrays.meta.get("source_size"),
                                                   arrays.landmarks)
    fields["transforms.npy"] = encode_field("transforms.npy", arrays.transforms[start:end])
    meta = {
        "key": key,
        "corpus": spec.corpus,
        "speaker": spec.speaker,
        "utterance": spec.utterance,
        "split": spec.split,
        "unit": options.unit,
        "text": text,
        "words": _words_in(spec, start, end, preset.fps),
        "label": label,
        **({"word_span": list(seg.word_span)} if seg.word_span is not None else {}),
        "clip_start_frame": start,
        "num_frames": end - start,
        "fps": preset.fps,
        "sample_rate": preset.sample_rate,
        "samples_per_frame": spf,
        "preset": preset.name,
        "preset_hash": preset.hash,
        "tool_version": __version__,
        "spectrogram": preset.mel.to_dict() if preset.mel else None,
        "flow": preset.flow.model_dump() if preset.flow else None,
        "crops": {n: getattr(preset, n).model_dump() for n in ("mouth", "face") if getattr(preset, n)},
        **arrays.meta,
        **dict(spec.extra),
    }
    fields["json"] = encode_field("json", meta)
    return Sample(key=key, split=spec.split, fields=fields, seconds=(end - start) / preset.fps)


LANDMARK_FLOAT16_MAX_SIDE = 1024  # px: float16 keeps half pixels up to here


def encode_landmarks(points: np.ndarray, source_size: list[int] | None,
                     clip_points: np.ndarray | None = None) -> bytes:
    """float16 (0.5 px steps below 1024) for frames up to 1024 px a side, float32 above, where float16 would keep
    whole pixels only (2 px steps past 2048). Decided for the whole clip (its ``source_size`` when decoded smaller,
    else its landmarks ``clip_points``), so every sample of a clip gets the same dtype."""
    whole = points if clip_points is None else clip_points
    precise = source_size is not None and max(source_size) > LANDMARK_FLOAT16_MAX_SIDE
    precise = precise or bool(whole.size and float(np.nanmax(np.abs(whole))) >= LANDMARK_FLOAT16_MAX_SIDE)
    return encode_npy(np.asarray(points, np.float32 if precise else np.float16))



def process_clip(spec: ClipSpec, options: Options, mean_face: np.ndarray | None = None,
                 detectors: Detectors | None = None) -> ClipResult:
    """Run every stage on one clip. Never raises for bad input: a bad clip comes back as a rejection.

    ``detectors``: the graphs to use; None = this worker process's own (:func:`worker_detectors`).
    """
    result = ClipResult(key=spec.key)
    if spec.problem is not None:  # the listing already knows (no transcript, a listed video missing)
        result.rejection = Rejection(key=spec.key, split=spec.split, reason=spec.problem[0], detail=spec.problem[1])
        return result
    try:
        spec, arrays = _compute(spec, options.preset, mean_face, result, options.silent, detectors)
        with _timed(result, "encode"):
            segments = _segments(spec, len(arrays.transforms), options)
            crop_fields = _encode_crops(arrays, segments, options.preset)
            result.samples = [_encode(spec, arrays, seg, options, c) for seg, c in zip(segments, crop_fields)]
        if not result.samples:
            raise ClipError("no samples", "no word spans a whole frame")
    except ClipError as e:
        result.samples = []
        result.rejection = Rejection(key=spec.key, split=spec.split, reason=e.reason, detail=e.detail)
    except OSError as e:  # storage failing under the run (a network file system, a dying disk): may pass
        result.samples = []
        reason = "I/O error" if e.errno in TRANSIENT_ERRNOS else "internal error"
        result.rejection = Rejection(key=spec.key, split=spec.split, reason=reason,
                                     detail=f"{type(e).__name__}: {e}".splitlines()[0][:300],
                                     trace="" if reason == "I/O error" else traceback.format_exc())
    except Exception as e:  # noqa: BLE001 - one clip's surprise must not end a run of thousands
        result.samples = []
        result.rejection = Rejection(key=spec.key, split=spec.split, reason="internal error",
                                     detail=f"{type(e).__name__}: {e}".splitlines()[0][:300],
                                     trace=traceback.format_exc())
    return result
