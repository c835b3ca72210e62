"""FKA and LKA, as DKAN defines them. Pure functions on tensors: no state, no logging.

The teacher side is always detached: gradients reach the student only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def fka_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor], tau: float) -> torch.Tensor:
    """Feature Knowledge Align over FPN levels (P2-P5).

    Per level [N, C, H, W]: for each (image, channel) a softmax over the H*W positions at
    temperature tau; KL(teacher || student) summed over positions, images and channels, times
    tau^2, divided by N * C. Levels are summed.
    """
    if len(student_feats) != len(teacher_feats) or not student_feats:
        raise ValueError(f"fka_loss: {len(student_feats)} student vs {len(teacher_feats)} teacher levels")
    total = student_feats[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student_feats, teacher_feats):
        s, t = s.float(), t.float()  # fp32 under mixed precision: a softmax over H*W positions at tau
        n, c = s.shape[:2]
        log_ps = F.log_softmax(s.reshape(n, c, -1) / tau, dim=-1)
        log_pt = F.log_softmax(t.detach().reshape(n, c, -1) / tau, dim=-1)
        total = total + F.kl_div(log_ps, log_pt, reduction="sum", log_target=True) * tau**2 / (n * c)
    return total


def lka_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Logit Knowledge Align: KL(softmax(t/tau) || softmax(s/tau)) * tau^2, mean over RoIs.

    Both [R, B]: the base-class logits (background excluded) of the same R RoIs.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"lka_loss: student {tuple(student_logits.shape)} vs teacher {tuple(teacher_logits.shape)}")
    if student_logits.shape[0] == 0:
        return student_logits.float().sum() * 0.0
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()  # fp32 under mixed precision
    log_ps = F.log_softmax(student_logits / tau, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / tau, dim=1)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * tau**2
