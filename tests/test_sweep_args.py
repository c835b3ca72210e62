"""Bad sweep options: each refused before any work (exit 2), naming the value and the fix."""

from __future__ import annotations

import pytest

from sweeps.run_tune import main


@pytest.mark.parametrize(
    "option, value, said",
    [
        ("--trials", "0", "--trials 0: must be at least 1"),
        ("--base-iterations", "0", "--base-iterations 0: must be at least 1"),
        ("--finetune-iterations", "0", "--finetune-iterations 0: must be at least 1"),
        ("--grace-seeds", "0", "--grace-seeds 0: must be at least 1"),
        ("--max-concurrent", "0", "--max-concurrent 0: must be at least 1"),
        ("--max-concurrent", "-1", "--max-concurrent -1: must be at least 1"),
        ("--reduction-factor", "1", "--reduction-factor 1: must be at least 2"),
        ("--workers", "0", "--workers 0: must be at least 1"),
        ("--num-cpus", "0", "--num-cpus 0: must be at least 1"),
        ("--cpus-per-worker", "0", "--cpus-per-worker 0"),
        ("--max-failures", "-1", "--max-failures -1: must be at least 0"),
        ("--paired-alpha", "0", "--paired-alpha 0.0: a test level lies in (0, 1)"),
    ],
)
def test_out_of_range_numbers_are_refused(option, value, said, tmp_path, capsys):
    assert main(["--out", str(tmp_path / "s"), option, value]) == 2
    err = capsys.readouterr().err
    assert said in err and "Fix:" in err
    assert not (tmp_path / "s").exists()  # nothing was started or written


def test_cloud_out_is_refused_not_made_a_local_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--out", "s3://bucket/x"]) == 2
    err = capsys.readouterr().err
    assert "s3://bucket/x" in err and "mount" in err and "Fix:" in err
    assert not (tmp_path / "s3:").exists()


def test_out_with_both_quote_characters_is_refused(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "it's \"x\"")]) == 2
    assert "quote" in capsys.readouterr().err


def test_resume_without_sweep_state_is_an_error_not_a_fresh_start(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--out", str(tmp_path / "empty"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and str(tmp_path / "empty") in err


def test_database_uri_without_its_driver_fails_before_ray(synthetic_prepared, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg2" else real(name, *a))
    uri = "postgresql://alice:s3cret@db.example:5432/mlflow"
    argv = ["--data", str(synthetic_prepared), "--shots", "2", "--seeds", "1-2", "--out", str(tmp_path / "s"),
            "--tracking-uri", uri]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "psycopg2" in err and "pip install psycopg2" in err
    assert "s3cret" not in err and "alice:***@db.example" in err  # the password is never shown
    import ray

    assert not ray.is_initialized()


@pytest.mark.parametrize(
    "extra, said",
    [
        (["--candidates", "tfa,bogus"], "--candidates tfa,bogus: choose each of tfa, plain, dkan at most once"),
        (["--candidates", "tfa,tfa"], "choose each of tfa, plain, dkan at most once"),
        (["--select-margin", "-1"], "--select-margin -1.0: AP points in [0, 100)"),
        (["--objective", "pareto", "--protocol", "paper"], "--objective pareto with --protocol paper"),
        (["--objective", "pareto", "--min-retention", "0"], "--min-retention 0.0: a share of the base model's AP_B"),
        (["--objective", "pareto", "--min-retention", "1.5"], "in (0, 1]"),
        (["--min-retention", "0.9"], "--min-retention: only the Pareto search uses it"),
        (["--dry-run", "--resume"], "--resume with --dry-run"),
    ],
)
def test_bad_candidates_selection_and_objective_are_refused(extra, said, synthetic_prepared, tmp_path, capsys):
    out = tmp_path / "s"
    if "--resume" in extra:
        (out / "ray_results").mkdir(parents=True)
    argv = ["--data", str(synthetic_prepared), "--shots", "2", "--seeds", "1-2", "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_a_bad_search_space_is_refused_before_any_work(synthetic_prepared, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lrr: {low: 0.001, high: 0.1, log: true}\n")
    argv = ["--data", str(synthetic_prepared), "--shots", "2", "--seeds", "1-2", "--out", str(tmp_path / "s"),
            "--search-space", str(space)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{space}: optim.lrr is not a key of the fine-tune config" in err and "Fix:" in err
    assert not (tmp_path / "s").exists()


def test_dry_run_prints_the_checked_plan_starts_no_ray_and_writes_nothing(synthetic_prepared, tmp_path, capsys):
    import ray

    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {low: 0.001, high: 0.05, log: true}\n")
    out, cache = tmp_path / "s", tmp_path / "cache"
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["--data", str(synthetic_prepared), "--shots", "2", "--seeds", "1-2", "--out", str(out), "--cache-dir",
            str(cache), "--search-space", str(space), "--candidates", "tfa,dkan", "--dry-run"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "dkan-sweep plan" in said and "candidates  tfa, dkan_defaults, dkan on val" in said
    assert "optim.lr log [0.001, 0.05]" in said and "nothing was started or written" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not ray.is_initialized()
    # the embedded default too: its data set is made for the check in a temporary folder, then removed
    assert main(["--out", str(out), "--cache-dir", str(cache), "--shots", "1", "--dry-run"]) == 0
    assert "(synthetic)" in capsys.readouterr().out and not cache.exists() and not out.exists()
