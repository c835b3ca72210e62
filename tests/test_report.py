from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dkan.cli import main
from sweeps.outputs.report import main_table, write_report
from sweeps.outputs.run_folder import ReportError, load_run

PNG = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))


def _agg(mean: float, std: float = 0.01, n: int = 2) -> dict:
    return {"mean": mean, "std": std, "n": n}


def _study(run: Path, split: int, shots: int, extra: dict | None = None) -> None:
    table = {
        f"TFA {shots}-shot": {
            "AP_base": _agg(0.5),
            "AP_novel": _agg(0.2),
            "AP_all": _agg(0.4),
            "AP/crazing": _agg(0.1),
        },
        f"DKAN {shots}-shot (best)": {
            "AP_base": _agg(0.52),
            "AP_novel": _agg(0.25),
            "AP_all": _agg(0.43),
            "AP/crazing": {"mean": None, "std": None, "n": 0},
        },
    }
    data = {
        "table": table,
        "per_seed": {
            "tfa": {"1": {"AP_all": 0.39}, "2": {"AP_all": 0.41}},
            "dkan": {"1": {"AP_all": 0.42}, "2": {"AP_all": 0.44}},
        },
        "best_hyperparameters": {"fka_weight": 1.0, "lka_weight": 0.01, "fka_tau": 5.0, "lka_tau": 5.0},
        "seed_finetunes_in_search": 6,
        **(extra or {}),
    }
    key = f"neu-det_split{split}_{shots}shot"
    (run / "results" / f"{key}.json").write_text(json.dumps(data))
    (run / "results" / f"{key}_per_class_ap.json").write_text(json.dumps({"TFA": {"crazing": 0.1}}))  # not a study
    (run / "results" / f"{key}.md").write_text("| table |")
    (run / "best_configs" / key).mkdir(parents=True)
    cfg = {
        "shots": shots,
        "base_checkpoint": "base_model.pt",
        "provenance": {"sweep": key, "mlflow_run_id": f"run{split}{shots}", "model_uri": f"models:/{key}/1"},
    }
    (run / "best_configs" / key / f"{key}.yaml").write_text(yaml.safe_dump(cfg))
    (run / "best_configs" / key / "model_seed1.pt").write_bytes(b"x")


@pytest.fixture
def run_dir(tmp_path) -> Path:
    run = tmp_path / "sweep"
    (run / "results").mkdir(parents=True)
    reference = {"DKAN 5-shot (paper)": {"AP_novel": 31.2, "AP_all": 0.55}}  # points or fractions: both read
    _study(
        run,
        1,
        5,
        {
            "reference": reference,
            "stats": {"verdict": "DKAN beats TFA on AP_novel (p=0.03, 2 seeds)", "p_value": 0.03},
            "extra_key": [1, 2],
        },
    )
    _study(run, 1, 1)
    _study(run, 2, 1)
    (run / "plots" / "neu-det_split1_5shot").mkdir(parents=True)
    PNG.save(run / "plots" / "neu-det_split1_5shot" / "pr_curves.png")
    return run


def test_one_table_across_studies_in_split_and_k_order(run_dir):
    run = load_run(run_dir)
    assert [s.key for s in run.studies] == ["neu-det_split1_1shot", "neu-det_split1_5shot", "neu-det_split2_1shot"]
    header, rows = main_table(run)
    assert header == ["dataset", "split", "K", "method", "AP_base", "AP_novel", "AP_all", "seeds"]
    assert rows[0] == ["neu-det", "split1", "1", "TFA 1-shot", "50.0 ± 1.0", "20.0 ± 1.0", "40.0 ± 1.0", "2"]
    ref = [r for r in rows if "(reference)" in r[3]]
    assert ref == [["neu-det", "split1", "5", "DKAN 5-shot (paper) (reference)", "n/a", "31.2", "55.0", ""]]
    assert len(rows) == 7


def test_report_html_is_self_contained_and_markdown_links_plots(run_dir):
    out_html, out_md = write_report(run_dir)
    page = out_html.read_text()
    assert "DKAN beats TFA on AP_novel (p=0.03, 2 seeds)" in page and "p_value: 0.03" in page
    assert "run15" in page and "neu-det_split2_1shot" in page and "model_seed1.pt" in page
    assert "fka_weight=1" in page and "6 seed fine-tunes" in page
    embedded = page.split("data:image/png;base64,")
    assert len(embedded) == 1 + 3  # the given PR plot + a seed-spread plot drawn for each study without plots
    png = base64.b64decode(embedded[1].split("'")[0])
    assert png.startswith(b"\x89PNG")
    assert "src='plots" not in page and 'src="plots' not in page  # nothing refers outside the file
    assert (run_dir / "plots" / "neu-det_split1_1shot" / "seed_spread_AP_all.png").is_file()
    assert not (run_dir / "plots" / "neu-det_split1_5shot" / "seed_spread_AP_all.png").exists()
    md = out_md.read_text()
    assert "![pr_curves](plots/neu-det_split1_5shot/pr_curves.png)" in md
    assert "| neu-det | split2 | 1 | DKAN 1-shot (best) | 52.0 ± 1.0 | 25.0 ± 1.0 | 43.0 ± 1.0 | 2 |" in md
    assert "mlflow_run_id = `run11`" in md


def test_html_escapes_names(run_dir):
    data = json.loads((run_dir / "results" / "neu-det_split1_1shot.json").read_text())
    data["table"]["<script>x</script>"] = data["table"].pop("TFA 1-shot")
    (run_dir / "results" / "neu-det_split1_1shot.json").write_text(json.dumps(data))
    out_html, _ = write_report(run_dir, make_plots=False)
    assert "<script>" not in out_html.read_text() and "&lt;script&gt;" in out_html.read_text()


def test_no_results_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x_per_class_ap.json").write_text("{}")
    with pytest.raises(ReportError, match="no study results.*Fix: pass the --out folder"):
        load_run(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "results" / "bad.json").write_text("{nope")
    with pytest.raises(ReportError, match="bad.json: not valid JSON"):
        load_run(tmp_path)


def test_script_and_cli_write_the_report(run_dir):
    r = subprocess.run(
        [sys.executable, "scripts/report.py", str(run_dir), "--no-plots"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 0, r.stderr
    assert "report.html" in r.stdout and (run_dir / "report.md").is_file()
    assert not (run_dir / "plots" / "neu-det_split1_1shot").exists()  # --no-plots drew nothing


def test_search_summary_names_the_failed_trials_and_counts_the_rest():
    from sweeps.core.progress import TrialReport
    from sweeps.core.selection import Candidate, Selection, TrialSummary
    from sweeps.outputs.results import search_lines

    def ran(n: int) -> TrialReport:
        return TrialReport.of_seeds("val", [(s, {"AP_all": 0.1}) for s in range(1, n + 1)])

    outs = [TrialSummary("a", "dkan", {"fka_weight": 1.0}, ran(3), None),
            TrialSummary("b", "dkan", {"fka_weight": 0.5}, ran(1), None),
            TrialSummary("c", "dkan", {"fka_weight": 9.0}, ran(1),
                         "RayTaskError: ...\nTrainingError: iteration 2: loss term fka is nan")]
    sel = Selection({"dkan": Candidate("dkan", "dkan", {}, outs[0])}, "dkan", (), tuple(outs), 3, 0.005, "")
    s = sel.search_summary()
    assert (s["trials"], s["all_seeds"], s["stopped_early"], len(s["failed"])) == (3, 1, 1, 1)
    assert sel.finetunes == 5
    line = "\n".join(search_lines(s, 3))
    assert line.startswith("search: 3 trials: 1 ran all 3 seeds, 1 stopped early, 1 failed")
    assert "failed (fka_weight=9) after 1 seed(s): TrainingError: iteration 2: loss term fka is nan" in line


def test_sentences_prefer_verdicts_and_name_failed_trials_and_voc07_reference_is_labelled():
    from sweeps.outputs.report import sentences
    from sweeps.outputs.run_folder import StudyResults

    data = {"verdict": ["no significant difference over 3 seeds (...): keep TFA"],
            "stats": {"dkan_vs_tfa": {"p_value": 0.25, "mean_diff": 0.01}},
            "search": {"trials": 3, "all_seeds": 1, "stopped_early": 1,
                       "failed": [{"hyperparameters": {"fka_weight": 9.0}, "error": "x\nTrainingError: loss is nan"}]}}
    lines = sentences(data)
    assert lines[0].startswith("no significant difference") and not any("p_value" in t for t in lines)
    assert "search: 3 trials: 1 ran every seed, 1 stopped early, 1 failed" in lines
    assert "  - failed (fka_weight=9) after ? seed(s): TrainingError: loss is nan" in lines
    ref = {"TFA (paper)": {"voc07/AP_base": {"mean": 0.595}, "voc07/AP_novel": {"mean": 0.18},
                           "voc07/AP_all": {"mean": 0.387}}}
    run = type("R", (), {"studies": [StudyResults("k", "neu-det", "split1", 5, {"table": {}, "reference": ref})]})()
    _, rows = main_table(run)
    assert rows == [["neu-det", "split1", "5", "TFA (paper) (reference) [VOC07 AP50]", "59.5", "18.0", "38.7", ""]]


def test_the_paper_rows_are_not_put_beside_synthetic_data(synthetic_prepared, tmp_path):
    from dkan.data.prepared import is_synthetic

    assert is_synthetic(synthetic_prepared)
    assert not is_synthetic(tmp_path)  # no dataset.yaml: treated as real data


def test_a_read_only_run_folder_is_named_as_such_and_out_writes_elsewhere(run_dir, tmp_path, capsys, monkeypatch):
    import os

    import dkan.errors

    real = os.access
    # a read-only file system (as root, chmod does not stop a write; access() does say EROFS)
    monkeypatch.setattr(dkan.errors.os, "access", lambda p, mode: False if Path(p) == run_dir else real(p, mode))
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"RUN_DIR {run_dir}: cannot write into {run_dir}" in err and "free space" not in err
    assert "Fix: pass --out DIR to write report.html and report.md elsewhere" in err
    assert not (run_dir / "report.html").exists()
    before = sorted(p for p in run_dir.rglob("*"))
    out = tmp_path / "elsewhere"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert sorted(p for p in run_dir.rglob("*")) == before  # the run folder only read
    md = (out / "report.md").read_text()
    assert "](../sweep/plots/neu-det_split1_5shot/pr_curves.png)" in md and (out / "report.html").is_file()
    assert (out / ".." / "sweep" / "plots" / "neu-det_split1_5shot" / "pr_curves.png").is_file()


def test_storage_errors_give_the_fix_that_fits():
    import errno

    from dkan.errors import storage_error

    ro = str(storage_error(OSError(errno.EROFS, "Read-only file system", "/x/report.html")))
    assert ro.startswith("cannot write /x/report.html: the file system is read-only. Fix: write elsewhere")
    assert "free space" not in ro
    assert "Fix: free space, or write elsewhere" in str(storage_error(OSError(errno.ENOSPC, "No space", "/x/a")))
