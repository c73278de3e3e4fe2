"""avprep download grid against a local HTTP server (loopback) serving archives built from the real GRID clips:
a full download into the layout `avprep grid` reads, an interrupted transfer that resumes with a Range request,
a checksum mismatch, a server without checksums (size check) and the command line."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console
from typer.testing import CliRunner

from avprep import download as dl
from avprep.cli import app
from avprep.corpora import grid

QUIET = Console(file=open(os.devnull, "w"))
UTTERANCES = ("bbaf2n", "bbaf3s")


@pytest.fixture(scope="module")
def archives(grid_root) -> dict[str, bytes]:
    """The official per-speaker archives' shapes: s1.mpg_vcd.zip (videos under s1/) and s1.tar (align/UTT.align)."""
    video = io.BytesIO()
    with zipfile.ZipFile(video, "w", zipfile.ZIP_STORED) as z:
        for u in UTTERANCES:
            z.write(grid_root / "s1" / "video" / f"{u}.mkv", f"s1/{u}.mkv")
    align = io.BytesIO()
    with tarfile.open(fileobj=align, mode="w") as t:
        for u in UTTERANCES:
            t.add(grid_root / "s1" / "align" / f"{u}.align", f"align/{u}.align")
    return {"s1/video/s1.mpg_vcd.zip": video.getvalue(), "s1/align/s1.tar": align.getvalue()}


class _Server:
    """A loopback HTTP server with Range support, an optional dropped first transfer, and a request log."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests, self.drop_after = dict(files), [], {}
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                server.requests.append((path, self.headers.get("Range")))
                if path not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[path], 0
                rng = self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                cut = server.drop_after.pop(path, None)
                # A dropped connection: the declared length is never reached.
                self.wfile.write(data[start:cut] if cut is not None else data[start:])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/grid"
        self.files = {f"grid/{k}": v for k, v in files.items()}
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(archives):
    s = _Server(archives)
    yield s
    s.close()


def _sums(archives: dict[str, bytes]) -> str:
    return "".join(f"{hashlib.sha256(v).hexdigest()}  {k}\n" for k, v in archives.items())


def test_download_verifies_and_unpacks_into_the_grid_layout(server, archives, tmp_path, grid_root):
    server.files["grid/SHA256SUMS"] = _sums(archives).encode()
    out = tmp_path / "grid"
    dl.download(dl.grid_archives(["s1"]), out, server.url, progress=False, console=QUIET)
    clips = grid.find_clips(out, ["s1"], split_scheme="none")
    assert [c.utterance for c in clips] == list(UTTERANCES)
    assert clips[0].words[0].word == "bin" and clips[0].text == "bin blue at f two now"
    assert (out / "s1" / "bbaf2n.mkv").read_bytes() == (grid_root / "s1" / "video" / "bbaf2n.mkv").read_bytes()
    # A second run finds the .done markers and fetches nothing.
    before = len(server.requests)
    dl.download(dl.grid_archives(["s1"]), out, server.url, progress=False, console=QUIET)
    assert [p for p, _ in server.requests[before:]] == ["grid/SHA256SUMS"]


def test_interrupted_download_resumes_with_a_range_request(server, archives, tmp_path):
    server.files["grid/SHA256SUMS"] = _sums(archives).encode()
    name = "s1/video/s1.mpg_vcd.zip"
    cut = len(archives[name]) // 3
    server.drop_after[f"grid/{name}"] = cut
    out = tmp_path / "grid"
    with pytest.raises(dl.DownloadError, match="run again to resume"):
        dl.download(dl.grid_archives(["s1"], alignments=False), out, server.url, retries=0, progress=False,
                    console=QUIET)
    part = out / ".downloads" / "s1.mpg_vcd.zip.part"
    assert part.stat().st_size == cut and not (out / "s1").exists()

    dl.download(dl.grid_archives(["s1"], alignments=False), out, server.url, retries=0, progress=False, console=QUIET)
    gets = [(p, r) for p, r in server.requests if p == f"grid/{name}"]
    assert gets == [(f"grid/{name}", None), (f"grid/{name}", f"bytes={cut}-")]  # only the missing bytes again
    assert dl.sha256(out / ".downloads" / "s1.mpg_vcd.zip") == hashlib.sha256(archives[name]).hexdigest()
    assert len(grid.find_clips(out, ["s1"], split_scheme="none")) == 2


def test_dropped_connection_is_resumed_within_one_run(server, archives, tmp_path):
    name = "s1/align/s1.tar"
    server.drop_after[f"grid/{name}"] = 1000
    out = tmp_path / "grid"
    sums = dl.read_checksums(_sums(archives))
    dl.download(dl.grid_archives(["s1"]), out, server.url, sums, retries=2, retry_wait=0.0, progress=False,
                console=QUIET)
    assert (f"grid/{name}", "bytes=1000-") in server.requests
    assert sorted(p.name for p in (out / "s1" / "align").iterdir()) == [f"{u}.align" for u in UTTERANCES]


def test_checksum_mismatch_fails_clearly_and_unpacks_nothing(server, archives, tmp_path):
    sums = dl.read_checksums(_sums(archives))
    sums["s1/video/s1.mpg_vcd.zip"] = "0" * 64
    out = tmp_path / "grid"
    with pytest.raises(dl.DownloadError, match=r"s1\.mpg_vcd\.zip: SHA-256 mismatch"):
        dl.download(dl.grid_archives(["s1"]), out, server.url, sums, progress=False, console=QUIET)
    assert not (out / "s1").exists() and not list((out / ".downloads").glob("s1.mpg_vcd.zip*"))


def test_without_checksums_the_declared_size_is_checked(server, archives, tmp_path):
    server.honour_range = False  # and a server that ignores Range: the part restarts from zero
    name = "s1/video/s1.mpg_vcd.zip"
    server.drop_after[f"grid/{name}"] = 5000
    out = tmp_path / "grid"
    with pytest.raises(dl.DownloadError, match="resume"):
        dl.download(dl.grid_archives(["s1"], False), out, server.url, retries=0, progress=False, console=QUIET)
    dl.download(dl.grid_archives(["s1"], False), out, server.url, retries=0, progress=False, console=QUIET)
    assert (out / ".downloads" / "s1.mpg_vcd.zip").read_bytes() == archives[name]


def test_cli_download_grid(server, archives, tmp_path):
    sums = tmp_path / "sums.txt"
    sums.write_text(_sums(archives))
    out = tmp_path / "grid"
    result = CliRunner().invoke(app, ["download", "grid", "--speakers", "s1", "--out", str(out), "--base-url",
                                      server.url, "--checksums", str(sums), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(grid.find_clips(out, ["s1"], split_scheme="none")) == 2
    bad = CliRunner().invoke(app, ["download", "grid", "--speakers", "s99", "--out", str(out),
                                   "--base-url", server.url])
    assert bad.exit_code == 2 and "s1 ... s34" in bad.output
