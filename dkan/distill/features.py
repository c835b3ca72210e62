"""Where a training step gets the outputs of its frozen parts: computed each time, or served from a cache.

``train_step`` asks its feature source for every pass through a part that cannot change during the fine-tune
and that is a pure function of its input (the student's frozen body; TFA's frozen body + FPN; the teacher):

  DIRECT            computes the pass, every step
  CachedFeatures    looks each image view up in a ``FeatureCache`` and computes the misses only
                    (``dkan.distill.cache``: the keys, the budget, why misses run one image at a time)

A pass's ``kind`` (body | fpn | teacher) names its entries in the cache; ``inputs`` is the padded batch
unless given (the teacher's FPN reads the shared body's output).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torchvision.models.detection.image_list import ImageList

from dkan.distill.cache import FeatureCache, batch_keys

Inputs = torch.Tensor | Mapping[str, torch.Tensor]
Part = Callable[..., OrderedDict[str, torch.Tensor]]


class FeatureSource(Protocol):
    def frozen(self, kind: str, part: Part, images: ImageList, inputs: Inputs | None = None
               ) -> OrderedDict[str, torch.Tensor]:
        """``part(inputs)`` (``inputs`` by default the batch ``images.tensors``) for a frozen, pure ``part``."""
        ...


class DirectFeatures:
    """Every pass computed, every step."""

    def frozen(self, kind: str, part: Part, images: ImageList, inputs: Inputs | None = None
               ) -> OrderedDict[str, torch.Tensor]:
        return part(images.tensors if inputs is None else inputs)


DIRECT = DirectFeatures()


@dataclass
class CachedFeatures:
    """One batch's passes through ``cache``; ``keys``: ``image_key`` of each input image, before the transform."""

    cache: FeatureCache
    keys: Sequence[str]

    def frozen(self, kind: str, part: Part, images: ImageList, inputs: Inputs | None = None
               ) -> OrderedDict[str, torch.Tensor]:
        keys = batch_keys(kind, self.keys, images.image_sizes, images.tensors.shape)
        return self.cache.batch(keys, images.tensors if inputs is None else inputs, part)
