"""A fine-tune's model_final.pt holds what it changed plus its base model's hash; every reader composes."""

from __future__ import annotations

import shutil

import pytest
import torch

from dkan.config import FinetuneConfig
from dkan.engine.train import fit
from dkan.model.checkpoint import DELTA, CheckpointError, load_checkpoint, save_checkpoint
from tests.test_train import base_cfg, ft_kwargs


@pytest.fixture(scope="module")
def base(synthetic_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("delta_base")
    fit(base_cfg(synthetic_prepared, out), progress=False)
    return out / "model_final.pt"


def _raw(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("method", ["dkan", "tfa"])
def test_a_delta_composes_to_the_full_model_bit_for_bit(base, synthetic_prepared, tmp_path, method):
    kw = ft_kwargs(synthetic_prepared, base, tmp_path / "delta", method)
    fit(FinetuneConfig(**kw), progress=False)
    fit(FinetuneConfig(**{**kw, "out": str(tmp_path / "full"), "checkpoint_format": "full"}), progress=False)
    delta_file, full_file = tmp_path / "delta" / "model_final.pt", tmp_path / "full" / "model_final.pt"
    stored, whole = _raw(delta_file), _raw(full_file)
    assert DELTA in stored and DELTA not in whole
    composed = load_checkpoint(delta_file)
    assert DELTA not in composed and list(composed["model"]) == list(whole["model"])  # same keys, same order
    assert all(torch.equal(composed["model"][k], whole["model"][k]) for k in whole["model"])
    assert composed["meta"]["classes"] == whole["meta"]["classes"]
    kept = set(stored["model"])
    assert not any(k.startswith("backbone.body.") for k in kept)  # the frozen body is the base model's
    if method == "tfa":  # only the last layer trains
        assert kept and all(k.startswith("roi_heads.box_predictor.") for k in kept)
        assert delta_file.stat().st_size < 0.05 * full_file.stat().st_size
    else:
        assert any(k.startswith("backbone.fpn.") for k in kept) and any(k.startswith("rpn.") for k in kept)
        assert delta_file.stat().st_size < full_file.stat().st_size


def test_a_delta_refuses_a_missing_changed_or_corrupt_base(base, synthetic_prepared, tmp_path):
    own_base = tmp_path / "base" / "model_final.pt"
    own_base.parent.mkdir()
    shutil.copy(base, own_base)
    fit(FinetuneConfig(**ft_kwargs(synthetic_prepared, own_base, tmp_path / "ft", "tfa")), progress=False)
    delta_file = tmp_path / "ft" / "model_final.pt"
    load_checkpoint(delta_file)
    # the base model changed after the fine-tune (e.g. retrained into the same cache path)
    changed = load_checkpoint(own_base)
    key = next(iter(changed["model"]))
    changed["model"][key] = changed["model"][key] + 1
    save_checkpoint(own_base, changed)
    with pytest.raises(CheckpointError, match=r"model_final.pt: .*base/model_final.pt, but that file changed since"
                                              r".*expected .*Fix: restore the base model"):
        load_checkpoint(delta_file)
    # the base model is gone
    own_base.unlink()
    with pytest.raises(CheckpointError, match=r"needs the base model .*which is missing\. Fix: put that base"):
        load_checkpoint(delta_file)
    shutil.copy(base, own_base)
    stored = _raw(delta_file)
    broken = tmp_path / "broken.pt"
    save_checkpoint(broken, {**stored, DELTA: {"base": 3}})
    with pytest.raises(CheckpointError, match=r"broken.pt: a corrupt delta checkpoint"):
        load_checkpoint(broken)
    stored[DELTA]["keys"] = [*stored[DELTA]["keys"], "roi_heads.nowhere.weight"]
    save_checkpoint(broken, stored)
    with pytest.raises(CheckpointError, match=r"1 tensor\(s\) in neither it nor its base .*roi_heads.nowhere"):
        load_checkpoint(broken)


def test_a_bundle_of_a_delta_holds_both_and_loads_anywhere(base, synthetic_prepared, tmp_path):
    from dkan.bundle import BASE, MODEL, write_bundle
    from dkan.inference import load_bundle_model

    own_base = tmp_path / "cache" / "model_final.pt"
    own_base.parent.mkdir()
    shutil.copy(base, own_base)
    kw = ft_kwargs(synthetic_prepared, own_base, tmp_path / "ft", "dkan")
    fit(FinetuneConfig(**kw), progress=False)
    ckpt = tmp_path / "ft" / "model_final.pt"
    meta = load_checkpoint(ckpt)["meta"]
    write_bundle(tmp_path / "bundle", meta["config"], own_base, ckpt, meta["classes"], {})
    assert _raw(tmp_path / "bundle" / MODEL)[DELTA]["base"] == BASE  # beside it, not the cache's path
    copy = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(tmp_path / "bundle", copy)
    shutil.rmtree(tmp_path / "cache")
    shutil.rmtree(tmp_path / "bundle")
    loaded = load_bundle_model(copy)
    composed = load_checkpoint(copy / MODEL)["model"]
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], composed[k]) for k in composed)
    with pytest.raises(CheckpointError, match="which is missing"):
        load_checkpoint(ckpt)  # the run folder's delta needs the cache's base, now gone
