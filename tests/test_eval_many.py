"""Evaluating many checkpoints of one base model: the frozen body runs once per image for all of them."""

from __future__ import annotations

import json

import pytest

from dkan.config import FinetuneConfig
from dkan.distill.cache import _EVAL, reset_eval_cache
from dkan.engine.evaluate_checkpoint import evaluate_checkpoint
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


def test_checkpoints_of_one_base_share_the_body_pass_and_score_as_alone(checkpoints):
    alone = []
    for ckpt in checkpoints:
        reset_eval_cache()
        alone.append(evaluate_checkpoint(ckpt, "test", device="cpu"))
    reset_eval_cache()
    together = [evaluate_checkpoint(ckpt, "test", device="cpu") for ckpt in checkpoints]
    assert [json.dumps(m, sort_keys=True) for m in together] == [json.dumps(m, sort_keys=True) for m in alone]
    stats = _EVAL["cache"].stats
    images = stats.misses  # the body ran once per test image, for the base model's evaluation
    assert images > 0 and stats.hits == 2 * images  # the TFA and DKAN students took every image's body from it
    reset_eval_cache()
