"""The Incremental RCNN box classifier: cosine similarity between RoI features and class weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineBoxPredictor(nn.Module):
    """scale * <x / |x|, w_c / |w_c|> per class (background included), plus class-wise box deltas.

    Same attribute names as torchvision's ``FastRCNNPredictor`` (``cls_score``, ``bbox_pred``) so
    checkpoint surgery treats both heads alike. ``num_classes`` includes background.
    """

    def __init__(self, in_channels: int, num_classes: int, scale: float = 20.0):
        super().__init__()
        self.scale = scale
        self.cls_score = nn.Linear(in_channels, num_classes, bias=False)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(start_dim=1)  # [R, D]
        cos = F.normalize(x, dim=1) @ F.normalize(self.cls_score.weight, dim=1).t()  # [R, C+1]
        return self.scale * cos, self.bbox_pred(x)
