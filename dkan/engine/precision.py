"""Mixed precision (``precision`` in the base-train and fine-tune configs): autocast for the forward
passes of training and evaluation, a gradient scaler for fp16. The distillation losses cast their inputs
to fp32 (``dkan.distill.losses``): a softmax over thousands of positions at tau must not lose precision.

``auto`` is bf16 on a CUDA GPU that supports it, else fp32: on CPU bf16 autocast is faster only where
the CPU has native bf16, and the AP it gives was measured, not assumed (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib

import torch

from dkan.config import ConfigError
from dkan.names import PRECISIONS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str, device: torch.device) -> str:
    """``name`` on ``device``: auto chosen, a precision the device cannot run refused."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision: {name!r}. Fix: use one of {PRECISIONS}")
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision: bf16, but this GPU has no bf16. Fix: precision=fp16 (or fp32)")
    return name


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward passes' context: torch.autocast for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """fp16 needs its losses scaled (small gradients underflow); bf16 and fp32 do not (a disabled scaler)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
