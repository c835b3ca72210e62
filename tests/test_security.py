"""Files other people can write never run code or steer writes: crafted checkpoints, hostile class names."""

from __future__ import annotations

import ast
import os
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dkan.cli import main
from dkan.config import BaseTrainConfig, DataConfig, DistillConfig, FinetuneConfig, OptimConfig
from dkan.data.fewshot import class_file_part, fewshot_path
from dkan.data.prepare import PrepareConfig, prepare_data
from dkan.engine.train import _resume, _state, fit
from dkan.errors import DataError
from dkan.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.conftest import make_voc, tiny_model_config

DKAN_SRC = Path(__file__).resolve().parents[1] / "dkan"


class _RunsCode:
    """Unpickling this runs a shell command: the classic crafted-.pt attack."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """(crafted checkpoint that looks like a dkan one, the file its payload would create)."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    meta = {"stage": "base", "classes": ["crazing", "inclusion", "patches"], "base": [], "novel": [], "config": {},
            "iteration": 0}
    torch.save({"model": {}, "meta": meta, "payload": _RunsCode(marker)}, path)
    return path, marker


def test_the_crafted_checkpoint_really_runs_code_when_unpickled(evil):
    path, marker = evil  # proves the attack the other tests guard against is live
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_code(evil):
    path, marker = evil
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load checkpoint: it holds Python objects .*system"
                                              r".*Fix: "):
        load_checkpoint(path)
    assert not marker.exists()


def test_evaluate_cli_refuses_code(evil, capsys):
    path, marker = evil
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: refused to load model checkpoint" in err and "Fix:" in err and "Traceback" not in err
    assert not marker.exists()


def test_finetune_base_checkpoint_refuses_code(evil, synthetic_prepared, tmp_path):
    path, marker = evil
    cfg = FinetuneConfig(
        model=tiny_model_config(box_head="cosine"), data=DataConfig(root=str(synthetic_prepared), split=1),
        optim=OptimConfig(lr=0.01, batch_size=2, iterations=1, warmup_iters=0), base_checkpoint=str(path),
        shots=2, out=str(tmp_path / "ft"), distill=DistillConfig(method="dkan"),
    )
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load base checkpoint"):
        fit(cfg, progress=False)
    assert not marker.exists() and not (tmp_path / "ft" / "model_final.pt").exists()


def test_resume_refuses_a_crafted_last_pt(evil, synthetic_prepared, tmp_path):
    path, marker = evil
    out = tmp_path / "run"
    out.mkdir()
    path.rename(out / "last.pt")
    cfg = BaseTrainConfig(
        model=tiny_model_config(), data=DataConfig(root=str(synthetic_prepared), split=1),
        optim=OptimConfig(lr=0.01, batch_size=2, iterations=2, warmup_iters=0), out=str(out),
    )
    with pytest.raises(CheckpointError, match=r"last\.pt: refused to load resume checkpoint"):
        fit(cfg, resume=True, progress=False)
    assert not marker.exists() and not (out / "model_final.pt").exists()


@pytest.mark.parametrize("payload, got", [
    ({"backbone.weight": torch.zeros(2)}, r"a mapping with keys \['backbone.weight'\]"),
    ([1, 2, 3], "a list"),
    ({"model": {}, "meta": {"stage": "base"}}, r"'meta' without \['classes'"),
])
def test_not_a_dkan_checkpoint(tmp_path, capsys, payload, got):
    path = tmp_path / "plain.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"plain\.pt: not a dkan checkpoint: expected a mapping with 'model' and "
                                              rf"'meta' .*got {got}.*Fix: "):
        load_checkpoint(path)
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    assert "not a dkan checkpoint" in capsys.readouterr().err


def test_every_torch_load_in_dkan_is_weights_only():
    calls = []
    for file in DKAN_SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                safe = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                calls.append((f"{file.name}:{node.lineno}", safe))
    assert calls, "expected torch.load calls in dkan/"
    assert [c for c, safe in calls if not safe] == []


def test_resume_state_is_plain_and_restores_every_rng(tmp_path):
    """last.pt holds tensors and plain types only, and resuming restores python, numpy and torch RNGs."""
    student = torch.nn.Linear(3, 2)
    job = SimpleNamespace(student=student, stage="base", classes=("a", "b"), base=("a", "b"), novel=())
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    student(torch.ones(1, 3)).sum().backward()
    opt.step()  # momentum buffers in the optimizer state
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    np.random.randn()  # a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "last.pt", _state(job, BaseTrainConfig(), opt, 7))
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    fresh = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    assert _resume(tmp_path / "last.pt", job, BaseTrainConfig(), fresh) == 7  # loaded with weights_only=True
    assert (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item()) == expected
    momentum = [o.state_dict()["state"][0]["momentum_buffer"] for o in (fresh, opt)]
    assert torch.equal(*momentum)


def test_resume_from_a_final_model_is_a_clear_error(tmp_path):
    job = SimpleNamespace(student=torch.nn.Linear(3, 2), stage="base", classes=("a",), base=("a",), novel=())
    meta = {"stage": "base", "classes": ["a"], "base": ["a"], "novel": [], "config": {}, "iteration": 4}
    save_checkpoint(tmp_path / "last.pt", {"model": job.student.state_dict(), "meta": meta})
    with pytest.raises(CheckpointError, match=r"last\.pt: not a resume checkpoint.*Fix: delete it"):
        _resume(tmp_path / "last.pt", job, BaseTrainConfig(), torch.optim.SGD(job.student.parameters(), lr=0.1))


# --- class names into file names ---


@pytest.mark.parametrize("name", ["../../x/ESCAPED", "a/b", "a\\b", "..", "a..b", ".hidden", "a\0b", "", "  "])
def test_unsafe_class_names_are_refused(name):
    with pytest.raises(DataError, match=r"ann\.xml, class .*the class name .*Fix: rename the class"):
        class_file_part(name, "ann.xml")
    with pytest.raises(DataError):
        fewshot_path(Path("out/annotations"), 1, 5, name)


@pytest.mark.parametrize("name", ["rolled-in_scale", "pitted surface", "v1.2", "crazing"])
def test_ordinary_class_names_pass(name):
    assert class_file_part(name, "ann.xml") == name
    assert fewshot_path(Path("a"), 1, 5, name).parent == Path("a/fewshot-split/1")


def test_voc_class_name_cannot_write_outside_out(tmp_path):
    images = {f"{c}_{i}": [(c, (1, 1, 20, 20))] for c in "ab" for i in range(3)}
    src = make_voc(tmp_path / "voc", images | {"b_3": [("../../x/ESCAPED", (1, 1, 9, 9))]})
    out = tmp_path / "work" / "deep" / "out"
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(DataError, match=r"b_3\.xml, class '\.\./\.\./x/ESCAPED': the class name holds a path separator"
                                        r".*Fix: rename the class"):
        prepare_data(PrepareConfig(out=str(out), source=str(src), seeds=[1], shots=[1]))
    assert not list(tmp_path.rglob("*ESCAPED*")), "nothing may be written through the class name"
    assert {p for p in tmp_path.rglob("*")} - before <= {tmp_path / "work", tmp_path / "work" / "deep"}
    assert not out.exists()


def test_classes_flag_with_an_unsafe_name_is_refused(tiny_voc, tmp_path):
    with pytest.raises(DataError, match=r"--classes, class '\.evil'"):
        prepare_data(PrepareConfig(out=str(tmp_path / "o"), source=str(tiny_voc), seeds=[1], shots=[1],
                                   classes=["alpha", "beta-x_y", ".evil"]))
    assert not (tmp_path / "o").exists()
