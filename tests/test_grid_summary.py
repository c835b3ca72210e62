"""What a recorded grid holds (sweeps/core/grid_summary.py, scripts/bench_grid.py), on grids whose numbers are
known: per-config means and spreads, the paired difference from the authors' defaults, rank agreement by rung."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from sweeps.core.grid import parse_grid, synthetic_grid
from sweeps.core.grid_summary import grid_table, summarize_grid

REPO = Path(__file__).resolve().parents[1]


def _set(d: dict, k: int, config: str, seed: int, rung: int, val: float, test: float) -> None:
    for c in d["cells"]:
        if (c["shots"], c["config"], c["seed"]) == (k, config, seed):
            c["points"][str(rung)] = {"val": {"AP_all": val}, "test": {"AP_all": test}}


def test_means_spreads_and_the_paired_difference_from_the_defaults_are_the_grids():
    d = synthetic_grid(shots=(5,), seeds=3, points=3)
    for s, (tfa, ref) in zip((1, 2, 3), ((0.10, 0.12), (0.20, 0.23), (0.30, 0.34))):
        _set(d, 5, "tfa", s, 60, tfa, tfa)
        _set(d, 5, "dkan_defaults", s, 60, ref, ref)
    out = summarize_grid(parse_grid(d, "known"))["5"]
    assert out["seeds"] == [1, 2, 3]
    tfa = out["configs"]["tfa"]
    assert tfa["test"]["mean"] == pytest.approx(0.20) and tfa["test"]["std"] == pytest.approx(0.10)
    assert tfa["vs_defaults"]["mean_diff"] == pytest.approx(-0.03) and tfa["vs_defaults"]["n"] == 3
    assert tfa["vs_defaults"]["ci95_low"] < -0.03 < tfa["vs_defaults"]["ci95_high"] < 0
    assert "vs_defaults" not in out["configs"]["dkan_defaults"]
    table = grid_table({"5": out})
    assert "| tfa | 20.0 ± 10.0 | 20.0 ± 10.0 | -3.0 [" in table and "| dkan_defaults |" in table


def test_a_short_rung_that_ranks_as_the_full_length_scores_one_and_a_reversed_one_minus_one():
    same = summarize_grid(parse_grid(synthetic_grid(seeds=3, points=4, noise=0.0, speeds=(0.3, 0.3)), "same"))
    assert all(v["mean"] == pytest.approx(1.0) for k in same for v in same[k]["rank_by_rung"].values())
    d = synthetic_grid(shots=(5,), seeds=2, points=3, noise=0.0)
    ids = [c["id"] for c in d["configs"]]
    for s in (1, 2):
        for i, c in enumerate(ids):  # at 15 iterations the order is the reverse of the full length's
            _set(d, 5, c, s, 15, 0.5 - 0.01 * i, 0.0)
            _set(d, 5, c, s, 60, 0.1 + 0.01 * i, 0.1 + 0.01 * i)
    out = summarize_grid(parse_grid(d, "reversed"))["5"]
    assert out["rank_by_rung"]["15"]["mean"] == pytest.approx(-1.0)
    assert out["val_ranks_test"] == pytest.approx(1.0)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_refuses_with_one_line_and_draws_a_panel_per_k(tmp_path, capsys):
    bench = _script("bench_grid")
    out = tmp_path / "out.json"
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(synthetic_grid(seeds=3, points=3)))
    empty = synthetic_grid(seeds=2, points=3)
    empty["cells"] = [c for c in empty["cells"] if c["config"] != "p03"]  # no seed holds every config
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    for argv in (["--grid", str(path), "--expect-dataset", "neu-det"], [], ["--grid", str(tmp_path / "none.json")],
                 ["--grid", str(tmp_path / "empty.json")]):
        assert bench.main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("bench_grid: ") and "Fix:" in err and "\n" not in err
        assert not out.exists()
    assert bench.main(["--grid", str(path), "--out", str(out), "--plot", str(tmp_path / "grid.png")]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["by_k"]) == {"5", "10"} and doc["by_k"]["5"]["seeds"] == [1, 2, 3]
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:
        assert im.format == "PNG" and im.height > im.width / 4  # two panels, one above the other
    assert not math.isnan(doc["by_k"]["10"]["rank_by_rung"]["30"]["mean"])
    assert "| p01 |" in capsys.readouterr().out
