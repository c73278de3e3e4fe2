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
| ``mel.q8.npz``  | uint8 over the preset's value range, deflate (feature_dtype=uint8) | float32, returned as ``mel.npy`` |
| ``linear.q8.npz`` | as mel.q8.npz           | float32, returned as ``linear.npy``                          |
| ``landmarks.npy`` | float16 (T, K, 2)       | source-frame pixels of the mesh points in meta["landmark_ids"] |
| ``transforms.npy`` | float32 (T, 2, 3)      | affine, source frame -> registered (canonical) frame          |
| ``json``        | UTF-8 JSON                | metadata dict (see META_KEYS)                                 |
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avbridge import codecs

# Field name -> (encode, decode). Field names are webdataset extensions: the part of the member name after the key.
VIDEO_FIELDS = ("mouth", "face")
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


def decode_field(name: str, data: bytes) -> Any:
    """Decode the stored bytes of one field (see the table in this module's docstring)."""
    if name.endswith(".mp4"):
        return codecs.decode_video(data)
    if name.endswith(".jpg"):
        return codecs.decode_jpeg_frames(data)
    if name == "wav.flac":
        return codecs.decode_flac(data)[0]
    if name == "flow.npz":
        return codecs.decode_npz(data)
    if name.endswith(".q8.npz"):
        return codecs.decode_q8(data)
    if name == "json":
        return codecs.decode_json(data)
    if name.endswith(".npy"):
        array = codecs.decode_npy(data)
        return array.astype(np.float32) if array.dtype == np.float16 else array
    raise KeyError(f"unknown sample field {name!r}; known: {', '.join(FIELDS)}")


def decode_sample(raw: dict[str, Any], fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Decode a webdataset raw sample (``{"__key__": ..., "mouth.mp4": b"...", ...}``).

    ``fields`` limits decoding to the named fields (others are dropped, not decoded), so a loader pays only for
    what the model reads. Video fields come back under their bare names ("mouth", "face"), so a consumer need not
    know whether crops were stored as mp4, jpg or npy; 8-bit features come back as ``mel.npy`` / ``linear.npy``.
    """
    out: dict[str, Any] = {"__key__": raw["__key__"]}
    for name, data in raw.items():
        if name.startswith("__"):
            continue
        stem = name.split(".")[0]
        bare = stem if stem in VIDEO_FIELDS else f"{stem}.npy" if name.endswith(".q8.npz") else name
        if fields is not None and name not in fields and bare not in fields:
            continue
        out[bare] = decode_field(name, data)
    if "flow.npz" in out and "json" in out:
        out["flow.npz"] = out["flow.npz"].astype(np.float32) * float(out["json"]["flow"]["scale"])
    return out
