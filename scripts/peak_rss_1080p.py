"""Peak resident memory of one avprep worker on a 1080p clip made from a real GRID clip (issue 11, item 2).

    PYTHONPATH=. python scripts/peak_rss_1080p.py --grid ../shared/data/grid --out /tmp/rss [--preset bridging-grid]

Upscales s1/bbaf2n (360x288, 75 frames) to 1350x1080 and pads it to 1920x1080, writes it as H.264, prepares it
twice in one worker and prints the worker's peak RSS as the runner measures it (the summary's "peak memory per
worker"); ``--cap-gib`` sets the per-worker cap to show the ``out of memory`` rejection.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="bridging-grid")
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--cap-gib", type=float, default=None)
    args = parser.parse_args()

    import cv2
    from rich.console import Console

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from avprep.corpora import grid
    from avprep.options import PrepOptions
    from avprep.prepare import prepare
    from avprep.types import ClipSpec
    from clipmaker import read_clip, write_clip

    spec = {c.utterance: c for c in grid.find_clips(args.grid, ["s1"])}["bbaf2n"]
    args.out.mkdir(parents=True, exist_ok=True)
    big = args.out / "bbaf2n_1080p.mp4"
    if not big.exists():
        frames, audio, rate = read_clip(spec.video)
        up = np.zeros((len(frames), 1080, 1920, 3), np.uint8)
        for i, frame in enumerate(frames):
            up[i, :, 285 : 285 + 1350] = cv2.resize(frame, (1350, 1080), interpolation=cv2.INTER_CUBIC)
        write_clip(big, up, 25, audio, rate)
        del up
    clips = [ClipSpec(key=f"big{i}", corpus="grid", speaker="s1", utterance="bbaf2n", split="train", video=big,
                      text=spec.text, words=spec.words) for i in range(args.clips)]
    shards = args.out / f"shards-{args.preset}-{args.cap_gib}"
    options = PrepOptions(preset=args.preset, console=Console(file=open(os.devnull, "w")), progress=False,
                          max_worker_mem=args.cap_gib)
    report = prepare(clips, "grid", shards, options)
    print(json.dumps({"preset": args.preset, "clips_written": report.clips_written, "rejected": dict(report.rejected),
                      "worker_peak_rss_mib": round(report.worker_peak_rss / 2**20)}))


if __name__ == "__main__":
    main()
