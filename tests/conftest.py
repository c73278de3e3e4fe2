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
