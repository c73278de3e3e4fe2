"""Seeded mutations of real shard samples and real GRID clips, and how each mutated input ends.

Used by tests/test_fuzz_shards.py and tests/test_fuzz_videos.py (short seeded runs) and by scripts/fuzz.py (the long
form whose figures are in docs/reliability.md). Every mutation is a function of a numpy Generator, so a seed
reproduces an input exactly.
"""

from __future__ import annotations

import ast
import io
import json
import signal
import struct
import tarfile
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from avbridge.sample import SampleError, decode_sample

# ----------------------------------------------------------------------------------------------- real samples


def make_grid_shards(out: Path, grid_root: Path) -> dict[str, Path]:
    """Real GRID samples through the real pipeline: two clips cut into words with the bridging preset (H.264 crops,
    FLAC, float16 mel, landmarks, transforms) and one sentence with the two-tower preset stored as raw npy crops,
    deflated flow and 8-bit spectrograms (npz), so every stored field kind is present."""
    import os

    from rich.console import Console

    from avprep.corpora import grid
    from avprep.options import PrepOptions
    from avprep.prepare import prepare

    clips = {c.utterance: c for c in grid.find_clips(grid_root, ["s1"])}
    quiet = Console(file=open(os.devnull, "w"))
    words = prepare([clips["bbaf2n"], clips["lrae3s"]], "grid", out / "words",
                    PrepOptions(preset="bridging-grid", console=quiet, progress=False), unit="word",
                    vocabulary=tuple(grid.vocabulary()))
    assert words.clips_written == 2, words.rejected
    tower = PrepOptions(preset="two-tower", feature_dtype="uint8", crop_codec="npy", console=quiet, progress=False)
    towers = prepare([clips["pgwr6p"]], "grid", out / "tower", tower)
    assert towers.clips_written == 1, towers.rejected
    return {"words": out / "words", "tower": out / "tower"}


def read_samples(folder: Path) -> list[dict]:
    from avprep.shards import iter_raw_samples, shard_paths

    out = []
    for path in shard_paths(folder):
        for raw in iter_raw_samples(path):
            raw.pop("__shard__", None)
            out.append(raw)
    return out


def write_tar(path: Path, samples: list[dict]) -> Path:
    """Members named exactly ``{key}.{field}`` (no checks: hostile names are the point)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for raw in samples:
            for name, data in raw.items():
                if name.startswith("__"):
                    continue
                info = tarfile.TarInfo(f"{raw['__key__']}.{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return path


# ----------------------------------------------------------------------------------------------- shard mutations


def _npy_bytes(descr: str, shape: tuple, payload: bytes, fortran: bool = False) -> bytes:
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode("latin1")
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def _npy_parts(data: bytes) -> tuple[dict, bytes]:
    hlen = struct.unpack("<H", data[8:10])[0]
    return ast.literal_eval(data[10 : 10 + hlen].decode("latin1")), data[10 + hlen :]


def _members(raw: dict, suffix: tuple[str, ...] = ()) -> list[str]:
    return sorted(n for n in raw if not n.startswith("__") and (not suffix or n.endswith(suffix)))


def _flac_wav_bytes(rng: np.random.Generator) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, rng.standard_normal(1600).astype(np.float32) * 0.1, 16000, format="WAV")
    return buf.getvalue()


def _m_truncated(raw, rng, pool):
    name = rng.choice(_members(raw))
    raw[name] = raw[name][: int(rng.integers(0, len(raw[name])))]
    return name


def _m_flipped(raw, rng, pool):
    name = rng.choice(_members(raw))
    data = bytearray(raw[name])
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(data)))
        data[i] ^= 1 << int(rng.integers(0, 8))
    raw[name] = bytes(data)
    return name


def _m_huge_npy_shape(raw, rng, pool):
    name = rng.choice(_members(raw, (".npy",)))
    header, payload = _npy_parts(raw[name])
    huge = tuple(int(v) for v in rng.choice([2**20, 2**24, 2**31 - 1, 10**6], size=3))
    raw[name] = _npy_bytes(header["descr"], huge, payload)
    return name


def _m_npy_shape_off(raw, rng, pool):
    name = rng.choice(_members(raw, (".npy",)))
    header, payload = _npy_parts(raw[name])
    shape = list(header["shape"])
    shape[int(rng.integers(0, len(shape)))] += int(rng.choice([-1, 1, 7]))
    raw[name] = _npy_bytes(header["descr"], tuple(max(0, s) for s in shape), payload)
    return name


def _m_wrong_dtype(raw, rng, pool):
    name = rng.choice(_members(raw, (".npy",)))
    header, payload = _npy_parts(raw[name])
    dtype = np.dtype(header["descr"])
    array = np.frombuffer(payload, dtype).reshape(header["shape"])
    from avbridge.sample import NPY_DTYPES  # (landmarks.npy takes float16 or float32: neither is "another")

    allowed = NPY_DTYPES.get(name, dtype)
    allowed = {np.dtype(a) for a in (allowed if isinstance(allowed, tuple) else (allowed,))} | {dtype}
    other = [d for d in ("<f8", "<i4", "<u2", "<f4", "|u1", "<f2", ">f2") if np.dtype(d) not in allowed]
    buf = io.BytesIO()
    np.save(buf, array.astype(rng.choice(other)))
    raw[name] = buf.getvalue()
    return name


def _m_object_npy(raw, rng, pool):
    name = rng.choice(_members(raw, (".npy",)))
    buf = io.BytesIO()
    np.save(buf, np.array([1, "two", None], dtype=object), allow_pickle=True)
    raw[name] = buf.getvalue()
    return name


def _m_unknown_member(raw, rng, pool):
    name = str(rng.choice(["notes.txt", "mouth.avi", "mel.npy.bak", "audio.wav", "x"]))
    raw[name] = rng.bytes(int(rng.integers(0, 64)))
    return name


def _m_dotted_key(raw, rng, pool):
    """A key with a dot in it: webdataset (and avprep) split the member name at the first dot."""
    tail = str(rng.choice(["v2", "part", "0"]))
    for name in _members(raw):
        raw[f"{tail}.{name}"] = raw.pop(name)
    return f"{tail}.*"


def _m_missing_json(raw, rng, pool):
    del raw["json"]
    return "json"


def _m_json_not_object(raw, rng, pool):
    raw["json"] = bytes(rng.choice([b"[1, 2, 3]", b"null", b"42", b'"text"', b"", b"{", b"\xff\xfe{}", b"{}"]))
    return "json"


def _m_json_bad_values(raw, rng, pool):
    meta = json.loads(raw["json"])
    choices = [("num_frames", "75"), ("num_frames", -3), ("num_frames", 0), ("num_frames", 10**12),
               ("num_frames", 1.5), ("num_frames", True), ("samples_per_frame", 0), ("label", "x"),
               ("spectrogram", []), ("num_frames", meta.get("num_frames", 3) + 1)]
    if "flow.npz" in raw:  # the flow scale matters only where there is flow
        choices.append(("flow", {"scale": "nan"}))
    key, value = choices[int(rng.integers(0, len(choices)))]
    meta[key] = value
    raw["json"] = json.dumps(meta).encode()
    return "json"


def _m_not_flac(raw, rng, pool):
    if "wav.flac" not in raw:
        return _m_not_mp4(raw, rng, pool)
    other = [m for m in _members(raw) if m != "wav.flac"]
    raw["wav.flac"] = [rng.bytes(int(rng.integers(1, 4096))), _flac_wav_bytes(rng), raw[rng.choice(other)],
                       b"fLaC" + rng.bytes(64)][int(rng.integers(0, 4))]
    return "wav.flac"


def _m_not_mp4(raw, rng, pool):
    videos = _members(raw, (".mp4",))
    if not videos:
        return _m_not_flac(raw, rng, pool)
    name = rng.choice(videos)
    other = [m for m in _members(raw) if m != name]
    raw[name] = [rng.bytes(int(rng.integers(1, 4096))), raw[rng.choice(other)], b"\x00\x00\x00\x18ftypmp42" +
                 rng.bytes(128), b""][int(rng.integers(0, 4))]
    return name


def _m_zip_size_lie(raw, rng, pool):
    """An npz whose zip headers declare a huge uncompressed size (a zip bomb's first step)."""
    names = _members(raw, (".npz",))
    if not names:
        return _m_flac_length_lie(raw, rng, pool)
    name = rng.choice(names)
    data = bytearray(raw[name])
    size = struct.pack("<I", int(rng.choice([2**31 - 1, 2**32 - 2, 10**9])))
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(sig)
        while at >= 0:
            data[at + offset : at + offset + 4] = size
            at = data.find(sig, at + 4)
    raw[name] = bytes(data)
    return name


def _m_flac_length_lie(raw, rng, pool):
    """STREAMINFO's 36-bit total-samples field set far beyond what the bytes hold."""
    if "wav.flac" not in raw:
        return _m_zip_size_lie(raw, rng, pool)
    data = bytearray(raw["wav.flac"])
    total = int(rng.choice([2**36 - 1, 2**32, 10**9]))
    data[21] = (data[21] & 0xF0) | (total >> 32) & 0x0F
    data[22:26] = struct.pack(">I", total & 0xFFFFFFFF)
    raw["wav.flac"] = bytes(data)
    return "wav.flac"


def _m_swapped_member(raw, rng, pool):
    """A member from another sample of a different length."""
    t = json.loads(raw["json"])["num_frames"] if "json" in raw else None
    donors = [d for d in pool if json.loads(d["json"])["num_frames"] != t]
    donor = donors[int(rng.integers(0, len(donors)))]
    common = [m for m in _members(raw) if m in donor and m != "json"]
    name = rng.choice(common)
    raw[name] = donor[name]
    return name


def _m_empty_member(raw, rng, pool):
    name = rng.choice(_members(raw))
    raw[name] = b""
    return name


SHARD_MUTATIONS: dict[str, Callable] = {
    "truncated member": _m_truncated,
    "flipped bits (1-8)": _m_flipped,
    "npy header: enormous shape": _m_huge_npy_shape,
    "npy header: shape off by a few": _m_npy_shape_off,
    "npy of another dtype": _m_wrong_dtype,
    "npy of Python objects": _m_object_npy,
    "unknown member name": _m_unknown_member,
    "dotted key": _m_dotted_key,
    "missing json": _m_missing_json,
    "json not an object / not JSON": _m_json_not_object,
    "json with wrong values": _m_json_bad_values,
    "wav.flac that is not FLAC": _m_not_flac,
    ".mp4 that is not H.264/mp4": _m_not_mp4,
    "npz declaring a huge size": _m_zip_size_lie,
    "FLAC declaring a huge length": _m_flac_length_lie,
    "member of another sample": _m_swapped_member,
    "empty member": _m_empty_member,
}
# Classes aimed at one kind of member: drawn from the samples that have one (when the pool has any).
NEEDS = {"npz declaring a huge size": ".npz", "FLAC declaring a huge length": "wav.flac"}
# Mutations that damage a sample detectably: every one must end in a named error, never in a decoded sample.
ALWAYS_DETECTABLE = set(SHARD_MUTATIONS) - {"flipped bits (1-8)"}


def fuzz_samples(pool: list[dict], count: int, seed: int) -> Iterator[tuple[str, str, dict]]:
    """(mutation class, member touched, mutated raw sample), cycling through the classes; keys are ``fz{seed}n{i}``."""
    rng = np.random.default_rng(seed)
    names = list(SHARD_MUTATIONS)
    for i in range(count):
        cls = names[i % len(names)]
        need = NEEDS.get(cls, "")
        candidates = [r for r in pool if any(n.endswith(need) for n in r if not n.startswith("__"))] or pool
        raw = dict(candidates[int(rng.integers(0, len(candidates)))])
        raw["__key__"] = f"fz{seed}n{i:04d}"
        member = SHARD_MUTATIONS[cls](raw, rng, pool)
        yield cls, str(member), raw


# ----------------------------------------------------------------------------------------------- outcomes


@contextmanager
def deadline(seconds: int):
    """TimeoutError if the block runs longer than ``seconds`` (a hang is an outcome too)."""

    def fire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def decode_outcome(raw: dict, fields: tuple[str, ...] | None = None, seconds: int = 20) -> tuple[str, str, int]:
    """("decoded" | "error" | "crash" | "hang", detail, peak bytes traced while decoding)."""
    tracemalloc.start()
    try:
        with deadline(seconds):
            decode_sample(raw, fields)
        outcome, detail = "decoded", ""
    except SampleError as e:
        outcome, detail = "error", str(e)
    except TimeoutError as e:
        outcome, detail = "hang", str(e)
    except Exception as e:  # noqa: BLE001 - anything else is a defect
        outcome, detail = "crash", f"{type(e).__name__}: {e}"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, detail, peak


def shard_table(rows: list[tuple[str, str, str]]) -> dict[str, Counter]:
    """mutation class -> Counter of outcomes (error outcomes split by the field they name)."""
    table: dict[str, Counter] = {}
    for cls, outcome, _detail in rows:
        table.setdefault(cls, Counter())[outcome] += 1
    return table


# ----------------------------------------------------------------------------------------------- video mutations


def _v_truncate(data: bytes, rng) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _v_overwrite_run(data: bytes, rng) -> bytes:
    out = bytearray(data)
    n = int(rng.integers(16, 4097))
    at = int(rng.integers(0, max(1, len(out) - n)))
    out[at : at + n] = rng.bytes(n)
    return bytes(out)


def _v_zero_run(data: bytes, rng) -> bytes:
    out = bytearray(data)
    n = int(rng.integers(256, 65537))
    at = int(rng.integers(0, max(1, len(out) - n)))
    out[at : at + n] = bytes(min(n, len(out) - at))
    return bytes(out)


def _v_header(data: bytes, rng) -> bytes:
    """The container's first bytes (MPEG-PS pack header, Matroska EBML header) overwritten."""
    out = bytearray(data)
    n = int(rng.integers(4, 65))
    out[:n] = rng.bytes(n) if rng.random() < 0.5 else bytes(n)
    return bytes(out)


# Container structure: MPEG-PS start codes (pack, system header, video and audio PES) and Matroska element IDs
# (EBML header, Segment, Info, Tracks, Cluster, Cues).
_STRUCTURE = [b"\x00\x00\x01\xba", b"\x00\x00\x01\xbb", b"\x00\x00\x01\xe0", b"\x00\x00\x01\xc0",
              b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67", b"\x15\x49\xa9\x66", b"\x16\x54\xae\x6b",
              b"\x1f\x43\xb6\x75", b"\x1c\x53\xbb\x6b"]


def _v_structure(data: bytes, rng) -> bytes:
    """Some container structure markers (and the size or timestamp fields after them) damaged."""
    out = bytearray(data)
    hits = []
    for code in _STRUCTURE:
        at = out.find(code)
        while at >= 0:
            hits.append((at, len(code)))
            at = out.find(code, at + len(code))
    if not hits:
        return _v_header(data, rng)
    for i in rng.choice(len(hits), size=min(len(hits), int(rng.integers(1, 20))), replace=False):
        at, n = hits[int(i)]
        out[at + n - 1] ^= int(rng.integers(1, 256))
        if rng.random() < 0.5:
            out[at + n : at + n + 6] = rng.bytes(len(out[at + n : at + n + 6]))
    return bytes(out)


def _v_splice(data: bytes, rng) -> bytes:
    """A chunk dropped or repeated (a cut or a duplicated write)."""
    n = int(rng.integers(1024, max(1025, len(data) // 4)))
    at = int(rng.integers(0, max(1, len(data) - n)))
    if rng.random() < 0.5:
        return data[:at] + data[at + n :]
    return data[: at + n] + data[at : at + n] + data[at + n :]


def _v_flip(data: bytes, rng) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 64))):
        i = int(rng.integers(0, len(out)))
        out[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _v_tiny(data: bytes, rng) -> bytes:
    return [b"", data[:4], rng.bytes(int(rng.integers(1, 512)))][int(rng.integers(0, 3))]


VIDEO_MUTATIONS: dict[str, Callable] = {
    "truncated at a random point": _v_truncate,
    "random byte run overwritten (16 B-4 KiB)": _v_overwrite_run,
    "zeroed run (256 B-64 KiB)": _v_zero_run,
    "container header overwritten": _v_header,
    "container structure damaged (MPEG-PS / Matroska)": _v_structure,
    "chunk dropped or repeated": _v_splice,
    "scattered bit flips (1-63)": _v_flip,
    "empty or a few bytes": _v_tiny,
}


def fuzz_videos(sources: list[Path], count: int, seed: int, root: Path) -> dict[str, str]:
    """Write ``count`` mutated copies of ``sources`` as a GRID folder ``root/s1/video/`` (each keeps its source's
    suffix: GRID's .mpg, the avbridge sample's .mkv); utterance -> class."""
    rng = np.random.default_rng(seed)
    names = list(VIDEO_MUTATIONS)
    folder = root / "s1" / "video"
    folder.mkdir(parents=True, exist_ok=True)
    classes = {}
    for i in range(count):
        cls = names[i % len(names)]
        src = sources[int(rng.integers(0, len(sources)))]
        utterance = f"fz{seed}v{i:04d}"
        (folder / f"{utterance}{src.suffix}").write_bytes(VIDEO_MUTATIONS[cls](src.read_bytes(), rng))
        classes[utterance] = cls
    return classes


def run_outcomes(out: Path, classes: dict[str, str]) -> tuple[dict[str, Counter], list[str]]:
    """Per mutation class: "kept" or "rejected: <reason>" per input, from the run's ledger and failure log; and
    the inputs that ended in neither (lost)."""
    from avprep.shards import _all_rows

    kept = {c for row in _all_rows(out, "ledger") for c in row["clips"]}
    failed = {row["key"]: row["reason"] for row in _all_rows(out, "failures")}
    table: dict[str, Counter] = {}
    lost = []
    for utterance, cls in classes.items():
        key = f"s1_{utterance}"
        if key in kept:
            outcome = "kept"
        elif key in failed:
            outcome = f"rejected: {failed[key]}"
        else:
            outcome = "lost"
            lost.append(key)
        table.setdefault(cls, Counter())[outcome] += 1
    return table, lost
