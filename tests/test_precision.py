"""Mixed precision: a bf16 seed job on CPU trains with finite losses; the distillation losses stay fp32."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dkan.config import ConfigError, FinetuneConfig, from_dict
from dkan.distill.losses import fka_loss, lka_loss
from dkan.engine.precision import resolve_precision
from dkan.engine.train import fit
from tests.test_train import ft_kwargs


def test_the_distillation_losses_are_computed_in_fp32_under_autocast():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(2, 8, 32, 32, generator=g) * 4 for _ in range(2)]
    t = [torch.randn(2, 8, 32, 32, generator=g) * 4 for _ in range(2)]
    s16, t16 = [x.bfloat16() for x in s], [x.bfloat16() for x in t]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fka = fka_loss(s16, t16, tau=5.0)
        lka = lka_loss(s16[0].flatten(1), t16[0].flatten(1), tau=5.0)
    assert fka.dtype == torch.float32 and lka.dtype == torch.float32
    # the same as fp32 on the bf16-rounded inputs: only the inputs were rounded, not the softmax
    assert fka.item() == pytest.approx(fka_loss([x.float() for x in s16], [x.float() for x in t16], 5.0).item(),
                                       rel=1e-6)
    assert lka.item() == pytest.approx(lka_loss(s16[0].flatten(1).float(), t16[0].flatten(1).float(), 5.0).item(),
                                       rel=1e-6)


def test_precision_is_checked_and_auto_is_fp32_on_cpu():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ConfigError, match=r"config.precision: 'fp8' is out of range.*one of \('auto', 'fp32'"):
        from_dict(FinetuneConfig, {"precision": "fp8"})


def test_a_bf16_seed_job_on_cpu_trains_with_finite_losses(synthetic_prepared, tmp_path):
    from tests.test_train import base_cfg

    base = tmp_path / "base"
    fit(base_cfg(synthetic_prepared, base, precision="bf16"), progress=False)
    kw = ft_kwargs(synthetic_prepared, base / "model_final.pt", tmp_path / "ft", "dkan")
    m = fit(FinetuneConfig(**kw, precision="bf16"), progress=False)
    assert m["precision"] == "bf16" and (math.isnan(m["AP_all"]) or 0.0 <= m["AP_all"] <= 1.0)
    rows = [json.loads(line) for line in (tmp_path / "ft" / "history.jsonl").read_text().splitlines()]
    assert rows and all(math.isfinite(v) for r in rows for k, v in r.items() if k.startswith("loss"))
    assert {"loss_fka", "loss_lka"} <= set(rows[-1])
    assert json.loads((base / "metrics.json").read_text())["precision"] == "bf16"
