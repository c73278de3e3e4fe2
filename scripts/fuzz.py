"""The long form of the fuzz tests, printing the tables of docs/reliability.md.

    PYTHONPATH=. python scripts/fuzz.py shards --per-class 60 --seed 0
    PYTHONPATH=. python scripts/fuzz.py videos --count 400 --seed 0
    PYTHONPATH=. python scripts/fuzz.py checkpoints --count 400 --seed 0

``shards``: real GRID samples made by the real pipeline, mutated per class (tests/fuzzing.py), through
``decode_sample``, the training data module (``data.on_bad_sample: skip``) and ``avprep inspect``.
``videos``: mutated copies of real GRID clips through ``avprep grid`` (a subprocess, as a user runs it).
GRID is read from ../shared/data/grid beside the checkout, or --grid.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import fuzzing  # noqa: E402


def shards(grid: Path, per_class: int, seed: int) -> None:
    from avbridge.sample import SampleError, decode_sample
    from avprep.inspect import check_shards
    from avtrain.config import validate_recipe
    from avtrain.data import build_loader

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = fuzzing.make_grid_shards(tmp / "made", grid)
        words, tower = (fuzzing.read_samples(folders[k]) for k in ("words", "tower"))
        pool = words + tower
        count = per_class * len(fuzzing.SHARD_MUTATIONS)
        rows, peaks, fields = [], Counter(), {}
        t0 = time.process_time()
        fuzzed = list(fuzzing.fuzz_samples(pool, count, seed))
        for cls, _member, raw in fuzzed:
            outcome, detail, peak = fuzzing.decode_outcome(raw)
            rows.append((cls, outcome, detail))
            peaks[cls] = max(peaks[cls], peak)
            if outcome == "error":
                fields.setdefault(cls, Counter())[detail.split(": ")[1]] += 1
        cpu = time.process_time() - t0
        print(f"## decode_sample: {count} inputs (seed {seed}), {cpu:.1f} s CPU\n")
        print("| mutation | tried | error (named key + field) | decoded | crash | hang | peak traced MiB "
              "| fields named |")
        print("|---|---|---|---|---|---|---|---|")
        for cls, c in fuzzing.shard_table(rows).items():
            named = ", ".join(f"{f} {n}" for f, n in fields.get(cls, Counter()).most_common(4))
            print(f"| {cls} | {sum(c.values())} | {c['error']} | {c['decoded']} | {c['crash']} | {c['hang']} | "
                  f"{peaks[cls] / 2**20:.1f} | {named} |")
        crashes = [(cls, d) for cls, o, d in rows if o in ("crash", "hang")]
        for cls, d in crashes[:10]:
            print(f"\n{cls}: {d}")

        # the data module: the words pool (a lip-reading recipe reads mouth.mp4, mel.npy, json)
        wf = [raw for cls, _, raw in fuzzing.fuzz_samples(words, count, seed + 1)]
        samples = words + wf
        data = tmp / "data"
        fuzzing.write_tar(data / "train-000000.tar", samples[::2])
        fuzzing.write_tar(data / "train-000001.tar", samples[1::2])
        recipe = validate_recipe({"output_dir": "unused", "data": {
            "shards": str(data), "batch_size": 8, "shuffle_buffer": 1, "on_bad_sample": "skip", "num_workers": 2},
            "model_conf": {"num_classes": 51}, "augment_conf": {"crop": 88}})
        kept, skipped = 0, Counter()
        t0 = time.time()
        for batch in build_loader(recipe, "train", train=True):
            kept += len(batch["keys"])
            skipped.update(f for _, f, _ in batch["skipped"])
        print(f"\n## data module (on_bad_sample: skip, 2 workers): {len(samples)} samples ({len(words)} originals, "
              f"{len(wf)} mutated, seed {seed + 1}), {time.time() - t0:.1f} s wall\n")
        print(f"kept {kept}, skipped {sum(skipped.values())} (by field: "
              f"{', '.join(f'{f} {n}' for f, n in skipped.most_common())}), lost "
              f"{len(samples) - kept - sum(skipped.values())}")

        # avprep inspect over all of them
        insp = tmp / "inspect"
        allf = pool + [raw for _, _, raw in fuzzed]
        fuzzing.write_tar(insp / "train-000000.tar", allf[: len(allf) // 2])
        fuzzing.write_tar(insp / "train-000001.tar", allf[len(allf) // 2:])
        report = check_shards(insp)
        flagged = {e.split(".")[0] for e in report.errors}
        bad = set()
        for raw in allf:
            try:
                decode_sample(raw)
            except SampleError:
                bad.add(raw["__key__"])
        print(f"\n## avprep inspect: {len(allf)} samples in 2 shards\n")
        print(f"samples counted {sum(report.samples.values())}, flagged {len(flagged)} (decode_sample refuses "
              f"{len(bad)}; same set: {flagged == bad}), shards unreadable "
              f"{sum('cannot be read' in e for e in report.errors)}")


SOURCES = ["s1/video/bbaf2n.mkv", "s1/video/lrae3s.mkv", "s1/video/pgwr6p.mkv", "s2/video/swwp2s.mpg",
           "s23/video/priazn.mpg"]


def videos(grid: Path, count: int, seed: int, jobs: int) -> None:
    from avprep.inspect import check_shards

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        classes = fuzzing.fuzz_videos([grid / s for s in SOURCES], count, seed, tmp / "grid")
        cmd = [sys.executable, "-m", "avprep", "grid", "--root", str(tmp / "grid"), "--speakers", "s1", "--out",
               str(tmp / "out"), "--no-progress", "--split-scheme", "none", "--jobs", str(jobs)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        wall = time.time() - t0
        table, lost = fuzzing.run_outcomes(tmp / "out", classes)
        report = check_shards(tmp / "out")
        reasons = sorted({o for c in table.values() for o in c if o != "kept"})
        print(f"## avprep grid: {count} damaged clips (seed {seed}) from {len(SOURCES)} real GRID clips, exit "
              f"{proc.returncode}, {wall:.0f} s wall (--jobs {jobs})\n")
        print("| damage | tried | kept | " + " | ".join(r.removeprefix("rejected: ") for r in reasons) + " |")
        print("|---|---|---|" + "---|" * len(reasons))
        for cls, c in table.items():
            print(f"| {cls} | {sum(c.values())} | {c['kept']} | " + " | ".join(str(c[r]) for r in reasons) + " |")
        total = Counter()
        for c in table.values():
            total.update(c)
        print(f"| all | {count} | {total['kept']} | " + " | ".join(str(total[r]) for r in reasons) + " |")
        print(f"\nlost (neither sample nor rejection): {len(lost)}; written samples {sum(report.samples.values())}, "
              f"inspect errors (audio/video/feature lengths disagree, undecodable): {len(report.errors)}")
        if proc.returncode:
            print(proc.stderr[-2000:])


class _Calls:
    """Unpickling this calls ``fn(*args)``: a hostile checkpoint's payload."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def checkpoints(count: int, seed: int) -> None:
    import builtins
    import os
    import subprocess as sp

    import numpy as np
    import torch

    from avtrain.api import train
    from avtrain.config import load_recipe
    from avtrain.engine import checkpoint as ckpt
    from avtrain.synthetic import write_shards

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = write_shards(tmp / "syn", splits={"train": (1, 8), "val": (1, 4)})
        recipe = tmp / "r.yaml"
        recipe.write_text(f"""
output_dir: {tmp / 'run'}
data: {{shards: {shards}, batch_size: 4, shuffle_buffer: 1}}
visual_frontend_conf: {{stem_channels: 8, widths: [8, 8, 16, 16], blocks: [1, 1, 1, 1]}}
audio_frontend_conf: {{channels: [8, 16]}}
memory_conf: {{num_slots: 4}}
backend_conf: {{hidden: 16}}
model_conf: {{num_classes: 4, embed_dim: 16}}
augment_conf: {{crop: 28}}
trainer: {{epochs: 1, max_steps: 2, progress: false, threads: 1}}
""")
        train(load_recipe(recipe))
        good = tmp / "run" / "checkpoints" / "last.pt"
        state = ckpt.load(good)
        marker = tmp / "code-ran"
        payloads = {
            "os.system": (os.system, (f"touch {marker}",)),
            "builtins.exec": (builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
            "builtins.eval": (builtins.eval, (f"open({str(marker)!r}, 'w').close()",)),
            "subprocess.Popen": (sp.Popen, (["touch", str(marker)],)),
            "builtins.open": (builtins.open, (str(marker), "w")),
            "os.system beside a numpy array": None,
        }
        rng = np.random.default_rng(seed)
        rows: dict[str, Counter] = {}

        def outcome(path: Path) -> str:
            try:
                ckpt.load_checkpoint(path)
                result = "loaded"
            except ckpt.CheckpointError as e:
                msg = str(e)
                result = "refused (names the call)" if ": refused: " in msg else "unreadable (one line)"
                assert str(path) in msg and "\n" not in msg
            except Exception as e:  # noqa: BLE001
                result = f"other error: {type(e).__name__}"
            if marker.exists():
                marker.unlink()
                result += ", CODE RAN"
            return result

        for name, payload in payloads.items():
            for zip_format in (True, False):
                cls = f"pickle calling {name} ({'zip' if zip_format else 'non-zip'} format)"
                for i in range(max(1, count // 40)):
                    hostile = dict(state)
                    if payload is None:
                        hostile["np"] = np.zeros(3, np.uint32)
                        hostile["x"] = _Calls(os.system, (f"touch {marker}",))
                    else:
                        hostile["x"] = _Calls(*payload)
                    path = tmp / f"h{i}.pt"
                    torch.save(hostile, path, _use_new_zipfile_serialization=zip_format)
                    rows.setdefault(cls, Counter())[outcome(path)] += 1
        data = good.read_bytes()
        for i in range(count):
            path = tmp / "m.pt"
            if i % 2:
                cls = "real checkpoint truncated at a random point"
                path.write_bytes(data[: int(rng.integers(0, len(data)))])
            else:
                cls = "real checkpoint with 1-8 flipped bytes"
                b = bytearray(data)
                for _ in range(int(rng.integers(1, 9))):
                    b[int(rng.integers(0, len(b)))] ^= int(rng.integers(1, 256))
                path.write_bytes(bytes(b))
            rows.setdefault(cls, Counter())[outcome(path)] += 1
        old = dict(state)
        old.pop("format")
        old["rng"] = dict(old["rng"], numpy=np.random.get_state())
        torch.save(old, tmp / "old.pt")
        rows["older avtrain checkpoint (numpy RNG state)"] = Counter([outcome(tmp / "old.pt")])
        kinds = sorted({o for c in rows.values() for o in c})
        print(f"## checkpoints through avtrain.engine.checkpoint.load_checkpoint (seed {seed})\n")
        print("| input | tried | " + " | ".join(kinds) + " |")
        print("|---|---|" + "---|" * len(kinds))
        for cls, c in rows.items():
            print(f"| {cls} | {sum(c.values())} | " + " | ".join(str(c[k]) for k in kinds) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["shards", "videos", "checkpoints"])
    ap.add_argument("--grid", type=Path, default=REPO.parent / "shared" / "data" / "grid")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=60, help="shards: inputs per mutation class")
    ap.add_argument("--count", type=int, default=400, help="videos: damaged clips; checkpoints: damaged copies")
    ap.add_argument("--jobs", type=int, default=1, help="videos: avprep grid --jobs")
    a = ap.parse_args()
    if a.what == "shards":
        shards(a.grid, a.per_class, a.seed)
    elif a.what == "checkpoints":
        checkpoints(a.count, a.seed)
    else:
        videos(a.grid, a.count, a.seed, a.jobs)


if __name__ == "__main__":
    main()
