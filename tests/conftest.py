"""Shared fixtures: the real GRID sample beside the checkout (../shared/data/grid), as CI has it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRID = REPO.parent / "shared" / "data" / "grid"
sys.path.insert(0, str(Path(__file__).parent))  # tests/clipmaker.py


@pytest.fixture(scope="session")
def grid_root() -> Path:
    if not (GRID / "s1").is_dir():
        pytest.skip(f"GRID sample not found at {GRID} (CI and developers have it beside the checkout)")
    return GRID


@pytest.fixture(scope="module")
def grid_wave(grid_root):
    """s1/bbaf2n's audio at 16 kHz mono, cut to whole 25 fps frames (640 samples each)."""
    import av
    import numpy as np

    with av.open(str(grid_root / "s1" / "video" / "bbaf2n.mkv")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    wave = np.concatenate(chunks).astype(np.float32)
    return wave[: len(wave) // 640 * 640]
