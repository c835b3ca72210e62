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
