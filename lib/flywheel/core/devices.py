"""Where this process computes, and in which precision: one answer, from accelerate, for every model the
workbench loads (embeddings, judges, routers, training).

The device is accelerate's `PartialState().device`: under `accelerate launch` the local process's own GPU,
else the first accelerator, else the CPU. On the CPU everything stays fp32 (and torch's thread count is left
alone); on an accelerator bf16 where it is supported.

torch and accelerate are imported where used: `flywheel.core.routers`, on the CLI's start-up path, reaches
this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def compute_device() -> torch.device:
    """This process's device (its own GPU under `accelerate launch`; the CPU where there is none)."""
    from accelerate import PartialState

    return PartialState().device


def on_accelerator() -> bool:
    return compute_device().type != "cpu"


def bf16_supported() -> bool:
    """bf16 on this process's accelerator where supported; never on the CPU (accelerate says yes there, but
    CPU work stays fp32)."""
    from accelerate.utils import is_bf16_available

    return on_accelerator() and is_bf16_available()


def inference_dtype() -> torch.dtype:
    """bf16 on an accelerator that supports it, else fp32."""
    import torch

    return torch.bfloat16 if bf16_supported() else torch.float32


def training_dtype() -> torch.dtype:
    """Mixed-precision training's dtype: bf16 where supported, fp16 on other accelerators, fp32 on the CPU."""
    import torch

    if not on_accelerator():
        return torch.float32
    return torch.bfloat16 if bf16_supported() else torch.float16
