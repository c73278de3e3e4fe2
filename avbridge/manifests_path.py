"""Locate the split and vocabulary files shipped in ``manifests/`` (installed as the package avbridge.manifests)."""

from __future__ import annotations

from pathlib import Path


def manifest_file(relative: str) -> Path:
    """Path of a shipped manifest file, from an installed wheel or a source checkout."""
    candidates = []
    try:
        import avbridge.manifests as installed  # present in wheels and editable installs

        candidates.append(Path(installed.__file__).parent / relative)
    except ImportError:
        pass
    candidates.append(Path(__file__).resolve().parents[1] / "manifests" / relative)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"manifest {relative} not found (looked in {', '.join(map(str, candidates))})")
