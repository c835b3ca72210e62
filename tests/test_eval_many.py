"""Evaluating many checkpoints of one base model in one pass: what their weights share runs once, and each
scores exactly as alone."""

from __future__ import annotations

import json

import pytest

from dkan.config import FinetuneConfig
from dkan.engine.evaluate import evaluate
from dkan.engine.evaluate_checkpoint import evaluand_from_checkpoint, evaluate_checkpoint, evaluate_checkpoints
from dkan.engine.evaluate_many import evaluate_many, stage_prefixes
from dkan.engine.train import fit
from tests.test_train import base_cfg, ft_kwargs


@pytest.fixture(scope="module")
def checkpoints(synthetic_prepared, tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    fit(base_cfg(synthetic_prepared, root / "base"), progress=False)
    out = [root / "base" / "model_final.pt"]
    for method in ("tfa", "dkan"):
        fit(FinetuneConfig(**ft_kwargs(synthetic_prepared, out[0], root / method, method)), progress=False)
        out.append(root / method / "model_final.pt")
    return out


def _same(a, b):
    return [json.dumps(m, sort_keys=True) for m in a] == [json.dumps(m, sort_keys=True) for m in b]


def test_checkpoints_evaluated_together_score_as_alone_and_as_the_plain_forward(checkpoints):
    alone = [evaluate_checkpoint(ckpt, "test", device="cpu") for ckpt in checkpoints]
    together = evaluate_checkpoints(checkpoints, "test", device="cpu")
    assert _same(together, alone)
    e = evaluand_from_checkpoint(checkpoints[2], "test", device="cpu")  # the DKAN student through model(images)
    plain = evaluate(e.model, e.records, e.gt, e.base, e.novel, e.model.backbone.body.conv1.weight.device)
    assert json.dumps(plain, sort_keys=True) == json.dumps({k: v for k, v in alone[2].items() if k != "eval_split"},
                                                            sort_keys=True)


def test_what_the_weights_share_runs_once_per_batch(checkpoints):
    base, tfa, dkan = (evaluand_from_checkpoint(c, "test", device="cpu") for c in checkpoints)
    # TFA trains the last layer only: every stage before it is the base model's; DKAN shares the frozen body only
    pb, pt, pd = (stage_prefixes(e.model, e.precision) for e in (base, tfa, dkan))
    assert pt == pb and pd[:2] == pb[:2] and all(a != b for a, b in zip(pd[2:], pb[2:]))
    calls = {}

    def count(name):
        def hook(*_):
            calls[name] = calls.get(name, 0) + 1
        return hook

    for name, e in (("base", base), ("tfa", tfa), ("dkan", dkan)):
        for part, module in (("body", e.model.backbone.body), ("box_head", e.model.roi_heads.box_head),
                             ("predictor", e.model.roi_heads.box_predictor)):
            module.register_forward_hook(count(f"{name}.{part}"))
    evaluate_many([base, tfa, dkan], base.model.backbone.body.conv1.weight.device, batch_size=4)
    batches = -(-len(base.records) // 4)
    assert calls == {"base.body": batches, "base.box_head": batches, "dkan.box_head": batches,
                     "base.predictor": batches, "tfa.predictor": batches, "dkan.predictor": batches}


def test_a_checkpoint_is_scored_on_the_images_its_fit_was(checkpoints):
    """One wiring from a config to its evaluation data: a fine-tune's val set leaves out its own shots, in fit
    (build_setup) and in a checkpoint's evaluand alike."""
    from pathlib import Path

    from dkan.config import from_dict
    from dkan.data.prepared import PreparedData
    from dkan.engine.setup import build_setup
    from dkan.model.checkpoint import load_checkpoint

    cfg = from_dict(FinetuneConfig, load_checkpoint(checkpoints[2])["meta"]["config"])
    setup = build_setup(cfg)
    e = evaluand_from_checkpoint(checkpoints[2], "val", device="cpu")
    assert [r.image_id for r in e.records] == [r.image_id for r in setup.eval_records] and e.gt == setup.eval_gt
    shots = {im["id"] for im in PreparedData.load(Path(cfg.data.root)).fewshot(cfg.fewshot_seed, cfg.shots)["images"]}
    base_val = {r.image_id for r in evaluand_from_checkpoint(checkpoints[0], "val", device="cpu").records}
    assert {r.image_id for r in e.records} == base_val - shots
