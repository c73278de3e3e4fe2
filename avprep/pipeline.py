"""process_clip: one source clip -> its samples (or one rejection). The stage order, and nothing else.

Stages run on the whole clip once (decode, landmarks, registration, crops, flow, spectrograms); ``unit="word"``
then slices the results at the aligned word boundaries, so word samples cost no second pass over the video.

A worker process keeps its detector graphs from clip to clip (:func:`worker_detectors`); a caller that wants
its own passes ``detectors`` to :func:`process_clip`.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from avbridge import __version__, spectra
from avbridge.codecs import encode_video_segments
from avbridge.sample import encode_field
from avprep.presets import LANDMARK_MODES, Preset
from avprep.stages import crops, flow, register, span
from avprep.stages.decode import DecodedClip, decode_clip
from avprep.stages.errors import ClipError
from avprep.stages.images import decode_images
from avprep.stages.landmarks import NUM_POINTS, SUBSET, Detectors, detect_landmarks
from avprep.types import ClipResult, ClipSpec, Rejection, Sample


@dataclass(frozen=True)
class Options:
    preset: Preset
    unit: str = "sentence"  # "sentence" | "word"
    vocabulary: tuple[str, ...] = ()  # word labels for unit="word"
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


def _decode(spec: ClipSpec, preset: Preset, silent: bool) -> DecodedClip:
    """A video file, or numbered images plus an audio file (pre-cropped corpora), as the spec says."""
    for path in (spec.video, spec.audio):
        if path is not None and path.is_file() and path.stat().st_size == 0:
            raise ClipError("empty file", f"{path.name} is 0 bytes")
    if spec.first_image is not None:
        if spec.audio is None:
            raise ClipError("no audio stream", "an image-sequence clip needs an audio file")
        return decode_images(spec.video, spec.first_image, spec.image_suffix, spec.audio, preset.fps,
                             preset.sample_rate, preset.samples_per_frame_range)
    return decode_clip(spec.video, spec.audio, preset.fps, preset.sample_rate, preset.samples_per_frame_range,
                       silent=silent)


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
             silent: bool = False, detectors: Detectors | None = None) -> _ClipArrays:
    with _timed(result, "decode"):
        clip = _decode(spec, preset, silent)
        if spec.span is not None:  # one segment of a long clip: the stages see only its frames (cut checks words)
            clip = span.cut(clip, spec.span, spec.words)
        else:
            check_length(spec, clip)
    mode = preset.registration.mode
    box = None
    turns = 0
    if mode in LANDMARK_MODES:
        with _timed(result, "landmarks"):
            marks = detect_landmarks(clip.frames, detectors=detectors or worker_detectors())
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
    return _ClipArrays(
        mouth=arrays["mouth"], face=arrays["face"], flow=arrays["flow"], wave=clip.audio, mel=mel, linear=linear,
        landmarks=points[:, ids] if ids else points[:, :0], transforms=reg.transforms, meta=meta,
    )


def _segments(spec: ClipSpec, num_frames: int, options: Options) -> list[tuple[str, int, int, str, int | None]]:
    """(key, first frame, end frame, text, label) of each sample the clip yields."""
    if options.unit == "sentence":
        return [(spec.key, 0, num_frames, spec.text, spec.label)]
    if not spec.words:
        raise ClipError("no alignment", "unit=word needs word alignments")
    fps = options.preset.fps
    out = []
    for i, w in enumerate(spec.words):
        # Whole frames covering the word: a frame belongs to it if any of its 40 ms does.
        start, end = max(0, math.floor(w.start * fps + 1e-6)), min(num_frames, math.ceil(w.end * fps - 1e-6))
        if end - start < 1:
            continue
        label = options.vocabulary.index(w.word) if w.word in options.vocabulary else None
        if options.vocabulary and label is None:
            raise ClipError("word not in vocabulary", f"{w.word!r} at {w.start:.2f}s")
        out.append((f"{spec.key}_w{i}", start, end, w.word, label))
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
            spans = [(start, end) for _, start, end, _, _ in segments]
            encoded = encode_video_segments(video, spans, fps=preset.fps, crf=preset.video_crf,
                                            speed=preset.video_speed)
        else:
            encoded = [encode_field(field, video[start:end], fps=preset.fps, crf=preset.video_crf,
                                    speed=preset.video_speed) for _, start, end, _, _ in segments]
        for fields, data in zip(out, encoded):
            fields[field] = data
    return out


def _encode(spec: ClipSpec, arrays: _ClipArrays, seg, options: Options, crops: dict[str, bytes]) -> Sample:
    key, start, end, text, label = seg
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
        fields["landmarks.npy"] = encode_field("landmarks.npy", arrays.landmarks[start:end])
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


def process_clip(spec: ClipSpec, options: Options, mean_face: np.ndarray | None = None,
                 detectors: Detectors | None = None) -> ClipResult:
    """Run every stage on one clip. Never raises for bad input: a bad clip comes back as a rejection.

    ``detectors``: the graphs to use; None = this worker process's own (:func:`worker_detectors`).
    """
    result = ClipResult(key=spec.key)
    spec = span.localise(spec, options.preset.fps)
    try:
        arrays = _compute(spec, options.preset, mean_face, result, options.silent, detectors)
        with _timed(result, "encode"):
            segments = _segments(spec, len(arrays.transforms), options)
            crop_fields = _encode_crops(arrays, segments, options.preset)
            result.samples = [_encode(spec, arrays, seg, options, c) for seg, c in zip(segments, crop_fields)]
        if not result.samples:
            raise ClipError("no samples", "no word spans a whole frame")
    except ClipError as e:
        result.samples = []
        result.rejection = Rejection(key=spec.key, split=spec.split, reason=e.reason, detail=e.detail)
    except Exception as e:  # noqa: BLE001 - one clip's surprise must not end a run of thousands
        result.samples = []
        result.rejection = Rejection(key=spec.key, split=spec.split, reason="internal error",
                                     detail=f"{type(e).__name__}: {e}".splitlines()[0][:300],
                                     trace=traceback.format_exc())
    return result
