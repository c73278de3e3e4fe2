"""Reading a member's bytes without allocating far more than its size suggests (shards come from elsewhere too).

The bound each decoder enforces, before it allocates the result (decoded bytes per stored byte of the member):

| stored as   | bound                                                                                               |
|-------------|-----------------------------------------------------------------------------------------------------|
| ``.npy``    | exactly the payload: the header's shape x itemsize must equal the bytes after the header (1x)       |
| ``.npz``    | stored or deflated members only (zipfile inflates bzip2 and LZMA without a bound before any size   |
|             | check); the zip's declared uncompressed size, at most ``NPZ_MAX_RATIO`` (deflate's own maximum,     |
|             | 1032x) x the compressed size; zipfile stops inflating at the declared size, and the inner ``.npy``  |
|             | must fill it                                                                                        |
| FLAC        | the sample count STREAMINFO declares, x 4 bytes (float32), at most ``FLAC_MAX_RATIO`` x the member  |
| JPEG (jpg)  | the pixels the JPEG header declares, at most ``JPEG_MAX_RATIO`` x the member, checked before    |
|             | decoding (and the frame count its comment declares, at most the JSON's)                             |
| H.264 (mp4) | decoding stops once decoded pixels pass ``VIDEO_MAX_RATIO`` x the member (the declared frame size  |
|             | is checked before the first frame)                                                                  |

The ratios sit above the most compressible real content measured (all-zero clips: FLAC 1381x for 60 s at 16 kHz,
H.264 617x for 75 RGB 96x96 frames, JPEG q90 181x for 75 RGB 96x96 frames, deflated int8 flow 956x); see
docs/reliability.md. On top of these,
:func:`avbridge.sample.decode_sample` caps each field at the length its sample's JSON declares.
"""

from __future__ import annotations

import io
import math
import re
import zipfile

import numpy as np

NPZ_MAX_RATIO = 1032
# Compression methods an .npz member may use: numpy writes stored (np.savez) or deflated (np.savez_compressed)
# members. zipfile reads a deflated member in bounded steps, but hands a bzip2 or LZMA member's whole compressed
# chunk to a decompressor without an output limit: 555 bytes of bzip2 grew a reader by 804 MiB before any check.
NPZ_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
FLAC_MAX_RATIO = 4096
VIDEO_MAX_RATIO = 2048
JPEG_MAX_RATIO = 1024


def npy(data: bytes, dtype: np.dtype | tuple | None = None) -> np.ndarray:
    """A ``.npy`` payload -> array; the header must describe exactly the bytes that follow it. ``dtype``: the one
    allowed, or a tuple of those allowed."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dt = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dt = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"npy format version {version} (1.0 or 2.0 expected)")
    except ValueError as e:
        raise ValueError(f"not an npy array ({e})") from None
    if dt.hasobject:
        raise ValueError("npy of Python objects (not allowed)")
    allowed = [np.dtype(d) for d in (dtype if isinstance(dtype, tuple) else (dtype,))] if dtype is not None else []
    if allowed and dt not in allowed:
        raise ValueError(f"dtype {dt}, expected {' or '.join(str(d) for d in allowed)}")
    offset = buf.tell()
    count = math.prod(shape)
    if count * dt.itemsize != len(data) - offset:
        raise ValueError(f"header declares {shape} {dt} = {count * dt.itemsize} bytes, the member holds "
                         f"{len(data) - offset} after the header")
    array = np.frombuffer(data, dt, count, offset).reshape(shape, order="F" if fortran else "C")
    return array.copy()  # owned and writeable, like np.load's


def npz(data: bytes, names: dict[str, np.dtype | None]) -> dict[str, np.ndarray]:
    """The named arrays of a deflated ``.npz``, each within deflate's maximum expansion of its compressed size."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise ValueError(f"not an npz archive ({e})") from None
    infos = {i.filename: i for i in zf.infolist()}
    out = {}
    for name, dtype in names.items():
        info = infos.get(f"{name}.npy")
        if info is None:
            raise ValueError(f"npz has no array {name!r} (has {sorted(infos)[:5]})")
        if info.compress_type not in NPZ_METHODS:
            raise ValueError(f"npz array {name!r} is compressed with method {info.compress_type} (only stored or "
                             "deflated members are read: others inflate without a bound)")
        if info.file_size > NPZ_MAX_RATIO * max(info.compress_size, 1) + 4096:
            raise ValueError(f"npz array {name!r} declares {info.file_size} bytes from {info.compress_size} "
                             f"compressed (over deflate's {NPZ_MAX_RATIO}x)")
        with zf.open(info) as f:  # stops at the declared size; checks the CRC at the end
            raw = f.read(info.file_size)
        out[name] = npy(raw, dtype)
    return out


def flac(data: bytes, max_samples: int | None = None) -> tuple[np.ndarray, int]:
    """FLAC bytes -> (mono float32 waveform, sample rate); the declared length is checked before reading."""
    import soundfile as sf

    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - libsndfile's "format not recognised" and the like
        why = re.sub(r"Error opening <[^>]*>: ", "", str(e)).strip()[:120]
        raise ValueError(f"not a readable audio file ({why})") from None
    with f:
        if f.format != "FLAC":
            raise ValueError(f"{f.format} audio, not FLAC")
        if f.channels != 1:
            raise ValueError(f"{f.channels} channels, mono expected")
        if not 0 < f.frames * 4 <= FLAC_MAX_RATIO * len(data):
            raise ValueError(f"declares {f.frames} samples from {len(data)} bytes (over {FLAC_MAX_RATIO}x)")
        if max_samples is not None and f.frames > max_samples:
            raise ValueError(f"declares {f.frames} samples, the sample's JSON {max_samples}")
        wave = f.read(frames=f.frames, dtype="float32", always_2d=False)
        return wave, int(f.samplerate)


def video_budget(data: bytes) -> int:
    return VIDEO_MAX_RATIO * len(data)


def jpeg_budget(data: bytes) -> int:
    """Decoded bytes a ``.jpg`` crop field may declare: ``JPEG_MAX_RATIO`` x its stored size."""
    return JPEG_MAX_RATIO * len(data)
