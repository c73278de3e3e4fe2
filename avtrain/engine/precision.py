"""Device and numeric precision: which device, which autocast dtype, one autocast context for training and
evaluation, host-to-device copies, and the CUDA math settings."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision with ``dtype``, or plain fp32 when it is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


HOST_FIELDS = ("lengths", "centre")


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of a batch onto ``device``, asynchronously from pinned host memory (the loader pins on CUDA).
    ``lengths`` stays on the host: packed RNNs and real-frame indexing read it there, without a device sync."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) and k not in HOST_FIELDS else v)
            for k, v in batch.items()}


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Channels-last weights for the tensor-core convolutions: 4-D weights (Conv2d) channels_last, 5-D (Conv3d)
    channels_last_3d. ``model.to(memory_format=torch.channels_last)`` refuses any model with a Conv3d ("required
    rank 4 tensor"), and every visual front here starts with one."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() in formats:
                param.data = param.data.contiguous(memory_format=formats[param.dim()])
    return model


def configure_cuda(deterministic: bool = False) -> None:
    """TF32 matrix products and convolutions (fp32 layers under bf16 autocast: the GRU/LSTM, decoder, memory
    addressing) and cuDNN autotuning for the fixed clip shapes; autotuning is off when determinism is asked for."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = not deterministic
