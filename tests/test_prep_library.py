"""avprep as a library: one function per corpus, one options object, a CLI that is only a shell over them (the same
shards through either), every shared option declared once."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from avprep import recipes
from avprep.cli import app
from avprep.options import PrepOptions, cli_fields
from avprep.presets import get_preset
from docexamples import QUIET, run_example

REPO = Path(__file__).resolve().parents[1]
CORPUS_COMMANDS = ("grid", "lrw", "lrw1000", "tcd-timit", "lrs3", "lrs2", "folder")


def test_the_library_imports_without_the_cli():
    names = ", ".join(["PrepOptions", "RunReport", "ShardSink"] + [f"prepare_{c.replace('-', '_')}"
                                                                    for c in CORPUS_COMMANDS])
    code = (f"import sys; from avprep import {names}; "
            "loaded = {'typer', 'avprep.cli', 'mediapipe', 'cv2', 'torch'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_options_check_their_bounds_and_resolve_the_preset():
    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        PrepOptions(jobs=0)
    with pytest.raises(ValueError, match=r"crf must be 0 \.\. 51, got 52"):
        PrepOptions(crf=52)
    with pytest.raises(ValueError, match=r"partition 2 does not exist among 2 \(0 \.\. 1\)"):
        PrepOptions(num_partitions=2, partition=2)
    with pytest.raises(FrozenInstanceError):
        PrepOptions().jobs = 2  # type: ignore[misc]
    options = PrepOptions(crf=23, crop_codec="jpg", clip_timeout=0, max_worker_mem=0.5, shard_mb=2)
    preset = options.resolved_preset("bridging-grid")
    assert (preset.name, preset.video_crf, preset.crop_codec) == ("bridging-grid", 23, "jpg")
    assert preset.hash != get_preset("bridging-grid").hash  # a storage override is a new preset
    assert (options.timeout, options.max_worker_rss, options.shard_bytes) == (None, 2**29, 2 * 2**20)
    # The corpus's default unless one is named; a name the presets lack says which there are.
    assert options.with_preset("bridging-grid").with_preset("two-tower").preset.name == "bridging-grid"
    assert replace(options, preset="two-tower").resolved_preset("bridging-grid").name == "two-tower"
    with pytest.raises(KeyError, match="unknown preset 'nope'; known presets: bridging-grid"):
        replace(options, preset="nope").resolved_preset()
    with pytest.raises(ValueError, match="no preset"):
        PrepOptions().resolved_preset()


def test_no_function_in_avprep_takes_more_than_eight_parameters():
    too_many = []
    for path in sorted((REPO / "avprep").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                count = len(names) + (a.vararg is not None) + (a.kwarg is not None)
                if count > 8:
                    too_many.append((path.relative_to(REPO).as_posix(), node.name, count))
    # download() has nine: its last two (timeout, retry wait) exist for the tests of a dropped connection; prepare()
    # has nine since --word-context: its last (``process``, the per-clip function) exists for the tests of faulty clips.
    assert too_many == [("avprep/download.py", "download", 9), ("avprep/prepare.py", "prepare", 9)]


# --- a CLI that is only a shell ------------------------------------------------------------------------------------

def _help_blocks(command: str) -> dict[str, str]:
    """Option name -> its help text (wrapping undone), from ``avprep COMMAND --help`` at 80 columns."""
    out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"}).output
    blocks: dict[str, str] = {}
    name = None
    for line in out.split("Options:\n", 1)[1].splitlines():
        first = re.match(r"  (-\w, )?(--[\w-]+)", line)
        if first:
            name = first.group(2)
            blocks[name] = line[first.end():]
        elif name:
            blocks[name] += " " + line
    return {k: " ".join(v.split()) for k, v in blocks.items()}


def test_grid_and_lrs3_help_say_the_same_words_for_the_same_option():
    grid, lrs3 = _help_blocks("grid"), _help_blocks("lrs3")
    shared = sorted(set(grid) & set(lrs3) - {"--root", "--help"})
    assert len(shared) == 1 + len(cli_fields())  # --out and every PrepOptions field
    for name in shared:
        a, b = grid[name], lrs3[name]
        if name == "--preset":  # one help text; the default is each corpus's own preset
            assert a.replace("bridging-grid", "P") == b.replace("bridging-lrw-registered", "P"), (a, b)
        else:
            assert a == b, (name, a, b)
    # Each command's own options are its own.
    assert {"--speakers", "--unit", "--split-scheme"} <= set(grid) - set(lrs3)
    assert {"--subsets", "--max-seconds"} <= set(lrs3) - set(grid)


def test_every_corpus_command_declares_each_shared_option_from_the_options_object():
    group = get_command(app)
    for name in CORPUS_COMMANDS:
        params = {p.name: p for p in group.commands[name].params}
        for f in cli_fields():
            if name == "lrw1000" and f.name in ("mean_face", "landmarks"):  # pre-cropped lips: no detector
                assert f.name not in params
                continue
            p = params[f.name]
            default = recipes.DEFAULT_PRESETS[name] if f.name == "preset" else f.default
            assert (p.help, p.default) == (f.metadata["help"], default), (name, f.name)


def test_a_refused_option_is_one_line_before_the_corpus_is_read(tmp_path):
    for args, message in ((["--partition", "2", "--num-partitions", "2"], "partition 2 does not exist among 2"),
                          (["--preset", "nope"], "unknown preset 'nope'; known presets:"),
                          (["--crop-codec", "gif"], "crop_codec: Input should be 'mp4', 'jpg' or 'npy'")):
        result = CliRunner().invoke(app, ["grid", "--root", str(tmp_path / "no-grid"), "--out", str(tmp_path / "o"),
                                          *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_duplicates_finds_no_repeated_block_in_the_cli():
    if shutil.which("duplicates") is None:
        pytest.skip("the duplicates tool is not installed here")
    found = subprocess.run(["duplicates", "--repo", str(REPO / "avprep")], capture_output=True, text=True).stdout
    assert found.strip() and not [line for line in found.splitlines() if "cli.py" in line], found


# --- the same shards through the CLI and through prepare_grid() ---------------------------------------------------

def _digest(out: Path) -> dict[str, str]:
    """sha256 of every file a run leaves (index.json too: it holds no time stamp; the workers' log left out)."""
    files = {}
    for path in sorted(out.iterdir()):
        if path.name == "avprep-workers.log" or path.name.startswith("."):
            continue
        files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


@pytest.mark.slow
def test_the_demo_step_through_the_cli_and_through_prepare_grid_writes_identical_shards(grid_root, tmp_path):
    # `make demo`'s avprep step on 3 clips, 2 jobs through the CLI and 1 through the library: results are written
    # in hand-out order whatever worker finishes first, and the H.264 crops are byte-stable (docs/format.md).
    cli, lib = tmp_path / "cli", tmp_path / "lib"
    cmd = [sys.executable, "-m", "avprep", "grid", "--root", str(grid_root), "--speakers", "s1", "--unit", "word",
           "--out", str(cli), "--jobs", "2", "--limit", "3", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    options = PrepOptions(jobs=1, limit=3, progress=False, console=QUIET)
    report = recipes.prepare_grid(grid_root, lib, speakers=["s1"], unit="word", options=options)
    assert report.clips_written == 3 and report.samples_written == 18 and not report.rejected
    assert report.index_path == lib / "index.json" and report.index == json.loads(report.index_path.read_text())
    a, b = _digest(cli), _digest(lib)
    assert sorted(a) == sorted(b) and any(name.endswith(".tar") for name in a), (sorted(a), sorted(b))
    assert a == b
    run = json.loads((lib / "run.json").read_text())
    assert run["selection"] == {"split_scheme": "speaker-dependent", "speakers": ["s1"]} and run["limit"] == 3


@pytest.mark.slow
def test_the_grid_example_of_the_docs_runs(grid_root, tmp_path, monkeypatch):
    ran = run_example("prepare_grid", "/data/grid", grid_root, tmp_path, monkeypatch, limit=2)
    report = ran["report"]
    assert report.clips_written == 2 and report.samples_written == 12 and not report.rejected
    assert report.index_path == Path("shards", "grid-s1-words", "index.json")  # as the example names its folder
    assert (tmp_path / report.index_path).is_file() and ran["options"].jobs == 2
