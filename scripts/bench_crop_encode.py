"""What storing the crops costs: CPU time, bytes and PSNR of the mouth and face crops of real GRID s1 clips, per
x264 setting and for JPEG. The crops are cut by avprep's own stages (bridging-grid: 112x112 gray mouth, 96x96 RGB
face, 75 frames); only the encode is timed (best of 3 passes, process time, one thread).

    OMP_NUM_THREADS=1 python scripts/bench_crop_encode.py --grid ../shared/data/grid --clips 10

The x264 rows are avbridge.codecs.encode_video (full-range yuv420p in mp4, ``tune=fastdecode``, one thread) with
only the settings named changed; ``preset veryfast, CRF 18`` is what the presets use today.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from avbridge import codecs
from avbridge.sample import encode_field
from avprep.corpora import grid
from avprep.pipeline import _compute
from avprep.presets import get_preset
from avprep.reference import estimate_mean_face
from avprep.types import ClipResult
from bench_prep import quiet_native_stderr  # scripts/ is on the path when a script runs

# name -> (x264 preset, CRF, extra x264 settings)
SETTINGS = {
    "preset veryfast, CRF 18 (today)": ("veryfast", 18, None),
    "+ subme=1": ("veryfast", 18, "subme=1"),
    "+ subme=1, rc-lookahead=5": ("veryfast", 18, "subme=1:rc-lookahead=5"),
    "+ me=dia, subme=1, rc-lookahead=5, CRF 17": ("veryfast", 17, "me=dia:subme=1:rc-lookahead=5"),
    "+ bframes=0, mbtree=0": ("veryfast", 18, "bframes=0:mbtree=0"),
    "preset superfast, CRF 18": ("superfast", 18, None),
    "preset ultrafast, CRF 18": ("ultrafast", 18, None),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def best_of(passes: int, fn) -> tuple[float, list[bytes]]:
    best, out = math.inf, []
    for _ in range(passes):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "grid")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--detector-log", type=Path, default=Path("out/bench-prep-detector.log"),
                        help="where the detector's C++ log lines go (the crops are cut with it, in this process)")
    args = parser.parse_args()
    quiet_native_stderr(args.detector_log)
    clips = grid.find_clips(args.grid, ["s1"])[: args.clips]
    preset = get_preset("bridging-grid")
    mean_face = estimate_mean_face(clips, preset)
    arrays = [_compute(c, preset, mean_face, ClipResult(key=c.key))[1] for c in clips]
    crops = [(a.mouth, a.face) for a in arrays]
    n = len(crops)

    table = Table(title=f"crop storage: {n} GRID s1 clips (mouth 112x112 gray + face 96x96 RGB, 75 frames)")
    for col in ("setting", "ms / clip", "mouth KiB", "mouth PSNR", "face KiB", "face PSNR"):
        table.add_column(col, justify="left" if col == "setting" else "right")
    rows = {name: (lambda s=setting: [codecs.encode_video(v, speed=s[0], crf=s[1], x264_params=s[2])
                                      for pair in crops for v in pair]) for name, setting in SETTINGS.items()}
    rows["JPEG quality 90 (--crop-codec jpg)"] = lambda: [encode_field(f"{k}.jpg", v) for pair in crops
                                                          for k, v in zip(("mouth", "face"), pair)]
    for name, fn in rows.items():
        seconds, out = best_of(3, fn)
        decode = codecs.decode_jpeg_frames if name.startswith("JPEG") else codecs.decode_video
        mouth = [decode(out[2 * i]) for i in range(n)]
        face = [decode(out[2 * i + 1]) for i in range(n)]
        mouth_psnr = np.mean([psnr(m, c[0]) for m, c in zip(mouth, crops)])
        face_psnr = np.mean([psnr(f, c[1]) for f, c in zip(face, crops)])
        table.add_row(name, f"{seconds / n * 1000:.1f}",
                      f"{sum(map(len, out[0::2])) / n / 1024:.1f}", f"{mouth_psnr:.1f}",
                      f"{sum(map(len, out[1::2])) / n / 1024:.1f}", f"{face_psnr:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
