from __future__ import annotations

import math

import pytest
import torch

from dkan.distill.losses import fka_loss, lka_loss

# softmax([ln 3, 0]) = [0.75, 0.25] against uniform [0.5, 0.5]
KL_3_1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
# softmax([ln 2, 0, 0]) = [0.5, 0.25, 0.25] against uniform thirds
KL_2_1_1 = 0.5 * math.log(0.5 * 3) + 2 * 0.25 * math.log(0.25 * 3)


def test_zero_when_student_equals_teacher():
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    assert fka_loss(feats, [f.clone() for f in feats], tau=5.0).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(7, 3)
    assert lka_loss(logits, logits.clone(), tau=5.0).item() == pytest.approx(0.0, abs=1e-6)


def test_fka_hand_computed_and_normalised_by_batch_and_channels():
    s = torch.zeros(1, 1, 1, 2)
    t = torch.tensor([math.log(3.0), 0.0]).reshape(1, 1, 1, 2)
    assert fka_loss([s], [t], tau=1.0).item() == pytest.approx(KL_3_1, rel=1e-5)
    # the same map for 2 images x 3 channels: summed KL / (N * C) is unchanged
    assert fka_loss([s.expand(2, 3, 1, 2)], [t.expand(2, 3, 1, 2)], tau=1.0).item() == pytest.approx(KL_3_1, rel=1e-5)
    # levels are summed
    assert fka_loss([s, s], [t, t], tau=1.0).item() == pytest.approx(2 * KL_3_1, rel=1e-5)


def test_lka_hand_computed_batch_mean():
    s = torch.zeros(2, 3)
    t = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert lka_loss(s, t, tau=1.0).item() == pytest.approx(KL_2_1_1 / 2, rel=1e-5)


def test_tau_squared_scaling():
    # with logits scaled by tau the distributions are unchanged, so the loss grows by exactly tau^2
    s1, t1 = torch.zeros(1, 1, 1, 2), torch.tensor([math.log(3.0), 0.0]).reshape(1, 1, 1, 2)
    for tau in (2.0, 5.0):
        assert fka_loss([s1 * tau], [t1 * tau], tau=tau).item() == pytest.approx(tau**2 * KL_3_1, rel=1e-5)
        s2, t2 = torch.zeros(1, 3), torch.tensor([[math.log(2.0), 0.0, 0.0]])
        assert lka_loss(s2 * tau, t2 * tau, tau=tau).item() == pytest.approx(tau**2 * KL_2_1_1, rel=1e-5)
    # a higher temperature softens the same logits: smaller KL before the tau^2 factor
    s, t = torch.zeros(1, 3), torch.tensor([[4.0, 0.0, 0.0]])
    assert lka_loss(s, t, 4.0).item() / 16 < lka_loss(s, t, 1.0).item()


def test_gradients_reach_the_student_only():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, requires_grad=True)
    fka_loss([s], [t], tau=5.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
    sl, tl = torch.randn(5, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    lka_loss(sl, tl, tau=5.0).backward()
    assert sl.grad.abs().sum() > 0 and tl.grad is None


def test_no_rois_gives_zero_and_shape_mismatch_is_an_error():
    assert lka_loss(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3), 5.0).item() == 0.0
    with pytest.raises(ValueError, match="lka_loss"):
        lka_loss(torch.zeros(2, 3), torch.zeros(2, 4), 5.0)
