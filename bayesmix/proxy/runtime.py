"""Where and how a run executes: device, precision, optional compilation.

GPU: bf16 autocast (weights and optimiser state stay fp32) and fused
attention; CPU: fp32. Nothing here changes process-wide settings.
"""

from __future__ import annotations

import contextlib

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; ``cuda:1`` etc. are accepted."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use one of {DEVICES} (or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use one of {DEVICES} (or cuda:N)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on a GPU and fp32 on the CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision (a no-op for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model, *, lr: float, weight_decay: float, betas: tuple[float, float],
                   device: torch.device, plain: bool = False) -> torch.optim.AdamW:
    """AdamW over the model's decay groups: fused kernels on a GPU, multi-tensor on the CPU,
    or the plain per-parameter loop (``plain=True``, the benchmark's reference)."""
    if plain:
        kwargs = {"foreach": False}
    elif device.type == "cuda":
        kwargs = {"fused": True}
    else:
        kwargs = {"foreach": True}
    return torch.optim.AdamW(model.decay_groups(weight_decay), lr=lr, betas=betas, eps=1e-8, **kwargs)


def to_device(batch, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(batch)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
