"""Figures: addressing vectors of test clips (associative bridging, Fig. 3 of its paper; MTLAM, per level)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _addressing_heatmap(ax, addressing, title: str, vmax: float):
    """Slots (rows) over frames (columns) of one clip's (T, N) addressing vectors."""
    from matplotlib.ticker import MaxNLocator

    im = ax.imshow(addressing.T, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest",
                   origin="lower")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel("memory slot", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return im


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

def _frame_strip(ax, frames: np.ndarray, max_frames: int) -> None:
    t = frames.shape[0]
    keep = np.linspace(0, t - 1, min(t, max_frames)).round().astype(int)
    tiles = [np.pad(frames[i], ((0, 0), (0, 2)), constant_values=1.0) for i in keep]
    tiles += [np.ones_like(tiles[0])] * (max_frames - len(tiles))  # same tile size whatever the clip length
    ax.imshow(np.concatenate(tiles, axis=1), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([(i + 0.5) * (frames.shape[2] + 2) for i in range(len(keep))], [str(i) for i in keep],
                  fontsize=7)  # labels are the clip's frame numbers (frames are subsampled past max_frames)
    ax.set_yticks([])
    ax.set_xlabel("frame", fontsize=8)


def plot_level_addressing(clips: list[dict], path: str | Path, max_frames: int = 10) -> Path:
    """MTLAM: one row per clip, its mouth frames and, per memory level, the key-memory addressing (Eq. 2) averaged
    over heads as a slot x frame heatmap; short- and long-term memories side by side (cf. Fig. 2 of the paper).

    Each clip dict holds ``frames`` (T, H, W) in 0..1, ``levels`` {level: (T, N)}, ``key``, ``word``, ``pred``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(clips[0]["levels"])
    rows, cols = len(clips), 1 + len(levels)
    fig, axes = plt.subplots(rows, cols, figsize=(6 + 3.2 * len(levels), 3.0 * rows),
                             gridspec_kw={"width_ratios": [2.2] + [1] * len(levels)}, squeeze=False,
                             layout="constrained")
    for r, clip in enumerate(clips):
        _frame_strip(axes[r, 0], clip["frames"], max_frames)
        ok = "✓" if clip["word"] == clip["pred"] else "✗"
        axes[r, 0].set_title(f"{clip['key']}: \"{clip['word']}\" → predicted \"{clip['pred']}\" {ok}", fontsize=9,
                             loc="left")
        vmax = max(float(a.max()) for a in clip["levels"].values())
        for c, level in enumerate(levels, start=1):
            im = _addressing_heatmap(axes[r, c], clip["levels"][level], f"MTLAM#{level} (mean over heads)", vmax)
        fig.colorbar(im, ax=axes[r, 1:], fraction=0.03, pad=0.02, label="probability")
    fig.suptitle("Key-memory addressing per level of test clips (video only)", fontsize=11)
    return _save(fig, path)


def plot_addressing(clips: list[dict], path: str | Path, max_frames: int = 10) -> Path:
    """One row per clip: its mouth frames, the source (visual -> key memory) and target (audio -> value memory)
    addressing vectors as slot x frame heatmaps, and their per-frame agreement.

    Each clip dict holds ``frames`` (T, H, W) in 0..1, ``src`` and ``tgt`` (T, N), ``word``, ``pred``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(clips)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 3.0 * rows), gridspec_kw={"width_ratios": [2.2, 1, 1]},
                             squeeze=False, layout="constrained")
    for r, clip in enumerate(clips):
        ax = axes[r, 0]
        _frame_strip(ax, clip["frames"], max_frames)
        ok = "✓" if clip["word"] == clip["pred"] else "✗"
        ax.set_title(f"{clip['key']}: \"{clip['word']}\" → predicted \"{clip['pred']}\" {ok}", fontsize=9, loc="left")
        vmax = max(float(clip["src"].max()), float(clip["tgt"].max()))
        cos = (clip["src"] * clip["tgt"]).sum(-1) / (
            np.linalg.norm(clip["src"], axis=-1) * np.linalg.norm(clip["tgt"], axis=-1) + 1e-12)
        for c, (name, a) in enumerate((("source A_src (video → key memory)", clip["src"]),
                                       (f"target A_tgt (audio → value memory)\ncosine to A_src: mean {cos.mean():.2f}",
                                        clip["tgt"])), start=1):
            im = _addressing_heatmap(axes[r, c], a, name, vmax)
        fig.colorbar(im, ax=axes[r, 1:], fraction=0.03, pad=0.02, label="probability")
    fig.suptitle("Addressing vectors of test clips (cf. Fig. 3 of Kim et al., ICCV 2021)", fontsize=11)
    return _save(fig, path)
