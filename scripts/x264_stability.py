"""Whether x264 gives the same bytes for the same crops here (issue 22, item 1): encode crops of one GRID clip
again and again, whole and as word segments from one session, and count the distinct streams.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/x264_stability.py --grid ../shared/data/grid [--repeats 30]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from avbridge.codecs import encode_video, encode_video_segments
from avprep.stages.decode import decode_clip
from avprep.versions import library_versions

WORDS = [(23, 30), (29, 35), (35, 40), (40, 46)]  # frames of s1/bbaf2n's first words, as the pipeline cuts them


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    frames = decode_clip(args.grid / "s1" / "video" / "bbaf2n.mkv", None, 25, 16000).frames
    crops = {"gray 112x112": frames[:, 150:262, 120:232].mean(-1).astype(np.uint8),
             "rgb 160x160": np.ascontiguousarray(frames[:, 100:260, 100:260])}

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    for name, crop in crops.items():
        whole = {sha(encode_video(crop)) for _ in range(args.repeats)}
        words = {tuple(sha(b) for b in encode_video_segments(crop, WORDS)) for _ in range(args.repeats)}
        print(f"{name}: {args.repeats} encodes of the clip -> {len(whole)} distinct stream(s); {args.repeats} "
              f"word-segment sessions -> {len(words)} distinct set(s)")
    versions = library_versions()
    print({k: versions[k] for k in ("pyav", "ffmpeg", "x264")})


if __name__ == "__main__":
    main()
