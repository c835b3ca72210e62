"""Frozen-feature caches: budget and counts, keys per view and padded size, results equal to no cache."""

from __future__ import annotations

import json

import pytest
import torch

from dkan.config import DistillConfig, FinetuneConfig
from dkan.distill.cache import FeatureCache, batch_keys, eval_cache, image_key, reset_eval_cache
from dkan.distill.features import DIRECT, CachedFeatures
from dkan.distill.step import train_step, weighted_total
from dkan.engine.evaluate_many import Evaluand, forward_shared
from dkan.engine.setup import freeze_for_method
from tests.test_model import batch, teacher_and_student


def mixed_batch():
    """Three images, the last one shorter: the batch is padded, so its canvas is in the keys."""
    images, targets = batch(3)
    images[2] = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(5))
    return images, targets


def student_for(method: str):
    teacher, student = teacher_and_student()
    freeze_for_method(student, method)
    student.train()
    student.backbone.body.eval()
    return (teacher if method == "dkan" else None), student


def test_budget_counts_and_no_eviction():
    cache = FeatureCache(budget_bytes=2 * 4 * 10)  # room for two entries of 10 floats
    fn = lambda x: {"a": x * 2}  # noqa: E731
    x = torch.arange(30.0).reshape(3, 10)
    out = cache.batch(["k0", "k1", "k2"], x, fn)
    assert torch.equal(out["a"], x * 2)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.full, cache.stats.bytes) == (0, 3, 1, 80)
    out = cache.batch(["k2", "k0"], x[[2, 0]], fn)  # k2 did not fit: computed again, k0 is served
    assert torch.equal(out["a"], x[[2, 0]] * 2)
    assert (cache.stats.hits, cache.stats.misses, cache.entries) == (1, 4, 2)
    assert cache.stats.as_metrics() == {"cache_hits": 1, "cache_misses": 4, "cache_bytes": 80, "cache_full": 2}


def test_a_flip_is_another_view_and_the_padded_canvas_is_in_the_key():
    img = torch.rand(3, 8, 6)
    assert image_key(img) == image_key(img.clone())
    assert image_key(img.flip(-1)) != image_key(img)
    assert image_key(img.reshape(3, 6, 8)) != image_key(img)  # same bytes, other shape
    k = batch_keys("body", ["a"], [(96, 128)], torch.Size([2, 3, 128, 128]))
    assert k != batch_keys("body", ["a"], [(96, 128)], torch.Size([2, 3, 96, 128]))


def test_cached_body_of_a_padded_batch_equals_the_batched_pass():
    _, student = teacher_and_student()
    images_t, _ = student.transform(*mixed_batch())
    assert images_t.image_sizes[2] != tuple(images_t.tensors.shape[-2:])  # really padded
    keys = batch_keys("body", [image_key(im) for im in mixed_batch()[0]], images_t.image_sizes, images_t.tensors.shape)
    with torch.no_grad():
        want = student.backbone.body(images_t.tensors)
    cache = FeatureCache(10**9)
    for _ in range(2):  # misses, then hits
        got = cache.batch(keys, images_t.tensors, student.backbone.body)
        for name in want:
            assert torch.allclose(got[name], want[name], rtol=1e-4, atol=1e-4 * want[name].abs().max().item())
    assert (cache.stats.hits, cache.stats.misses) == (3, 3)


@pytest.mark.parametrize("method", ["tfa", "plain", "dkan"])
def test_step_with_cache_matches_without(method):
    """Losses and gradients over steps that hit, against (a) a store-nothing cache (the same per-image
    passes): bit for bit; (b) no cache: float noise in the losses computed before any discrete choice.
    (On an untrained model, float noise can reorder near-tied proposals in the top-k/NMS and so change
    the sampled RoIs: the RoI losses are compared end to end in test_fit_with_cache_on_and_off.)"""

    def run(cache):
        teacher, student = student_for(method)
        images, targets = mixed_batch()
        keys = [image_key(im) for im in images]
        out = []
        for step in range(3):  # step 0 fills the cache, steps 1-2 hit
            torch.manual_seed(step)
            losses = train_step(student, images, targets, teacher, 2, DistillConfig(),
                                CachedFeatures(cache, keys) if cache is not None else DIRECT)
            weighted_total(losses, DistillConfig()).backward()
            grads = {k: p.grad.clone() for k, p in student.named_parameters() if p.grad is not None}
            student.zero_grad(set_to_none=True)
            out.append(({k: v.detach() for k, v in losses.items()}, grads))
        return out

    full = FeatureCache(10**9)
    cached, per_image, plain = run(full), run(FeatureCache(0)), run(None)
    assert full.stats.hits == (2 if method == "dkan" else 1) * 3 * 2  # body (+ teacher) entries, steps 1-2
    for (lc, gc), (lp, gp), (ln, gn) in zip(cached, per_image, plain):
        assert all(torch.equal(lc[k], lp[k]) for k in lc) and all(torch.equal(gc[k], gp[k]) for k in gc)
        assert set(lc) == set(ln) and set(gc) == set(gn)
        for k in ("loss_objectness", "loss_rpn_box_reg", "loss_fka"):
            if k in lc:
                assert torch.allclose(lc[k], ln[k], rtol=1e-4, atol=1e-5), (k, lc[k], ln[k])


@pytest.mark.parametrize("method", ["tfa", "plain", "dkan"])
def test_the_feature_source_changes_where_features_come_from_not_the_losses(method):
    """One image a batch: a cached pass is the batched pass, so DIRECT and CachedFeatures give the same losses
    and gradients bit for bit, the first step filling the cache and the second hitting it."""

    def run(source_of):
        teacher, student = student_for(method)
        images, targets = batch(1)
        out = []
        for step in range(2):
            torch.manual_seed(step)
            losses = train_step(student, images, targets, teacher, 2, DistillConfig(), source_of(images))
            weighted_total(losses, DistillConfig()).backward()
            out.append((losses, {k: p.grad.clone() for k, p in student.named_parameters() if p.grad is not None}))
            student.zero_grad(set_to_none=True)
        return out

    cache = FeatureCache(10**9)
    direct = run(lambda images: DIRECT)
    cached = run(lambda images: CachedFeatures(cache, [image_key(im) for im in images]))
    passes = 2 if method == "dkan" else 1  # the body and the teacher's FPN; plain: the body; tfa: body + FPN
    assert (cache.stats.misses, cache.stats.hits) == (passes, passes)
    for (ld, gd), (lc, gc) in zip(direct, cached):
        assert set(ld) == set(lc) and all(torch.equal(ld[k], lc[k]) for k in ld)
        assert set(gd) == set(gc) and all(torch.equal(gd[k], gc[k]) for k in gd)


class _Recording:
    """A feature source that computes every pass and notes its kind."""

    def __init__(self):
        self.kinds = []

    def frozen(self, kind, part, images, inputs=None):
        self.kinds.append(kind)
        return DIRECT.frozen(kind, part, images, inputs)


@pytest.mark.parametrize("method, trainable_body, kinds", [
    ("tfa", False, ["fpn"]), ("plain", False, ["body"]), ("dkan", False, ["body", "teacher"]),
    ("dkan", True, ["teacher"]),  # a trainable body is the student's own: the teacher runs its whole backbone
])
def test_the_step_asks_its_source_for_the_frozen_passes_only(method, trainable_body, kinds):
    teacher, student = student_for(method)
    if trainable_body:
        for p in student.backbone.body.parameters():
            p.requires_grad_(True)
        student.backbone.body.train()
    source = _Recording()
    train_step(student, *batch(1), teacher, 2, DistillConfig(), source)
    assert source.kinds == kinds


def test_a_body_in_train_mode_is_not_cached():
    teacher, student = student_for("dkan")
    student.backbone.body.train()  # BatchNorm would update its statistics: not a pure function
    cache = FeatureCache(10**9)
    images, targets = batch(2)
    train_step(student, images, targets, teacher, 2, DistillConfig(),
               CachedFeatures(cache, [image_key(im) for im in images]))
    assert cache.stats.misses == 0 and cache.entries == 0


def test_the_cached_forward_equals_the_model_and_the_eval_cache_follows_the_body():
    reset_eval_cache()
    _, student = teacher_and_student()
    student.eval()
    images, _ = mixed_batch()
    keys = [image_key(im) for im in images]
    cache = eval_cache(student.backbone.body, 10**9)
    with torch.no_grad():
        want = student(images)
        for _ in range(2):
            got = forward_shared(Evaluand(student, [], {}, (), (), body_cache=cache), images, {}, keys)
            for w, g in zip(want, got):
                assert w["boxes"].shape == g["boxes"].shape and torch.allclose(w["scores"], g["scores"], atol=1e-4)
    assert (cache.stats.hits, cache.stats.misses) == (3, 3)
    assert eval_cache(student.backbone.body, 10**9) is cache  # the next seed, same frozen body
    with torch.no_grad():
        student.backbone.body.conv1.weight.add_(1.0)
    assert eval_cache(student.backbone.body, 10**9) is not cache  # other weights: emptied
    reset_eval_cache()


@pytest.fixture(scope="module")
def base_ckpt(synthetic_prepared, tmp_path_factory):
    from dkan.engine.train import fit
    from tests.test_train import base_cfg

    out = tmp_path_factory.mktemp("cache_base")
    fit(base_cfg(synthetic_prepared, out), progress=False)
    return out / "model_final.pt"


@pytest.mark.parametrize("method", ["tfa", "plain", "dkan"])
def test_fit_with_cache_on_and_off(base_ckpt, synthetic_prepared, tmp_path, method, monkeypatch):
    """Same seed, cache on vs (a) a cache that stores nothing (each frozen pass recomputed per image):
    every loss, the weights and the AP bit for bit; (b) off: the RPN (and FKA) losses at every
    iteration within float noise (the RoI losses pass through top-k/NMS/sampling, where float noise
    can swap near-tied proposals of this 4-iteration base model) and the AP. Counts are reported."""
    import dkan.engine.train as train_mod
    from dkan.distill.cache import FeatureCache
    from dkan.engine.train import fit
    from dkan.model.checkpoint import load_checkpoint
    from tests.test_train import ft_kwargs

    real_step, seen = train_mod.train_step, []
    monkeypatch.setattr(train_mod, "train_step", lambda *a, **k: seen.append(real_step(*a, **k)) or seen[-1])
    runs = {}
    for name, mb in (("off", 0), ("on", 16), ("store-nothing", 16)):
        reset_eval_cache()
        seen.clear()
        if name == "store-nothing":
            monkeypatch.setattr(train_mod, "FeatureCache", lambda budget: FeatureCache(0))
        kw = ft_kwargs(synthetic_prepared, base_ckpt, tmp_path / name, method)
        kw["optim"].iterations, kw["shots"] = 4, 1  # 1-shot: a few images, batch 2: the second epoch hits
        kw["data"].hflip = kw["data"].vflip = 0.0  # one view per image: counts known in advance
        metrics = fit(FinetuneConfig(**kw, cache_mb=mb), progress=False)
        runs[name] = metrics, [{k: v.detach() for k, v in s.items()} for s in seen]
    (off, off_losses), (on, on_losses), (ref, ref_losses) = runs["off"], runs["on"], runs["store-nothing"]
    aps = lambda m: json.dumps({k: v for k, v in m.items() if k.startswith("AP")})  # noqa: E731  (NaN-safe)
    assert aps(on) == aps(ref) and len(on_losses) == len(ref_losses) == 4
    assert all(torch.equal(a[k], b[k]) for a, b in zip(on_losses, ref_losses) for k in a)
    w_on, w_ref = (load_checkpoint(tmp_path / n / "model_final.pt")["model"] for n in ("on", "store-nothing"))
    assert all(torch.equal(w_on[k], w_ref[k]) for k in w_on)
    for a, b in zip(off_losses, on_losses):
        for k in ("loss_objectness", "loss_rpn_box_reg", "loss_fka"):
            if k in a:
                assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4), (k, a[k], b[k])
    assert all(on[k] == pytest.approx(off[k], abs=0.02) for k in off if k.startswith("AP"))
    assert "cache_hits" not in off and on["cache_hits"] > 0 and on["cache_bytes"] > 0
    kinds = 2 if method == "dkan" else 1  # body and teacher, body, or (tfa) body + FPN
    assert on["cache_hits"] + on["cache_misses"] == 4 * 2 * kinds and on["cache_misses"] % kinds == 0
    written = json.loads((tmp_path / "on" / "cache.json").read_text())
    assert written["train"]["cache_hits"] == on["cache_hits"] and written["eval_process_total"]["eval_cache_misses"] > 0
