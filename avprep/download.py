"""Download a corpus's official archives: resumable (HTTP Range into ``NAME.part``), checked, unpacked.

GRID (Cooke et al., 2006) as its site serves it: per speaker ``sN/video/sN.mpg_vcd.zip`` (normal-quality MPEG-1
videos) and ``sN/align/sN.tar`` (word alignments) under the base URL. Each archive is

1. fetched into ``OUT/.downloads/NAME.part``; an interrupted transfer is resumed from the bytes already there with
   ``Range: bytes=N-`` (a server that ignores Range sends the whole file again and the part is restarted);
2. checked: against the SHA-256 in a checksum file (``sha256sum`` format, from ``--checksums`` or ``SHA256SUMS``
   beside the archives on the server) when there is one, else against the size the server declared;
3. renamed to ``NAME`` and unpacked into the layout ``avprep grid`` reads (``OUT/sN/*.mpg``, ``OUT/sN/align/``);
   a ``NAME.done`` marker makes a re-run skip finished archives. An archive that no checksum vouches for is
   unpacked only if its members declare at most ``MAX_UNPACK_RATIO`` times its own size in all (GRID's MPEG videos
   and alignment tars unpack to about 1x), and, for a zip, only stored or deflated members (zipfile inflates bzip2
   and LZMA without a bound): a decompression bomb from a bad mirror is refused before anything is written.

Only the standard library speaks HTTP here (urllib); the progress bar is rich's.
"""

from __future__ import annotations

import hashlib
import http.client
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

GRID_BASE_URL = "https://spandh.dcs.shef.ac.uk/gridcorpus"
CHECKSUM_FILE = "SHA256SUMS"
CHUNK = 1 << 16
MAX_UNPACK_RATIO = 10  # unpacked bytes per archive byte, for an archive without a checksum


class DownloadError(Exception):
    """A download that cannot be completed or verified; the message is one line a user can act on."""


@dataclass(frozen=True)
class Archive:
    path: str  # relative to the base URL, e.g. "s1/video/s1.mpg_vcd.zip"
    speaker: str  # unpacked into OUT/<speaker>/ unless its members already start with that folder

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


def grid_archives(speakers: list[str], alignments: bool = True) -> list[Archive]:
    out = []
    for speaker in speakers:
        if not (speaker[:1] == "s" and speaker[1:].isdigit() and 1 <= int(speaker[1:]) <= 34):
            raise ValueError(f"GRID speakers are s1 ... s34, got {speaker!r}")
        out.append(Archive(f"{speaker}/video/{speaker}.mpg_vcd.zip", speaker))
        if alignments:
            out.append(Archive(f"{speaker}/align/{speaker}.tar", speaker))
    return out


def read_checksums(text: str) -> dict[str, str]:
    """``sha256sum`` output -> {file name: hex digest}; names are matched by their last path component too."""
    sums = {}
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and len(parts[0]) == 64:
            name = parts[-1].lstrip("*")
            sums[name] = parts[0].lower()
            sums.setdefault(PurePosixPath(name).name, parts[0].lower())
    return sums


def remote_checksums(base_url: str, timeout: float = 30.0) -> dict[str, str]:
    """The server's ``SHA256SUMS`` beside the archives, or {} if it has none."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/{CHECKSUM_FILE}", timeout=timeout) as r:
            return read_checksums(r.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {}
        raise DownloadError(f"{base_url}/{CHECKSUM_FILE}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"cannot reach {base_url}: {e.reason}") from None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _total_from(response, already: int) -> int | None:
    content_range = response.headers.get("Content-Range")  # "bytes 100-999/1000"
    if content_range and "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return (int(length) + already) if length is not None else None


def fetch(url: str, dest: Path, progress: Progress | None = None, timeout: float = 60.0) -> int | None:
    """Fetch ``url`` into ``dest.part`` (resuming what is there) and return the size the server declared.
    Raises DownloadError (the part file is kept for the next try) or urllib errors for the caller to retry."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # asked past the end: the part is complete already (or longer than the file)
            return None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range: it is sending the whole file, so start the part again
        total = _total_from(response, have)
        task = progress.add_task(dest.name, total=total, completed=have) if progress is not None else None
        try:
            with part.open("ab" if have else "wb") as f:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    if task is not None:
                        progress.advance(task, len(block))
        finally:
            if task is not None:
                progress.remove_task(task)
    size = part.stat().st_size
    if total is not None and size < total:
        # urllib's read() may return a short body silently when the peer closes early.
        raise ConnectionError(f"connection closed at {size} of {total} bytes")
    return total


def _verify(part: Path, name: str, expected_sha: str | None, expected_size: int | None) -> None:
    size = part.stat().st_size
    if expected_size is not None and size < expected_size:
        raise DownloadError(f"{name}: transfer ended at {size} of {expected_size} bytes; run again to resume")
    if expected_sha is not None:
        got = sha256(part)
        if got != expected_sha:
            part.unlink()  # a wrong file cannot be resumed into a right one
            raise DownloadError(f"{name}: SHA-256 mismatch (expected {expected_sha[:16]}..., got {got[:16]}...); "
                                "the partial file was deleted, run again to download it afresh")
    elif expected_size is not None and size != expected_size:
        part.unlink()
        raise DownloadError(f"{name}: {size} bytes, the server declared {expected_size}; deleted, run again")


def _safe_members(names: list[str], archive: Path) -> None:
    for name in names:
        p = PurePosixPath(name)
        if p.is_absolute() or ".." in p.parts:
            raise DownloadError(f"{archive.name}: refusing member {name!r} outside the output folder")


def _check_size(declared: int, archive: Path, max_bytes: int | None) -> None:
    if max_bytes is not None and declared > max_bytes:
        raise DownloadError(f"{archive.name}: its members declare {declared} bytes unpacked, over the "
                            f"{max_bytes} ({MAX_UNPACK_RATIO}x its size) allowed for an archive no checksum vouches "
                            "for; pass --checksums with its SHA-256 to unpack it")


def unpack(archive: Path, out_dir: Path, speaker: str, max_bytes: int | None = None) -> Path:
    """Unpack into ``out_dir/<speaker>/`` (or into ``out_dir`` when the members already start with ``<speaker>/``).
    ``max_bytes``: refuse (DownloadError, nothing written) an archive whose members declare more in all, or a zip
    with members neither stored nor deflated (unchecked archives)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            infos = [i for i in z.infolist() if not i.filename.endswith("/")]
            names = [i.filename for i in infos]
            _safe_members(names, archive)
            if max_bytes is not None:
                odd = [i.filename for i in infos if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)]
                if odd:
                    raise DownloadError(f"{archive.name}: member {odd[0]!r} is compressed with a method other than "
                                        "deflate (unbounded to inflate); pass --checksums with its SHA-256 to unpack "
                                        "it")
            # zipfile stops a member at its declared size (and checks its CRC): the declared sizes bound the output.
            _check_size(sum(i.file_size for i in infos), archive, max_bytes)
            target = out_dir if all(n.split("/")[0] == speaker for n in names) else out_dir / speaker
            z.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if m.isfile()]
            _safe_members([m.name for m in members], archive)
            _check_size(sum(m.size for m in members), archive, max_bytes)
            names = [m.name.removeprefix("./") for m in members]
            target = out_dir if all(n.split("/")[0] == speaker for n in names) else out_dir / speaker
            t.extractall(target, members=members, filter="data")
    else:
        raise DownloadError(f"{archive.name} is neither a zip nor a tar archive")
    return target


def download(
    archives: list[Archive],
    out_dir: Path,
    base_url: str = GRID_BASE_URL,
    checksums: dict[str, str] | None = None,
    retries: int = 3,
    progress: bool = True,
    console: Console | None = None,
    timeout: float = 60.0,
    retry_wait: float = 1.0,
) -> list[Path]:
    """Download, verify and unpack ``archives`` from ``base_url`` into ``out_dir``; returns the unpacked folders."""
    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    cache = out_dir / ".downloads"
    cache.mkdir(parents=True, exist_ok=True)
    sums = checksums if checksums is not None else remote_checksums(base_url, timeout)
    if not sums:
        console.log("no SHA256SUMS given or on the server: checking sizes only")
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn()]
    unpacked = []
    with Progress(*columns, console=console, disable=not progress) as bar:
        for archive in archives:
            dest = cache / archive.name
            done = cache / (archive.name + ".done")
            if done.exists():
                unpacked.append(Path(done.read_text().strip()))
                continue
            url = f"{base_url.rstrip('/')}/{archive.path}"
            expected = sums.get(archive.path) or sums.get(archive.name)
            if not dest.exists():
                for attempt in range(retries + 1):
                    try:
                        total = fetch(url, dest, bar, timeout)
                        break
                    # A dropped connection surfaces as IncompleteRead (http.client) or an OSError (reset, timeout).
                    except (http.client.HTTPException, urllib.error.URLError, OSError) as e:
                        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
                        if attempt == retries:
                            raise DownloadError(f"{url}: {reason}; the {dest.name}.part file is kept, run again to "
                                                "resume") from None
                        console.log(f"{archive.name}: {reason}, resuming (try {attempt + 2} of {retries + 1})")
                        time.sleep(min(retry_wait * 2.0**attempt, 10.0))
                part = dest.with_name(dest.name + ".part")
                _verify(part, archive.name, expected, total)
                part.rename(dest)
            elif expected is not None and sha256(dest) != expected:
                dest.unlink()
                raise DownloadError(f"{archive.name}: the cached archive fails its SHA-256; deleted, run again")
            cap = None if expected else MAX_UNPACK_RATIO * dest.stat().st_size
            target = unpack(dest, out_dir, archive.speaker, cap)
            done.write_text(str(target))
            unpacked.append(target)
            console.log(f"{archive.name}: verified ({'sha256' if expected else 'size'}), unpacked into {target}")
    return unpacked

