from __future__ import annotations

import subprocess
import sys

import pytest

from dkan.cli import main, parse_int_list


def test_int_lists():
    assert parse_int_list("1-10") == list(range(1, 11))
    assert parse_int_list("5,1,3") == [1, 3, 5]
    assert parse_int_list("1-3,7") == [1, 2, 3, 7]
    with pytest.raises(Exception, match="not a list of integers"):
        parse_int_list("3-1")


@pytest.mark.parametrize("cmd", [[], ["prepare-data"], ["base-train"], ["finetune"], ["evaluate"]])
def test_help(cmd):
    r = subprocess.run([sys.executable, "-m", "dkan.cli", *cmd, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: dkan" in r.stdout


def test_prepare_data_prints_summary_and_is_idempotent(tiny_voc, tmp_path, capsys):
    args = ["prepare-data", "--source", str(tiny_voc), "--out", str(tmp_path / "o"), "--seeds", "1-2", "--shots", "1,2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "few-shot files: seeds 1-2, K 1,2: 8 files" in out and "written:" in out
    assert main(args) == 0
    assert "up to date:" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["prepare-data", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope: not found" in err and "Traceback" not in err
