"""Decoding the k segments of a long clip (LRS2/LRS3 ``pretrain``): each segment decoding the whole clip and cutting
(avprep before issue 22) against each decoding only its span (issue 22, item 4).

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/bench_segments.py --grid ../shared/data/grid --sentences 20

Makes one H.264 + AAC mp4 of ``--sentences`` GRID s1 sentences in a row (3 s each, as LRS ships its clips), cuts its
words into segments of at most 15 s as ``avprep lrs3`` does, and decodes every segment both ways, alternating the
two per segment (CPU time of this process; the largest decoded array of each way). The frames and samples of the
two are compared too (they must be equal).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=Path, required=True)
    parser.add_argument("--sentences", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-segments"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from avprep.corpora import grid, lrs_sidecar
    from avprep.stages import span
    from avprep.stages.decode import decode_clip
    from avprep.types import Word
    from clipmaker import read_clip, write_clip

    clips = grid.find_clips(args.grid, ["s1"])[: args.sentences]
    args.out.mkdir(parents=True, exist_ok=True)
    video = args.out / f"long-{args.sentences}.mp4"
    words, offset = [], 0.0
    frames, audio = [], []
    for c in clips:
        f, a, _ = read_clip(c.video)
        frames.append(f)
        audio.append(np.pad(a, (0, max(0, len(f) * 640 - len(a))))[: len(f) * 640])
        words += [Word(w.word, round(w.start + offset, 2), round(w.end + offset, 2)) for w in c.words]
        offset += len(f) / 25
    if not video.exists():
        write_clip(video, np.concatenate(frames), 25, np.concatenate(audio), 16000, audio_codec="aac")
    del frames, audio
    pieces = lrs_sidecar.segments(tuple(words), 15.0)
    whole_cpu = window_cpu = 0.0
    whole_peak = window_peak = 0
    same = True
    for k, (window, _) in enumerate(pieces):
        order = ("whole", "window") if k % 2 == 0 else ("window", "whole")
        got = {}
        for way in order:
            start = time.process_time()
            if way == "whole":
                clip = decode_clip(video, None, 25, 16000)
                whole_peak = max(whole_peak, clip.frames.nbytes)
                got[way] = span.cut(clip, window)
                whole_cpu += time.process_time() - start
                del clip
            else:
                got[way] = decode_clip(video, None, 25, 16000, window=window)
                window_peak = max(window_peak, got[way].frames.nbytes)
                window_cpu += time.process_time() - start
        same &= bool(np.array_equal(got["whole"].frames, got["window"].frames)
                     and np.array_equal(got["whole"].audio, got["window"].audio))
    result = {"load_average": os.getloadavg(), "clip_seconds": round(offset, 2), "segments": len(pieces),
              "whole_then_cut_cpu_s": round(whole_cpu, 2), "window_cpu_s": round(window_cpu, 2),
              "cpu_ratio": round(window_cpu / whole_cpu, 3),
              "largest_frames_array_mib": {"whole": round(whole_peak / 2**20, 1),
                                           "window": round(window_peak / 2**20, 1)},
              "identical_frames_and_samples": same}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
