"""Device and numeric precision: which device, which autocast dtype, one autocast context for training and
evaluation, the channels-last weight layout, and the CUDA math settings. (Which batch fields go to the device:
avtrain.engine.transfer.)"""

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
