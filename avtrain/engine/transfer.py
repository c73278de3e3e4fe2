"""What of a batch goes to the device: every tensor but the fields its task reads on the host."""

from __future__ import annotations

import torch

DEFAULT_HOST_FIELDS = ("lengths",)


def to_device(batch: dict, device: torch.device, host_fields: tuple[str, ...] = DEFAULT_HOST_FIELDS) -> dict:
    """Tensors of a batch onto ``device``, asynchronously from pinned host memory (the loader pins on CUDA). The
    task's ``host_fields`` (``lengths`` and what else it reads there: packed RNNs, real-frame indices, a loss
    window's bounds) stay on the host, so reading them costs no device sync."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) and k not in host_fields else v)
            for k, v in batch.items()}
