"""The TFA / authors' variant of the cosine box classifier: class weights renormalised in place.

TFA's ``CosineSimOutputLayers`` and the authors' ``CosineSimBBoxHead`` rescale each class weight
row to unit length *outside* the autograd graph before every forward, then use the rows as they
are. The logits equal ``CosineBoxPredictor``'s for the same weights; the gradient does not: it is
not projected onto the sphere and not divided by the row norm, so small rows (fresh novel rows,
N(0, 0.01)) do not learn faster than large ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dkan.model.cosine import CosineBoxPredictor


class InplaceCosineBoxPredictor(CosineBoxPredictor):
    """``CosineBoxPredictor`` with TFA's in-place weight renormalisation (``model.cosine_norm: inplace``)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.cls_score.weight
        with torch.no_grad():  # through .data, as TFA does: a new value, not a step autograd tracks
            w.data.copy_(F.normalize(w.data, dim=1))
        x = x.flatten(start_dim=1)  # [R, D]
        cos = F.normalize(x, dim=1) @ w.t()  # [R, C+1]; rows already unit length
        return self.scale * cos, self.bbox_pred(x)
