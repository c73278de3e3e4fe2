"""The sample contract: which fields a shard sample holds, how each is stored, and how to read one back.

A sample in a shard is a group of tar members sharing a key (``s1_bbaf2n.mouth.mp4``, ``s1_bbaf2n.json``, ...).
Keys never contain dots: webdataset splits the member name at the first dot.

| field           | stored as                 | decoded to                                                    |
|-----------------|---------------------------|---------------------------------------------------------------|
| ``mouth.mp4``   | H.264 (gray 4:0:0 or RGB) | uint8 (T, H, W) or (T, H, W, 3)                               |
| ``face.mp4``    | H.264                     | uint8 (T, H, W) or (T, H, W, 3)                               |
| ``mouth.npy``   | raw uint8 (crop_codec=npy)| as above                                                      |
| ``face.npy``    | raw uint8 (crop_codec=npy)| as above                                                      |
| ``mouth.jpg``   | one JPEG, frames stacked top to bottom, frame count in a comment (crop_codec=jpg) | as above |
| ``face.jpg``    | as mouth.jpg              | as above                                                      |
| ``flow.npz``    | int8 (T-1, H, W, 2), deflate | float32 pixels/frame = int8 * meta["flow"]["scale"]          |
| ``wav.flac``    | 16-bit FLAC               | float32 (T * samples_per_frame,)                              |
| ``mel.npy``     | float16 (n_mels, 4T)      | float32                                                       |
| ``linear.npy``  | float16 (n_fft/2+1, 4T)   | float32                                                       |
| ``mel.q8.npz``  | uint8 over the preset's value range, deflate (feature_dtype=uint8) | float32, as ``mel.npy`` |
| ``linear.q8.npz`` | as mel.q8.npz           | float32, returned as ``linear.npy``                          |
| ``landmarks.npy`` | float16 (T, K, 2)       | source-frame pixels of the mesh points in meta["landmark_ids"] |
|                 | (float32 from frames over 1024 px: float16 keeps whole pixels only there)                 |
| ``transforms.npy`` | float32 (T, 2, 3)      | affine, source frame -> registered (canonical) frame          |
| ``json``        | UTF-8 JSON                | metadata dict (see META_KEYS)                                 |

Reading is defensive (shards are traded): :func:`decode_sample` raises one :class:`SampleError` naming the key and
the field for a member that does not decode, is not a known field (a dot in a key shows up as one), has another
dtype or shape than this table, holds non-finite values, or disagrees in length with the JSON's ``num_frames``. No
member decodes to more than its size allows (:mod:`avbridge.bounds`) nor past the length the JSON declares.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from avbridge import bounds, codecs

# Field name -> (encode, decode). Field names are webdataset extensions: the part of the member name after the key.
VIDEO_FIELDS = ("mouth", "face")
# Spectrogram frames per video frame: 16 kHz audio, 25 fps video, hop 160 (640 samples a frame / 160). Every preset
# keeps it (a sample's own is samples_per_frame // spectrogram.hop_length); the training side cuts windows and pads
# batches by it.
MEL_PER_FRAME = 4
FIELDS = (
    "mouth.mp4",
    "face.mp4",
    "mouth.npy",
    "face.npy",
    "mouth.jpg",
    "face.jpg",
    "flow.npz",
    "wav.flac",
    "mel.npy",
    "linear.npy",
    "mel.q8.npz",
    "linear.q8.npz",
    "landmarks.npy",
    "transforms.npy",
    "json",
)

# Keys every sample's JSON metadata carries.
META_KEYS = (
    "key",  # the sample key, equal to __key__
    "corpus",  # "grid", "lrw", ...
    "speaker",
    "utterance",  # corpus utterance id
    "split",  # "train" | "val" | "test" | ...
    "unit",  # "sentence" | "word"
    "text",  # transcript of the sample (one word for unit=word)
    "words",  # [{"word", "start_frame", "end_frame"}] relative to the sample's first frame, end exclusive
    "label",  # class index (unit=word) or None
    "num_frames",
    "fps",
    "sample_rate",
    "samples_per_frame",
    "preset",
    "preset_hash",
    "tool_version",
)


def sample_key(*parts: str) -> str:
    """Join parts into a webdataset-safe key: dots and path separators become underscores."""
    key = "_".join(str(p) for p in parts if p != "")
    for bad in "./\\ ":
        key = key.replace(bad, "_")
    return key


def encode_field(
    name: str,
    value: Any,
    *,
    fps: float = 25.0,
    sample_rate: int = 16000,
    crf: int = codecs.VIDEO_CRF,
    speed: str = "veryfast",
    value_range: tuple[float, float] = (0.0, 1.0),
) -> bytes:
    """Encode one field value to the bytes stored in the shard."""
    if name.endswith(".mp4"):
        return codecs.encode_video(value, fps=fps, crf=crf, speed=speed)
    if name.endswith(".jpg"):
        return codecs.encode_jpeg_frames(value)
    if name == "wav.flac":
        return codecs.encode_flac(value, sample_rate)
    if name == "flow.npz":
        return codecs.encode_npz(value)
    if name.endswith(".q8.npz"):
        return codecs.encode_q8(value, *value_range)
    if name == "json":
        return codecs.encode_json(value)
    if name in ("mel.npy", "linear.npy", "landmarks.npy"):
        return codecs.encode_npy(np.asarray(value, np.float16))
    if name == "transforms.npy":
        return codecs.encode_npy(np.asarray(value, np.float32))
    if name.endswith(".npy"):
        return codecs.encode_npy(value)
    raise KeyError(f"unknown sample field {name!r}; known: {', '.join(FIELDS)}")


# dtype each .npy field is stored with (others are refused: a wrong dtype is a wrong field)
NPY_DTYPES = {"mouth.npy": np.uint8, "face.npy": np.uint8, "mel.npy": np.float16, "linear.npy": np.float16,
              "landmarks.npy": (np.float16, np.float32), "transforms.npy": np.float32}


class SampleError(ValueError):
    """One bad sample, in one line naming its key and the field at fault."""

    def __init__(self, key: Any, field: str, reason: str):
        self.key, self.field, self.reason = key, field, reason
        super().__init__(f"sample {key}: {field}: {reason}")


def decode_field(name: str, data: bytes, *, max_frames: int | None = None, max_samples: int | None = None) -> Any:
    """Decode the stored bytes of one field (see the table in this module's docstring); ValueError if they are
    not what the field stores. ``max_frames`` / ``max_samples`` cap video frames / audio samples (from the JSON)."""
    if name not in FIELDS:
        raise KeyError(f"unknown sample field {name!r}; known: {', '.join(FIELDS)}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"holds {type(data).__name__}, not bytes")
    data = bytes(data)
    if name.endswith(".mp4"):
        try:
            return codecs.decode_video(data, max_frames=max_frames, max_bytes=bounds.video_budget(data))
        except Exception as e:
            if getattr(e, "strerror", None):  # PyAV's FFmpeg errors: keep FFmpeg's reason, drop the errno noise
                raise ValueError(f"not a readable mp4 video ({e.strerror})") from None
            raise
    if name.endswith(".jpg"):
        try:
            return codecs.decode_jpeg_frames(data, max_frames=max_frames, max_bytes=bounds.jpeg_budget(data))
        except (OSError, SyntaxError, struct.error, UnicodeDecodeError) as e:  # what Pillow and the comment raise
            raise ValueError(f"not a readable jpg crop field ({type(e).__name__}: {e})") from None
    if name == "wav.flac":
        return bounds.flac(data, max_samples)[0]
    if name == "flow.npz":
        return bounds.npz(data, {"a": np.int8})["a"]
    if name.endswith(".q8.npz"):
        z = bounds.npz(data, {"q": np.uint8, "range": np.float64})
        if z["range"].shape != (2,):
            raise ValueError(f"q8 range has shape {z['range'].shape}, (2,) expected")
        lo, hi = z["range"]
        return (z["q"].astype(np.float32) * np.float32((hi - lo) / 255) + np.float32(lo)).astype(np.float32)
    if name == "json":
        return codecs.decode_json(data)
    array = bounds.npy(data, NPY_DTYPES[name])
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _positive_int(meta: dict, name: str) -> int | None:
    value = meta.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} is {value!r}, not a positive integer")
    return value


def _meta(key: Any, raw: dict[str, Any]) -> dict:
    if "json" not in raw:
        raise SampleError(key, "json", "missing (every sample carries its metadata)")
    try:
        meta = decode_field("json", raw["json"])
    except Exception as e:  # noqa: BLE001
        raise SampleError(key, "json", f"does not decode ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise SampleError(key, "json", f"a JSON {type(meta).__name__}, not an object")
    try:
        if _positive_int(meta, "num_frames") is None:
            raise ValueError("no num_frames")
        _positive_int(meta, "samples_per_frame")
        _positive_int(meta, "sample_rate")
        spec = meta.get("spectrogram")
        if spec is not None and (not isinstance(spec, dict) or _positive_int(spec, "hop_length") is None):
            raise ValueError(f"spectrogram is {spec!r}, not an object with hop_length")
        for k in ("n_mels", "n_fft"):
            _positive_int(spec or {}, k)
        if meta.get("label") is not None and (isinstance(meta["label"], bool) or not isinstance(meta["label"], int)):
            raise ValueError(f"label is {meta['label']!r}, not an integer or null")
    except ValueError as e:
        raise SampleError(key, "json", str(e)) from None
    return meta


def _expected(name: str, meta: dict) -> tuple[int | None, tuple | None, int | None]:
    """(length along the time axis, expected trailing/leading shape, time axis) of a field for this sample."""
    t, spf, spec = meta["num_frames"], meta.get("samples_per_frame"), meta.get("spectrogram") or {}
    stem = name.split(".")[0]
    if stem in VIDEO_FIELDS:
        crop = (meta.get("crops") or {}).get(stem) if isinstance(meta.get("crops"), dict) else None
        size = (crop.get("height"), crop.get("width")) if isinstance(crop, dict) else None
        return t, size, 0
    if stem == "flow":
        return t - 1, None, 0
    if stem in ("landmarks", "transforms"):
        return t, None, 0
    if name == "wav.flac":
        return (t * spf if spf else None), None, 0
    if stem in ("mel", "linear"):
        per = spf // spec["hop_length"] if spf and spec.get("hop_length") else None
        bins = spec.get("n_mels") if stem == "mel" else (spec["n_fft"] // 2 + 1 if spec.get("n_fft") else None)
        return (per * t if per else None), bins, 1
    return None, None, None


def _check_value(name: str, value: Any, meta: dict) -> None:
    """ValueError if a decoded field's rank, size or values do not fit the sample (its JSON)."""
    stem = name.split(".")[0]
    rank = {"mouth": (3, 4), "face": (3, 4), "flow": (4,), "landmarks": (3,), "transforms": (3,), "wav": (1,),
            "mel": (2,), "linear": (2,)}[stem]
    if value.ndim not in rank:
        raise ValueError(f"shape {value.shape}: rank {value.ndim}, expected {' or '.join(map(str, rank))}")
    if stem in VIDEO_FIELDS and value.ndim == 4 and value.shape[-1] != 3:
        raise ValueError(f"shape {value.shape}: {value.shape[-1]} channels, 3 expected")
    if (stem == "flow" and value.shape[-1] != 2) or (stem == "landmarks" and value.shape[-1] != 2) or \
            (stem == "transforms" and value.shape[1:] != (2, 3)):
        raise ValueError(f"shape {value.shape} is not what {name} stores")
    length, size, axis = _expected(name, meta)
    t = meta["num_frames"]
    if length is not None and value.shape[axis] != length:
        raise ValueError(f"length {value.shape[axis]}, expected {length} for {t} frames")
    if stem in VIDEO_FIELDS and size and all(isinstance(v, int) for v in size) and value.shape[1:3] != size:
        raise ValueError(f"frames {value.shape[1]}x{value.shape[2]}, the JSON's crop {size[0]}x{size[1]}")
    if stem in ("mel", "linear") and isinstance(size, int) and value.shape[0] != size:
        raise ValueError(f"{value.shape[0]} bins, the JSON's spectrogram {size}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError("non-finite values")


def check_sample(raw: dict[str, Any], fields: tuple[str, ...] | None = None) -> tuple[dict, dict[str, Any],
                                                                                     list[SampleError]]:
    """Decode and check a raw sample without stopping at the first problem: (metadata, decoded fields by stored
    name, every problem found). Raises SampleError only when the key or the JSON is unusable."""
    key = raw.get("__key__")
    if not isinstance(key, str) or not key or "." in key:
        raise SampleError(key, "__key__", f"key {key!r} is not a dot-free, non-empty string")
    problems: list[SampleError] = [
        SampleError(key, name, "not a sample field (avbridge.sample.FIELDS); a key with a dot shows up like this: "
                               "keys must not contain dots")
        for name in raw if not name.startswith("__") and name not in FIELDS]
    if problems and "json" not in raw:
        raise problems[0]  # e.g. a dotted key: every member, the json too, is an unknown field
    meta = _meta(key, raw)
    t, spf = meta["num_frames"], meta.get("samples_per_frame")
    decoded: dict[str, Any] = {}
    for name, data in raw.items():
        if name.startswith("__") or name == "json":
            continue
        if name not in FIELDS:
            continue  # reported above
        stem = name.split(".")[0]
        bare = stem if stem in VIDEO_FIELDS else f"{stem}.npy" if name.endswith(".q8.npz") else name
        if fields is not None and name not in fields and bare not in fields:
            continue
        try:
            value = decode_field(name, data, max_frames=t, max_samples=t * spf if spf else None)
            _check_value(name, value, meta)
        except Exception as e:  # noqa: BLE001 - any failure is this field's problem, named with its key
            reason = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            problems.append(SampleError(key, name, reason.strip().splitlines()[0][:300] if reason.strip() else
                                        type(e).__name__))
            continue
        decoded[name] = value
    if "flow.npz" in decoded:
        scale = (meta.get("flow") or {}).get("scale") if isinstance(meta.get("flow"), dict) else None
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            problems.append(SampleError(key, "json", f"flow.scale is {scale!r}, not a finite number"))
    return meta, decoded, problems


def decode_sample(raw: dict[str, Any], fields: tuple[str, ...] | None = None,
                  flow_frames: tuple[int, int] | None = None) -> dict[str, Any]:
    """Decode a webdataset raw sample (``{"__key__": ..., "mouth.mp4": b"...", ...}``).

    ``fields`` limits decoding to the named fields (others are dropped, not decoded), so a loader pays only for
    what the model reads; the JSON is always read (it says how long every field must be). Video fields come back
    under their bare names ("mouth", "face"), so a consumer need not know whether crops were stored as mp4, jpg or
    npy; 8-bit features come back as ``mel.npy`` / ``linear.npy``. A bad sample raises one SampleError (key, field).
    ``flow_frames`` = (start, stop): only those flow fields are scaled to float32 and returned (a training window
    needs a few of the clip's; the deflated member itself is inflated whole — npz cannot be read in part).
    """
    meta, decoded, problems = check_sample(raw, fields)
    if problems:
        raise problems[0]
    out: dict[str, Any] = {"__key__": raw["__key__"]}
    if fields is None or "json" in fields:
        out["json"] = meta
    for name, value in decoded.items():
        stem = name.split(".")[0]
        bare = stem if stem in VIDEO_FIELDS else f"{stem}.npy" if name.endswith(".q8.npz") else name
        out[bare] = value
    if "flow.npz" in out:
        flow = out["flow.npz"] if flow_frames is None else out["flow.npz"][flow_frames[0] : flow_frames[1]]
        out["flow.npz"] = flow.astype(np.float32) * float(meta["flow"]["scale"])
    return out
