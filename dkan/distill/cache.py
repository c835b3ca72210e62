"""In-memory caches of features that cannot change during a fine-tune: reuse what is frozen.

During fine-tuning the backbone body is frozen (eval-mode BatchNorm), the teacher is frozen whole
and, for TFA, so is the student's FPN. For one input the outputs of these parts are the same at
every step, and the few-shot training set is small, so ``train_step`` looks them up here:

  body      the frozen body's output (student = teacher body), for plain and DKAN
  teacher   the teacher's FPN output (DKAN)
  fpn       the student's frozen body + FPN output (TFA: only the box predictor trains)

A key is (kind, image content digest, size after the model's resize, padded batch size). The
content digest names the view: a flipped image is another input, whatever flip made it, and an
image whose flip equals itself rightly shares its entry. The padded size is in the key because
torchvision resizes each image, then pads the batch to its largest member: the body's output near
the bottom/right border depends on that padding (its zeros become non-zero after the first
conv + BN), so features are reused only for the same padded canvas. Misses are computed one image
at a time, so an entry's value never depends on which other images shared its batch (resume and
a warm evaluation cache give bit-identical results); against the uncached batched pass the
difference is floating-point noise (convolution over batch 1 vs batch N).

Multi-scale training (the paper profile's random shorter side 640..800) gets a key per scale and
padded size; nothing random is cached. Its memory cost, fp32: the R101 body (C2..C5: 256/512/1024/
2048 channels at strides 4..32) at ~800x1333 (padded 800x1344) is 129 MB per image view, the
teacher's FPN (5 levels of 256 channels) 92 MB; 30 images (5-shot) x 2 flips x 6 scales = 360
views is ~46 GB of body and ~33 GB of teacher features, 180 images (30-shot) six times that. NEU-DET
images are 200x200 (resized to 640..800 squares): 77 + 55 MB per view at 800, ~47 GB for 5-shot.
So at the paper profile the cache fills up to its budget and serves what it holds (a hit rate of
about budget / that total); at cpu-quick (R18, 128-channel FPN, 224x224 padded) a view is
1.5 MB of body + 2.1 MB of teacher FPN: 30 images x 4 flips fit in ~0.5 GB.

The cache is filled until its byte budget is spent and never evicts: a fine-tune cycles over the
same few images, where LRU would evict each entry just before it is needed again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import torch

MiB = 2**20
CPU_DEFAULT_MB = 2048
CUDA_MAX_DEFAULT_MB = 16384


def image_key(image: torch.Tensor) -> str:
    """Digest of an image tensor's content, shape and dtype: the name of one view of one image."""
    t = image.detach().as_subclass(torch.Tensor).cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{tuple(t.shape)}|{t.dtype}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def module_digest(module: torch.nn.Module) -> str:
    """Digest of a module's parameters and buffers (names and values)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def budget_mb(cache_mb: int, device: torch.device) -> int:
    """The byte budget in MiB: ``cache_mb`` if >= 0 (0 = off), else the device's default
    (CPU: 2 GiB; CUDA: a quarter of the GPU's memory, at most 16 GiB)."""
    if cache_mb >= 0:
        return cache_mb
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory // MiB
        return min(CUDA_MAX_DEFAULT_MB, total // 4)
    return CPU_DEFAULT_MB


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bytes: int = 0
    full: int = 0  # misses not stored because the budget was spent

    def as_metrics(self, prefix: str = "cache") -> dict[str, int]:
        return {f"{prefix}_hits": self.hits, f"{prefix}_misses": self.misses, f"{prefix}_bytes": self.bytes,
                f"{prefix}_full": self.full}


class FeatureCache:
    """Per-image feature dicts under a byte budget; ``batch`` computes only the misses."""

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self.stats = CacheStats()
        self._store: dict[Hashable, OrderedDict[str, torch.Tensor]] = {}

    @property
    def entries(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()
        self.stats.bytes = 0

    def batch(
        self,
        keys: Sequence[Hashable],
        inputs: torch.Tensor | Mapping[str, torch.Tensor],
        fn: Callable[..., OrderedDict[str, torch.Tensor]],
    ) -> OrderedDict[str, torch.Tensor]:
        """``fn(inputs)`` assembled from per-image entries: ``keys[i]`` names ``inputs[i]`` (a tensor,
        or a dict of tensors such as a body's output, indexed on their first dimension).

        ``fn`` maps [n, ...] to a dict of [n, ...] tensors and runs under no_grad, one image at a time,
        on the misses only."""
        found: list[OrderedDict[str, torch.Tensor] | None] = [self._store.get(k) for k in keys]
        for i, k in enumerate(keys):
            if found[i] is not None:
                self.stats.hits += 1
                continue
            self.stats.misses += 1
            with torch.no_grad():
                out = fn(_take(inputs, i))
            found[i] = OrderedDict((name, t.detach()) for name, t in out.items())
            self._put(k, found[i])
        if len(found) == 1:
            return OrderedDict(found[0])
        return OrderedDict((name, torch.cat([f[name] for f in found])) for name in found[0])

    def _put(self, key: Hashable, feats: OrderedDict[str, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in feats.values())
        if key in self._store:
            return
        if self.stats.bytes + size > self.budget:
            self.stats.full += 1
            return
        self._store[key] = feats
        self.stats.bytes += size


def _take(inputs: torch.Tensor | Mapping[str, torch.Tensor], i: int):
    if isinstance(inputs, torch.Tensor):
        return inputs[i : i + 1]
    return OrderedDict((name, t[i : i + 1]) for name, t in inputs.items())


def batch_keys(kind: str, image_keys: Sequence[str], image_sizes: Sequence[Sequence[int]], padded: torch.Size):
    """Cache keys of a transformed batch: one per image (see the module docstring)."""
    canvas = tuple(int(s) for s in padded[-2:])
    return [(kind, k, tuple(int(s) for s in size), canvas) for k, size in zip(image_keys, image_sizes)]


_EVAL: dict[str, object] = {"digest": None, "cache": None}


def eval_cache(body: torch.nn.Module, budget_bytes: int, precision: str = "fp32") -> FeatureCache:
    """The process's cache of evaluation-set body features for this body's weights.

    A sweep worker runs a trial's seeds one after another in one process: their students share the
    base model's frozen body, so the val images' body features are computed once. A body with other
    weights (another study, or a trained body) empties it: one body's features are kept at a time. (The test
    phase evaluates its checkpoints together instead: ``dkan.engine.evaluate_many``.)
    ``precision``: features computed under another autocast are not reused."""
    digest = f"{module_digest(body)}/{precision}"
    cache = _EVAL["cache"]
    if _EVAL["digest"] != digest or not isinstance(cache, FeatureCache) or cache.budget != budget_bytes:
        cache = FeatureCache(budget_bytes)
        _EVAL.update(digest=digest, cache=cache)
    return cache


def reset_eval_cache() -> None:
    _EVAL.update(digest=None, cache=None)
