from __future__ import annotations

import pytest
import torch

from dkan.config import ConfigError, DistillConfig
from dkan.distill.step import freeze, only_predictor_trains, train_step, weighted_total
from dkan.engine.setup import freeze_for_method, trainable_parameters
from dkan.model.checkpoint import CheckpointError, load_base_into
from dkan.model.cosine import CosineBoxPredictor
from dkan.model.cosine_inplace import InplaceCosineBoxPredictor
from dkan.model.detector import build_detector
from tests.conftest import tiny_model_config


def batch(n=2, size=128):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([1 + i % 2])} for i in range(n)
    ]
    return images, targets


def teacher_and_student(student_head="cosine"):
    torch.manual_seed(0)
    teacher = freeze(build_detector(tiny_model_config(), num_classes=2))
    student = build_detector(tiny_model_config(box_head=student_head), num_classes=4)
    load_base_into(student, teacher.state_dict(), n_base=2, generator=torch.Generator().manual_seed(0))
    freeze(student.backbone.body)
    student.train()
    student.backbone.body.eval()
    return teacher, student


def test_cosine_predictor_is_scaled_cosine_and_ignores_feature_norm():
    head = CosineBoxPredictor(8, 3, scale=20.0)
    x = torch.randn(5, 8)
    logits, deltas = head(x)
    assert logits.shape == (5, 3) and deltas.shape == (5, 12)
    assert logits.abs().max() <= 20.0 + 1e-4
    assert torch.allclose(head(3 * x)[0], logits, atol=1e-5)


def test_surgery_copies_base_rows_and_draws_novel_rows():
    teacher, student = teacher_and_student()
    t, s = teacher.state_dict(), student.state_dict()
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(s[key][:3], t[key]) and s[key].shape[0] == 5
    assert 0.003 < s[key][3:].std() < 0.03  # N(0, 0.01)
    box = "roi_heads.box_predictor.bbox_pred"
    assert torch.equal(s[f"{box}.weight"][:12], t[f"{box}.weight"]) and torch.equal(
        s[f"{box}.bias"][12:], torch.zeros(8)
    )
    assert torch.equal(s["backbone.fpn.layer_blocks.0.0.weight"], t["backbone.fpn.layer_blocks.0.0.weight"])
    with pytest.raises(CheckpointError, match="expected 4 rows? for 3 base classes|rows, expected"):
        load_base_into(student, t, n_base=3, generator=torch.Generator())


def test_shared_backbone_pass_equals_the_teachers_own():
    teacher, student = teacher_and_student()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        a, b = teacher.backbone.body(x), student.backbone.body(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_distill_step_at_start_fka_is_zero_and_lka_zero_for_an_identical_head():
    teacher, student = teacher_and_student(student_head="fc")
    torch.manual_seed(1)
    losses = train_step(student, *batch(), teacher=teacher, n_base=2, distill=DistillConfig())
    assert set(losses) == {
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_fka",
        "loss_lka",
    }
    assert losses["loss_fka"].item() == pytest.approx(0.0, abs=1e-5)  # student FPN == teacher FPN before any update
    assert losses["loss_lka"].item() == pytest.approx(0.0, abs=1e-5)  # same RoIs, same base rows


def test_teacher_gets_no_gradient_and_the_frozen_backbone_none():
    teacher, student = teacher_and_student()
    losses = train_step(
        student, *batch(), teacher=teacher, n_base=2, distill=DistillConfig(fka_weight=1.0, lka_weight=1.0)
    )
    assert losses["loss_lka"].item() > 0  # cosine student vs fc teacher differ
    weighted_total(losses, DistillConfig()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in student.backbone.body.parameters())
    assert student.backbone.fpn.layer_blocks[0][0].weight.grad is not None
    assert student.roi_heads.box_predictor.cls_score.weight.grad is not None


def test_raw_lka_student_logits_are_the_cosines_before_the_scale(monkeypatch):
    import dkan.distill.step as step

    teacher, student = teacher_and_student()
    seen = {}

    def capture(s_logits, t_logits, tau):
        seen.setdefault("student", []).append(s_logits.detach())
        seen.setdefault("teacher", []).append(t_logits.detach())
        return step_lka(s_logits, t_logits, tau)

    step_lka = step.lka_loss
    monkeypatch.setattr(step, "lka_loss", capture)
    for mode in ("scaled", "raw"):
        torch.manual_seed(1)  # the same RoIs for both
        train_step(student, *batch(), teacher=teacher, n_base=2, distill=DistillConfig(lka_student=mode))
    scaled, raw = seen["student"]
    assert scaled.shape[1] == 2 and scaled.abs().max() > 1.5  # 20 x cos: beyond a cosine's range
    assert raw.abs().max() <= 1.0 + 1e-5
    assert torch.allclose(raw * student.roi_heads.box_predictor.scale, scaled, atol=1e-5)
    assert torch.equal(seen["teacher"][0], seen["teacher"][1])  # the teacher's FC logits either way


def test_unfrozen_backbone_falls_back_to_two_passes():
    teacher, student = teacher_and_student()
    for p in student.backbone.body.parameters():
        p.requires_grad_(True)
    losses = train_step(student, *batch(), teacher=teacher, n_base=2, distill=DistillConfig())
    weighted_total(losses, DistillConfig()).backward()
    assert student.backbone.body.layer4[0].conv1.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_weights_are_applied_in_one_place():
    losses = {"loss_classifier": torch.tensor(1.0), "loss_fka": torch.tensor(2.0), "loss_lka": torch.tensor(3.0)}
    assert weighted_total(losses, DistillConfig(fka_weight=0.5, lka_weight=0.01)).item() == pytest.approx(1 + 1 + 0.03)


def test_mobilenet_builds_four_levels_and_anchor_count_is_checked():
    m = build_detector(tiny_model_config(backbone="mobilenet_v3_large"), 3).eval()
    with torch.no_grad():
        assert list(m.backbone(torch.zeros(1, 3, 128, 128))) == ["0", "1", "2", "3", "pool"]
    with pytest.raises(ConfigError, match="one size per map"):
        build_detector(tiny_model_config(anchor_sizes=[16, 32]), 3)
    with pytest.raises(ConfigError, match="neither a file nor a torchvision weights name"):
        build_detector(tiny_model_config(weights="no_such_weights"), 3)


def _student(method: str):
    torch.manual_seed(0)
    student = build_detector(tiny_model_config(box_head="cosine"), num_classes=4)
    freeze_for_method(student, method)
    student.train()
    student.backbone.body.eval()
    return student


def test_trainable_parameters_per_method():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    tfa, plain, dkan = _student("tfa"), _student("plain"), _student("dkan")
    assert trainable_parameters(tfa) == n(tfa.roi_heads.box_predictor)  # the last layer only
    assert {name.split(".")[0] + "." + name.split(".")[1] for name, p in tfa.named_parameters() if p.requires_grad} == {
        "roi_heads.box_predictor"
    }
    assert trainable_parameters(plain) == n(plain) - n(plain.backbone.body)  # FPN, RPN, RoI head
    assert trainable_parameters(dkan) == trainable_parameters(plain)
    assert trainable_parameters(
        freeze_for_method(build_detector(tiny_model_config(box_head="cosine"), 4), "plain", freeze_backbone=False)
    ) == n(plain)
    assert only_predictor_trains(tfa) and not only_predictor_trains(plain)
    with pytest.raises(ConfigError, match="distill.method: 'tf'"):
        freeze_for_method(tfa, "tf")


def test_tfa_step_under_no_grad_equals_a_naive_step(monkeypatch):
    import dkan.distill.step as step

    def run(naive: bool):
        if naive:
            monkeypatch.setattr(step, "only_predictor_trains", lambda m: False)
        student = _student("tfa")
        torch.manual_seed(3)
        losses = train_step(student, *batch())
        weighted_total(losses, None).backward()
        grads = {k: p.grad.clone() for k, p in student.named_parameters() if p.grad is not None}
        return {k: v.detach() for k, v in losses.items()}, grads

    fast_losses, fast_grads = run(naive=False)
    naive_losses, naive_grads = run(naive=True)
    assert set(fast_grads) == {
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
    }
    assert set(naive_grads) == set(fast_grads) and all(torch.equal(fast_grads[k], naive_grads[k]) for k in fast_grads)
    assert all(torch.equal(fast_losses[k], naive_losses[k]) for k in fast_losses)


def test_cosine_inplace_same_logits_different_gradient():
    torch.manual_seed(0)
    graph, inplace = CosineBoxPredictor(8, 3), InplaceCosineBoxPredictor(8, 3)
    inplace.load_state_dict(graph.state_dict())
    w0 = graph.cls_score.weight.detach().clone()  # rows of norm ~0.03 (N(0, 0.01))
    x, g = torch.randn(5, 8), torch.randn(5, 3)
    lg, li = graph(x)[0], inplace(x)[0]
    assert torch.allclose(lg, li, atol=1e-5)
    assert torch.allclose(inplace.cls_score.weight.norm(dim=1), torch.ones(3))  # renormalised in place
    (lg * g).sum().backward()
    (li * g).sum().backward()
    x_hat = torch.nn.functional.normalize(x, dim=1)
    raw = 20.0 * g.t() @ x_hat  # d logits / d w for rows used as they are: [3, 8]
    assert torch.allclose(inplace.cls_score.weight.grad, raw, atol=1e-5)
    # inside the graph: projected off each row's direction and divided by the row's norm
    r = w0.norm(dim=1, keepdim=True)
    u = w0 / r
    expected = (raw - (raw * u).sum(1, keepdim=True) * u) / r
    assert torch.allclose(graph.cls_score.weight.grad, expected, atol=1e-4)
    assert graph.cls_score.weight.grad.norm() > 10 * inplace.cls_score.weight.grad.norm()  # small rows learn faster
    m = build_detector(tiny_model_config(box_head="cosine", cosine_norm="inplace"), 3)
    assert isinstance(m.roi_heads.box_predictor, InplaceCosineBoxPredictor)
    with pytest.raises(ConfigError, match="model.cosine_norm"):
        build_detector(tiny_model_config(box_head="cosine", cosine_norm="sphere"), 3)


def test_pretrained_file_freezes_stem_and_first_stage_and_multiscale_sizes(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18().state_dict(), tmp_path / "r18.pt")
    m = build_detector(tiny_model_config(weights=str(tmp_path / "r18.pt"), frozen_stages=1), 3)
    body = m.backbone.body
    assert not any(p.requires_grad for p in [*body.conv1.parameters(), *body.layer1.parameters()])
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert all(
        p.requires_grad for p in build_detector(tiny_model_config(frozen_stages=1), 3).backbone.body.parameters()
    )
    ms = build_detector(tiny_model_config(train_min_sizes=[96, 112, 128]), 3)
    assert ms.transform.min_size == (96, 112, 128)  # torchvision draws one per image in training, tests at the last
    with pytest.raises(ConfigError, match="must end with model.min_size"):
        build_detector(tiny_model_config(train_min_sizes=[128, 96]), 3)
