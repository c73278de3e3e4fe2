"""LRS2 and LRS3 end to end, on trees in the official layouts built here from the real GRID clips: the sidecars'
text and word tables, long pretrain clips cut into segments at word boundaries, the split lists, and the `folder`
corpus reading the same sidecars. Run through prepare() and checked sample by sample."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from avbridge.sample import decode_field
from avprep.cli import app
from avprep.corpora import folder, grid, lrs2, lrs3, lrs_sidecar
from avprep.inspect import check_shards
from avprep.options import PrepOptions
from avprep.pipeline import Options, process_clip
from avprep.prepare import prepare
from avprep.presets import get_preset
from avprep.shards import iter_raw_samples, shard_paths
from avprep.stages.decode import decode_clip
from avprep.types import Word
from clipmaker import read_clip, write_clip
from docexamples import run_example

QUIET = Console(file=open(os.devnull, "w"))
PRESET = "bridging-lrw"  # a fixed box fits GRID's 360x288 frames: the whole pipeline without the detector
MAX_SECONDS = 4.0
FPS, SPF = 25, 640


def _samples(out: Path) -> dict[str, dict]:
    return {raw["__key__"]: raw for p in shard_paths(out) for raw in iter_raw_samples(p)}


def _meta(raw: dict) -> dict:
    return decode_field("json", raw["json"])


@pytest.fixture(scope="module")
def s1(grid_root) -> dict[str, grid.ClipSpec]:
    return {c.utterance: c for c in grid.find_clips(grid_root, ["s1"], split_scheme="none")}


def make_clip(path: Path, s1: dict, utterances: list[str], header: str = "Conf:  4\n", table: bool = True,
              table_utterances: list[str] | None = None) -> list[Word]:
    """GRID clips one after the other as one H.264 + AAC mp4 (as LRS ships them), with an LRS sidecar: ``Text:``,
    ``header``, and (``table``) the words of ``table_utterances`` (default: the clip's own) at their times in it."""
    frames, audio, words = [], [], []
    offset = 0.0
    for utt in table_utterances or utterances:
        n = 75
        if utt in utterances:
            f, a, rate = read_clip(s1[utt].video)
            assert rate == 16000
            frames.append(f)
            audio.append(np.pad(a, (0, max(0, len(f) * SPF - len(a))))[: len(f) * SPF])  # whole frames, in sync
            n = len(f)
        words += [Word(w.word.upper(), round(w.start + offset, 2), round(w.end + offset, 2)) for w in s1[utt].words]
        offset += n / FPS
    write_clip(path, np.concatenate(frames), FPS, np.concatenate(audio), 16000, audio_codec="aac")
    text = " ".join(w.word for w in words)
    lines = [f"Text:  {text}", *header.splitlines()]
    if table:
        lines += ["", "WORD START END ASDSCORE"] + [f"{w.word} {w.start:.2f} {w.end:.2f} 5.{i % 10}"
                                                    for i, w in enumerate(words)]
    path.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    return words


# ---------------------------------------------------------------------------------------------------- sidecars


def test_sidecar_variants():
    lrs3_style = ("Text:  SO  WE WENT\r\nConf:  4\r\nRef:   ab12\r\n\r\nWORD START END ASDSCORE\r\n"
                  "SO 0.22 0.35 5.1\r\nWE 0.35 0.50 6.0\r\nWENT 0.61 1.00 3.2\r\n")
    parsed = lrs_sidecar.parse(lrs3_style)
    assert parsed.text == "SO WE WENT" and parsed.header == {"Conf": "4", "Ref": "ab12"}
    assert parsed.words == (Word("SO", 0.22, 0.35), Word("WE", 0.35, 0.5), Word("WENT", 0.61, 1.0))
    # No blank line before the table, a table without scores, and another table after it.
    other = lrs_sidecar.parse("Text: A B\nWORD START END\nA 0.1 0.2\nB 0.3 0.4\nFRAME X Y W H\n1 0.5 0.5 0.2 0.2\n")
    assert other.words == (Word("A", 0.1, 0.2), Word("B", 0.3, 0.4)) and other.header == {}
    # LRS2 main: text and confidence only; LRW: text, confidence, duration.
    assert lrs_sidecar.parse("Text:  WHEN YOU'RE COOKING\nConf:  3\n").words == ()
    assert lrs_sidecar.parse("Text: ABOUT\nConf: 5\nDuration: 0.53 seconds\n").header["Duration"] == "0.53 seconds"
    assert lrs_sidecar.parse("just a transcript\n") is None  # not a sidecar of this kind
    with pytest.raises(ValueError, match=r"x\.txt:4: expected 'WORD START END"):
        lrs_sidecar.parse("Text: A\n\nWORD START END ASDSCORE\nA 0.5 0.2 1\n", "x.txt")
    with pytest.raises(ValueError, match=r"x\.txt:5: B starts at 0\.1 s, before the word above it"):
        lrs_sidecar.parse("Text: A B\n\nWORD START END ASDSCORE\nA 0.5 0.6 1\nB 0.1 0.2 1\n", "x.txt")


def test_segments_cut_at_word_boundaries_within_the_maximum():
    rng = np.random.default_rng(0)
    t, words = 0.3, []
    for i in range(120):  # 120 words with pauses of 0-1.5 s: about a minute of speech
        d = float(rng.uniform(0.1, 0.6))
        words.append(Word(f"W{i}", round(t, 2), round(t + d, 2)))
        t += d + float(rng.choice([0.0, 0.05, 0.3, 1.5]))
    for max_seconds in (3.0, 7.5, 15.0):
        pieces = lrs_sidecar.segments(tuple(words), max_seconds)
        assert [w for _, run in pieces for w in run] == words  # every word once, in order
        for k, ((start, end), run) in enumerate(pieces):
            assert start <= run[0].start and run[-1].end <= end  # the span holds its words
            frames = math.ceil(end * FPS - 1e-6) - math.floor(start * FPS + 1e-6)
            assert frames <= max_seconds * FPS, (max_seconds, k, start, end)
            if k:  # cut in the gap between runs: never inside another run's words
                (_, prev_end), prev = pieces[k - 1]
                assert prev[-1].end <= prev_end <= start <= run[0].start
        assert len(pieces) > 1
    # A single word longer than the maximum is a segment of its own, the only kind longer than the maximum.
    long_word = lrs_sidecar.segments((Word("A", 0.0, 0.5), Word("LONG", 1.0, 5.0), Word("B", 5.2, 5.4)), 3.0)
    assert [[w.word for w in run] for _, run in long_word] == [["A"], ["LONG"], ["B"]]
    with pytest.raises(ValueError, match="more than one frame"):
        lrs_sidecar.segments(tuple(words), 0.04)


def test_span_cut_keeps_whole_frames_and_refuses_words_past_the_audio():
    from avprep.stages import span
    from avprep.stages.decode import DecodedClip
    from avprep.stages.errors import ClipError

    n = 50  # 2 s at 25 fps; frame k and its 640 samples all hold the value k
    clip = DecodedClip(frames=np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8),
                       audio=np.repeat(np.arange(n, dtype=np.float32), SPF), fps=FPS, sample_rate=16000)
    cut = span.cut(clip, (0.50, 1.21))  # frames 12 (0.48-0.52 s) to 30 (1.20-1.24 s)
    assert cut.frames[:, 0, 0, 0].tolist() == list(range(12, 31)) and cut.info["segment_frames"] == [12, 31]
    np.testing.assert_array_equal(cut.audio, np.repeat(np.arange(12, 31, dtype=np.float32), SPF))
    spec = span.localise(grid.ClipSpec(key="k", corpus="c", speaker="s", utterance="u", split="x", video=Path("v"),
                                       words=(Word("A", 0.55, 1.2),), span=(0.5, 1.21)), FPS)
    assert spec.words == (Word("A", 0.07, 0.72),)  # from frame 12 (0.48 s)
    # Cut at the clip's end (frames 37-49, 0.52 s); a word may end within the table's 5 ms rounding past it.
    assert span.cut(clip, (1.48, 3.0), (Word("A", 0.0, 0.52 + 0.004),)).num_frames == 13
    with pytest.raises(ClipError, match="words run to 2.01 s, the clip decodes to 2.00 s"):
        span.cut(clip, (1.48, 3.0), (Word("A", 0.0, 0.52 + 0.01),))
    with pytest.raises(ClipError, match="truncated video"):
        span.cut(clip, (2.5, 3.0))
    with pytest.raises(ClipError, match="too few frames"):
        span.cut(clip, (1.0, 1.01))


# -------------------------------------------------------------------------------------------------------- LRS3

PRETRAIN = ["bbaf2n", "lrae3s", "bbaf3s", "pbac1s"]  # 12 s of speech with pauses: cut into segments of <= 4 s


@pytest.fixture(scope="module")
def lrs3_tree(tmp_path_factory, s1) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("lrs3") / "lrs3"
    truth = {
        "pretrain": make_clip(root / "pretrain" / "ID0aa" / "00001.mp4", s1, PRETRAIN),
        # The same ID/NNNNN as the pretrain clip: keys must keep the subsets apart.
        "trainval": make_clip(root / "trainval" / "ID0aa" / "00001.mp4", s1, ["lrae3s"]),
        "test": make_clip(root / "test" / "ID1bb" / "00002.mp4", s1, ["pbac1s"], header="Conf:  6\nRef:   TEDxYZ\n"),
    }
    return root, truth


def test_lrs3_layout_text_word_timings_and_pretrain_segments(lrs3_tree, tmp_path):
    root, truth = lrs3_tree
    clips = lrs3.find_clips(root, max_seconds=MAX_SECONDS)
    pretrain = [c for c in clips if c.split == "pretrain"]
    assert {c.key for c in clips if c.split != "pretrain"} == {"trainval_ID0aa_00001", "test_ID1bb_00002"}
    assert len(pretrain) >= 3
    assert [c.key for c in pretrain] == [f"pretrain_ID0aa_00001_s{k}" for k in range(len(pretrain))]
    assert [w for c in pretrain for w in c.words] == truth["pretrain"]  # every word in exactly one segment
    report = prepare(clips, "lrs3", tmp_path, PrepOptions(preset=PRESET, console=QUIET, progress=False))
    assert report.clips_written == len(clips) and not report.rejected
    index = json.loads((tmp_path / "index.json").read_text())
    assert {s: v["samples"] for s, v in index["splits"].items()} == {"pretrain": len(pretrain), "trainval": 1,
                                                                       "test": 1}
    samples = {k: (_meta(raw), raw) for k, raw in _samples(tmp_path).items()}

    # Whole clips: the Text: line, the table's words at their times, the header lines kept.
    meta, _ = samples["test_ID1bb_00002"]
    assert meta["text"] == " ".join(w.word for w in truth["test"]) == "PLACE BLUE AT C ONE SOON"
    assert (meta["speaker"], meta["utterance"], meta["split"]) == ("ID1bb", "test/ID1bb/00002", "test")
    assert (meta["sidecar"], meta["subset"], meta["num_frames"]) == ({"conf": "6", "ref": "TEDxYZ"}, "test", 75)
    assert [(w["word"], w["start"], w["end"]) for w in meta["words"]] == [(w.word, w.start, w.end)
                                                                          for w in truth["test"]]
    assert [w["start_frame"] for w in meta["words"]] == [math.floor(w.start * FPS + 1e-6) for w in truth["test"]]
    assert "segment" not in meta and "segment_frames" not in meta

    # Pretrain segments: at most 4 s, the words inside each at their times relative to the segment, the audio and
    # frames those of the whole clip at that place.
    source = decode_clip(root / "pretrain" / "ID0aa" / "00001.mp4", None, FPS, 16000)
    assert source.num_frames == 299
    covered = []
    for k, clip in enumerate(pretrain):
        meta, raw = samples[clip.key]
        first, last = meta["segment_frames"]
        assert meta["num_frames"] == last - first <= MAX_SECONDS * FPS
        assert (meta["segment"], meta["segments"], meta["split"]) == (k, len(pretrain), "pretrain")
        assert meta["text"] == " ".join(w.word for w in clip.words)
        assert meta["clip_text"] == " ".join(w.word for w in truth["pretrain"])
        assert first == math.floor(clip.span[0] * FPS + 1e-6) and first / FPS <= clip.words[0].start
        assert clip.words[-1].end <= last / FPS
        assert [w["word"] for w in meta["words"]] == [w.word for w in clip.words]
        for w, source_word in zip(meta["words"], clip.words):
            assert w["start"] == pytest.approx(source_word.start - first / FPS, abs=1e-6)
            assert w["end"] == pytest.approx(source_word.end - first / FPS, abs=1e-6)
            assert w["start_frame"] == math.floor(source_word.start * FPS + 1e-6) - first
        wav = decode_field("wav.flac", raw["wav.flac"])
        np.testing.assert_allclose(wav, source.audio[first * SPF : last * SPF], atol=1 / 32768)
        mel = decode_field("mel.npy", raw["mel.npy"])
        assert mel.shape == (80, 4 * (last - first))
        mouth = decode_field("mouth.mp4", raw["mouth.mp4"]).astype(float)
        import cv2

        box = np.stack([cv2.cvtColor(cv2.resize(f[59:195, 95:231], (112, 112)), cv2.COLOR_RGB2GRAY)
                        for f in source.frames[first:last]]).astype(float)
        shifted = np.stack([cv2.cvtColor(cv2.resize(f[59:195, 95:231], (112, 112)), cv2.COLOR_RGB2GRAY)
                            for f in source.frames[first + 10 : last + 10]]).astype(float)
        n = min(len(shifted), len(box))
        exact = np.abs(mouth - box).mean()
        assert exact < 1.5 and np.abs(mouth[:n] - shifted[:n]).mean() > 2 * exact, k
        covered.append((first, last))
    # Segments follow each other through the clip; neighbours share at most the frame their boundary falls in.
    assert all(b[0] >= a[1] - 1 for a, b in zip(covered, covered[1:]))
    assert check_shards(tmp_path).errors == []


def test_lrs3_segment_past_the_audio_is_rejected(s1, tmp_path):
    # A pretrain clip whose table runs a whole GRID sentence past its 6 s of video.
    root = tmp_path / "lrs3"
    words = make_clip(root / "pretrain" / "ID2cc" / "00001.mp4", s1, ["bbaf2n", "lrae3s"],
                      table_utterances=["bbaf2n", "lrae3s", "bbaf3s"])
    clips = lrs3.find_clips(root, ("pretrain",), max_seconds=MAX_SECONDS)
    assert [w for c in clips for w in c.words] == words and words[-1].end > 7
    past = {c.key for c in clips if c.words[-1].end > (75 + 74) / FPS}  # bbaf2n + lrae3s: 5.96 s
    assert past and len(past) < len(clips)
    report = prepare(clips, "lrs3", tmp_path / "out", PrepOptions(preset=PRESET, console=QUIET, progress=False))
    assert report.rejected == {"truncated video": len(past)}
    failures = [json.loads(line) for line in (tmp_path / "out").glob("failures*.jsonl").__next__().open()]
    assert {f["key"] for f in failures} == past and "the clip decodes to 5.96 s" in failures[0]["detail"]
    for key, raw in _samples(tmp_path / "out").items():  # what is written holds its whole transcript
        meta = _meta(raw)
        assert key not in past and max(w["end"] for w in meta["words"]) <= meta["num_frames"] / FPS + 1e-6


def test_lrs3_cli_and_wrong_root(lrs3_tree, tmp_path):
    root, _ = lrs3_tree
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["lrs3", "--root", str(root), "--out", str(out), "--subsets", "test,trainval",
                                      "--preset", PRESET, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sorted(_samples(out)) == ["test_ID1bb_00002", "trainval_ID0aa_00001"]
    bad = CliRunner().invoke(app, ["lrs3", "--root", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "{pretrain,trainval,test}/ID/NNNNN.mp4" in bad.output
    unknown = CliRunner().invoke(app, ["lrs3", "--root", str(root), "--out", str(tmp_path / "y"), "--subsets", "val"])
    assert unknown.exit_code == 2 and "unknown LRS3 subset" in unknown.output
    # A clip without its transcript, or with one that cannot be read, is one counted rejection naming the file;
    # the run goes on (issue 22: real LRS3 test clips without their .txt stopped `avprep lrs3`, rc 2, at listing).
    copy = tmp_path / "copy"
    for talk in ("ID1bb", "ID8", "ID9"):
        (copy / "test" / talk).mkdir(parents=True)
    (copy / "test" / "ID1bb" / "00002.mp4").symlink_to(root / "test" / "ID1bb" / "00002.mp4")
    (copy / "test" / "ID1bb" / "00002.txt").symlink_to(root / "test" / "ID1bb" / "00002.txt")
    (copy / "test" / "ID9" / "00001.mp4").symlink_to(root / "test" / "ID1bb" / "00002.mp4")
    (copy / "test" / "ID8" / "00001.mp4").symlink_to(root / "test" / "ID1bb" / "00002.mp4")
    (copy / "test" / "ID8" / "00001.txt").write_text("Text:  A B\n\nWORD START END ASDSCORE\nA 0.5 0.2 1.0\n")
    listed = {c.key: c.problem for c in lrs3.find_clips(copy)}
    assert listed["test_ID1bb_00002"] is None
    assert listed["test_ID9_00001"][0] == "no transcript" and "00001.mp4 has no 00001.txt" in \
        listed["test_ID9_00001"][1]
    assert listed["test_ID8_00001"][0] == "unreadable transcript" and "00001.txt:4" in listed["test_ID8_00001"][1]
    done = CliRunner().invoke(app, ["lrs3", "--root", str(copy), "--out", str(tmp_path / "z"), "--preset", PRESET,
                                    "--no-progress"], env={"COLUMNS": "120"})
    assert done.exit_code == 0, done.output
    assert "rejected: no transcript" in done.output and "rejected: unreadable transcript" in done.output
    assert sorted(_samples(tmp_path / "z")) == ["test_ID1bb_00002"]
    # Two talks whose folder names differ only in a dot map to one key: refused, not merged.
    twins = tmp_path / "twins"
    for talk in ("ID_9", "ID.9"):
        (twins / "test" / talk).mkdir(parents=True)
        for suffix in (".mp4", ".txt"):
            (twins / "test" / talk / f"00001{suffix}").symlink_to(root / "test" / "ID1bb" / f"00002{suffix}")
    with pytest.raises(ValueError, match="both map to the key 'test_ID_9_00001'"):
        lrs3.find_clips(twins)


@pytest.mark.slow
def test_the_lrs3_example_of_the_docs_runs_as_one_task_of_a_slurm_array(lrs3_tree, tmp_path, monkeypatch):
    root, _ = lrs3_tree
    # Of the example's two clips (trainval and test), partition 0 of 2 owns the test clip.
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    report = run_example("prepare_lrs3", "/data/lrs3", root, tmp_path, monkeypatch, jobs=2)["report"]
    out = tmp_path / "shards" / "lrs3"
    assert report.clips_total == report.clips_written == 1 and not report.rejected
    assert list(_samples(out)) == ["test_ID1bb_00002"] and (out / "ledger-p000of002.jsonl").is_file()
    # The mean face is estimated from both clips, as every partition estimates it.
    assert "estimated from 2 of 2 clips" in json.loads((out / "run.json").read_text())["mean_face_source"]


# -------------------------------------------------------------------------------------------------------- LRS2


@pytest.fixture(scope="module")
def lrs2_tree(tmp_path_factory, s1) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("lrs2") / "LRS2"
    main, pre = base / "mvlrs_v1" / "main", base / "mvlrs_v1" / "pretrain"
    truth = {
        "train": make_clip(main / "5535415699068794046" / "00001.mp4", s1, ["bbaf2n"], table=False),
        "val": make_clip(main / "5535415699068794046" / "00002.mp4", s1, ["lrae3s"], table=False),
        "test": make_clip(main / "6300370419826092098" / "00001.mp4", s1, ["bbaf3s"], table=False),
        # Same ID/NNNNN as a main clip, as the release has it.
        "pretrain": make_clip(pre / "5535415699068794046" / "00001.mp4", s1, ["bbaf2n", "lrae3s", "pbac1s"]),
    }
    (base / "train.txt").write_text("5535415699068794046/00001\n")
    (base / "val.txt").write_text("5535415699068794046/00002\n")
    (base / "test.txt").write_text("6300370419826092098/00001 NF\n")  # the test list's flags
    (base / "pretrain.txt").write_text("5535415699068794046/00001\n\n")
    return base, truth


def test_lrs2_split_lists_main_and_pretrain(lrs2_tree, tmp_path):
    base, truth = lrs2_tree
    clips = lrs2.find_clips(base / "mvlrs_v1", max_seconds=MAX_SECONDS)  # mvlrs_v1 itself is accepted too
    assert {c.key: c.split for c in clips if c.split != "pretrain"} == {
        "main_5535415699068794046_00001": "train", "main_5535415699068794046_00002": "val",
        "main_6300370419826092098_00001": "test"}
    pretrain = [c for c in clips if c.split == "pretrain"]
    assert len(pretrain) >= 2 and all(c.key.startswith("pretrain_5535415699068794046_00001_s") for c in pretrain)
    report = prepare(clips, "lrs2", tmp_path, PrepOptions(preset=PRESET, console=QUIET, progress=False))
    assert report.clips_written == len(clips) and not report.rejected
    index = json.loads((tmp_path / "index.json").read_text())
    assert {s: v["samples"] for s, v in index["splits"].items()} == {"train": 1, "val": 1, "test": 1,
                                                                     "pretrain": len(pretrain)}
    samples = {k: _meta(raw) for k, raw in _samples(tmp_path).items()}
    test = samples["main_6300370419826092098_00001"]
    assert test["text"] == "BIN BLUE AT F THREE SOON" and test["words"] == [] and test["list_flags"] == ["NF"]
    assert (test["speaker"], test["utterance"], test["sidecar"]) == ("6300370419826092098",
                                                                     "main/6300370419826092098/00001", {"conf": "4"})
    assert samples["main_5535415699068794046_00001"]["text"] == " ".join(w.word for w in truth["train"])
    words = []
    for clip in pretrain:
        meta = samples[clip.key]
        assert meta["num_frames"] <= MAX_SECONDS * FPS and meta["text"] == " ".join(w.word for w in clip.words)
        first = meta["segment_frames"][0]
        words += [Word(w["word"], round(w["start"] + first / FPS, 2), round(w["end"] + first / FPS, 2))
                  for w in meta["words"]]
    assert words == truth["pretrain"]  # the table's words, each in one segment at its own time
    assert lrs2.find_clips(base, ("test",))[0].key == "main_6300370419826092098_00001"


def test_lrs2_bad_lists_and_cli(lrs2_tree, tmp_path):
    import shutil

    base, _ = lrs2_tree
    copy = tmp_path / "LRS2"
    shutil.copytree(base, copy, symlinks=True)
    (copy / "val.txt").write_text("5535415699068794046/00001\n")  # also in train.txt
    with pytest.raises(ValueError, match="listed in both train.txt and val.txt"):
        lrs2.find_clips(copy)
    (copy / "val.txt").write_text("5535415699068794046/00009\n")  # listed, not there: rejected when reached
    [missing] = [c for c in lrs2.find_clips(copy) if c.split == "val"]
    assert missing.problem[0] == "missing video" and "val.txt lists 5535415699068794046/00009, but" in \
        missing.problem[1]
    (copy / "val.txt").write_text("00009\n")
    with pytest.raises(ValueError, match=r"val.txt:1: expected 'ID/NNNNN \[flags\]'"):
        lrs2.find_clips(copy)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["lrs2", "--root", str(base), "--out", str(out), "--splits", "test",
                                      "--preset", PRESET, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert list(_samples(out)) == ["main_6300370419826092098_00001"]
    bad = CliRunner().invoke(app, ["lrs2", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "mvlrs_v1/{main,pretrain}/ID/NNNNN.mp4" in bad.output


@pytest.mark.slow
def test_the_lrs2_example_of_the_docs_runs(lrs2_tree, tmp_path, monkeypatch):
    base, _ = lrs2_tree
    report = run_example("prepare_lrs2", "/data/lrs2", base, tmp_path, monkeypatch, jobs=2)["report"]
    assert report.clips_written == 3 and not report.rejected  # the train, val and test lists: one clip each
    samples = {k: _meta(raw) for k, raw in _samples(tmp_path / "shards" / "lrs2").items()}
    assert {m["split"] for m in samples.values()} == {"train", "val", "test"}
    assert {m["registration"] for m in samples.values()} == {"mean-face"}  # the command's default preset


# ------------------------------------------------------------------------------------------------------ folder


def test_folder_reads_an_lrs_sidecar_as_text_and_word_timings(lrs3_tree):
    root, truth = lrs3_tree
    clips = {c.key: c for c in folder.find_clips(root / "test")}
    clip = clips["ID1bb_00002"]
    # The Text: line, not the whole sidecar (Conf, Ref and the table are not the transcript).
    assert clip.text == "PLACE BLUE AT C ONE SOON" and clip.words == tuple(truth["test"])
    result = process_clip(clip, Options(get_preset(PRESET)))
    assert result.rejection is None
    meta = decode_field("json", result.samples[0].fields["json"])
    assert meta["text"] == "PLACE BLUE AT C ONE SOON" and [w["word"] for w in meta["words"]] == clip.text.split()


@pytest.mark.slow
def test_lrs3_default_preset_registers_each_segment(lrs3_tree, tmp_path):
    # The command's default preset: the real detector and mean-face registration on the segments' frames only.
    root, _ = lrs3_tree
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["lrs3", "--root", str(root), "--out", str(out), "--subsets", "pretrain",
                                      "--max-seconds", str(MAX_SECONDS), "--no-progress"])
    assert result.exit_code == 0, result.output
    samples = {k: (_meta(raw), raw) for k, raw in _samples(out).items()}
    assert len(samples) == 3 and (out / "mean_face.npy").is_file()
    for meta, raw in samples.values():
        n = meta["num_frames"]
        assert meta["registration"] == "mean-face" and meta["missing_face_frames"] == []
        assert decode_field("mouth.mp4", raw["mouth.mp4"]).shape == (n, 96, 96)
        assert decode_field("landmarks.npy", raw["landmarks.npy"]).shape[0] == n
