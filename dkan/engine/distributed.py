"""Data parallelism with plain torch.distributed (set up by whoever launches the workers: Ray
Train's TorchTrainer in the sweep, torchrun by hand). Without a process group, all no-ops.

The train step drives the detector's parts directly (shared backbone pass, teacher on the same
RoIs), not through ``forward``, so DistributedDataParallel's forward hooks do not apply;
gradients are averaged explicitly after backward instead, which is what DDP does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(indices: list[int]) -> list[int]:
    """This rank's share of a global batch (the global batch size is the config's, whatever the workers)."""
    rank, world = rank_and_world()
    return indices[rank::world]


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    _, world = rank_and_world()
    if world == 1:
        return
    grads = []
    for p in params:
        if p.grad is None:  # every rank must reduce the same tensors
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_from_rank0(obj: Any) -> Any:
    _, world = rank_and_world()
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module(module: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights and buffers (as DistributedDataParallel does)."""
    _, world = rank_and_world()
    if world == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)
