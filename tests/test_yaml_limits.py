"""Every YAML file a user hands in goes through one reader (dkan.yamlio) with the same limits: a size cap,
no anchors or aliases (a 1 KB "billion laughs" file stands for billions of values), shallow nesting; and
an error message shows a bad value cut short, never its whole repr."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dkan import yamlio
from dkan.cli import main as dkan
from dkan.errors import shown
from sweeps.run_tune import main as sweep


def laughs(depth: int = 9) -> list[str]:
    """Flow items, each an anchor over nine aliases of the one before: the last stands for 9**depth strings."""
    items = ['&l0 [' + ",".join(['"lol"'] * 9) + ']']
    items += [f'&l{i} [{",".join([f"*l{i - 1}"] * 9)}]' for i in range(1, depth)]
    return items


BOMB = "[" + ", ".join(laughs()) + "]"  # about 400 bytes; built out: 9**9 strings


def _one_clear_line(err: str, path: Path | str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(path) in lines[0] and "Fix:" in lines[0], err
    assert "Traceback" not in err


def _sweep_dry(prepared: Path, tmp_path: Path, *extra: str) -> int:
    return sweep(["--data", str(prepared), "--shots", "2", "--seeds", "1-2", "--out", str(tmp_path / "s"),
                  "--cache-dir", str(tmp_path / "c"), "--dry-run", *extra])


@pytest.mark.parametrize("flag, text", [
    ("--search-space", f"distill.fka_weight: {{choices: {BOMB}}}\n"),
    ("--points", f"- {{distill.fka_weight: {BOMB}}}\n"),
    ("--class-splits", f"mine: {{base: {BOMB}}}\n"),
])
def test_a_billion_laughs_file_is_refused_by_the_sweep(synthetic_prepared, tmp_path, capsys, flag, text):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text)
    assert len(text) < 1024
    assert _sweep_dry(synthetic_prepared, tmp_path, flag, str(bomb)) == 2
    err = capsys.readouterr().err
    _one_clear_line(err, bomb)
    assert "anchors and aliases are not accepted" in err and "line 1" in err
    assert not (tmp_path / "s").exists()


def test_a_billion_laughs_file_is_refused_by_every_dkan_reader(synthetic_prepared, tmp_path, capsys):
    import shutil

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(f"optim: {{lr_steps: {BOMB}}}\n")
    # --config of a training job; --class-splits of prepare-data
    assert dkan(["finetune", "--profile", "cpu-quick", "--config", str(bomb), "--print-config"]) == 2
    _one_clear_line(capsys.readouterr().err, bomb)
    splits = tmp_path / "splits.yaml"
    splits.write_text(f"mine: {{base: {BOMB}}}\n")
    assert dkan(["prepare-data", "--synthetic", "--out", str(tmp_path / "p"), "--class-splits", str(splits)]) == 2
    _one_clear_line(capsys.readouterr().err, splits)
    assert not (tmp_path / "p").exists()
    # a bundle's config.yaml
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.yaml").write_text(bomb.read_text())
    (bundle / "model.pt").write_bytes(b"")
    image = next(synthetic_prepared.parent.rglob("*.jpg"))
    assert dkan(["predict", "--bundle", str(bundle), str(image), "--out", str(tmp_path / "d.json")]) == 2
    _one_clear_line(capsys.readouterr().err, bundle / "config.yaml")
    # a prepared dataset's dataset.yaml
    data = tmp_path / "data"
    shutil.copytree(synthetic_prepared, data)
    (data / "dataset.yaml").write_text(f"classes: {BOMB}\nimage_root: images\n")
    assert dkan(["inspect-data", str(data)]) == 2
    err = capsys.readouterr().err
    _one_clear_line(err, data / "dataset.yaml")
    assert "malformed: an anchor (&name)" in err


def test_a_billion_laughs_set_value_is_refused(capsys):
    assert dkan(["finetune", "--profile", "cpu-quick", "--set", f"optim.lr_steps={BOMB}", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set") and "not a plain YAML value (an anchor (&name)" in err
    assert "Traceback" not in err and len(err) < 2000


def test_a_13_mb_search_space_is_refused_by_its_size(synthetic_prepared, tmp_path, capsys):
    big = tmp_path / "space.yaml"
    big.write_text("distill.fka_weight: {choices: [" + ",".join(f"{i * 1e-6:.10f}" for i in range(1, 10**6 + 1))
                   + "]}\n")
    assert big.stat().st_size > 12 * 2**20
    assert _sweep_dry(synthetic_prepared, tmp_path, "--search-space", str(big)) == 2
    err = capsys.readouterr().err
    _one_clear_line(err, big)
    assert re.search(r"search-space file of 12\.\d MiB, above the 1 MiB limit", err)


@pytest.mark.parametrize("text, said", [
    ("a: &x 1\nb: 2\n", "an anchor (&name) at line 1"),  # an anchor alone is refused too: only aliases use one
    ("a: {x: 1}\nb:\n  <<: *x\n", "an alias (*name) at line 3"),
    ("a: &x {k: 1}\nb:\n  <<: *x\n", "an anchor (&name) at line 1"),
    ("[" * 40 + "]" * 40, "nested more than 32 levels deep at line 1"),
    ("day: 2026-13-45\n", "not plain YAML (ValueError: month must be in 1..12)"),
    ("n: " + "9" * 5000 + "\n", "not plain YAML (ValueError: Exceeds the limit"),
    ("a: 1\n---\nb: 2\n", "not plain YAML (expected a single document"),
    ("!!python/object/apply:os.system ['echo hi']\n", "not plain YAML (could not determine a constructor"),
])
def test_loads_refuses_what_is_not_plain_bounded_yaml(text, said):
    with pytest.raises(yamlio.BadYaml) as e:
        yamlio.loads(text, "f.yaml")
    assert said in str(e.value) and str(e.value).startswith("f.yaml: ") and "\n" not in str(e.value)


def test_read_names_missing_non_utf8_and_reads_plain_files_as_safe_load_does(synthetic_prepared, tmp_path):
    with pytest.raises(yamlio.BadYaml, match="points file not found. Fix: check the path"):
        yamlio.read(tmp_path / "nothing.yaml", "points file")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(yamlio.BadYaml, match=r"not UTF-8 text \(byte 9\)"):
        yamlio.read(bad)
    manifest = synthetic_prepared / "dataset.yaml"
    assert yamlio.read(manifest) == yaml.safe_load(manifest.read_text())
    (tmp_path / "empty.yaml").write_text("")
    assert yamlio.read(tmp_path / "empty.yaml") is None


def test_a_bad_value_is_shown_cut_short_without_building_its_repr():
    deep: list = ["lol"]
    for _ in range(30):
        deep = [deep] * 10  # 10**30 items when walked: repr() would never end
    for value in (deep, "x" * 10**7, {str(i): list(range(1000)) for i in range(1000)}):
        text = shown(value)
        assert len(text) <= 80 and "..." in text
    assert shown([0.5, "lr"]) == "[0.5, 'lr']"


def test_every_yaml_read_and_write_in_the_code_goes_through_yamlio():
    """One reader with the limits; one writer that never emits an alias (a list held twice in the data would
    otherwise be written as &id001 / *id001, and the reader would refuse the tool's own file)."""
    root = Path(__file__).resolve().parents[1]
    calls = re.compile(r"yaml\.(safe_load|load|full_load|unsafe_load|parse|compose|safe_dump|dump)\(")
    files = [p for d in ("dkan", "sweeps", "scripts") for p in sorted((root / d).rglob("*.py"))
             if p.name != "yamlio.py"]
    found = [f"{p.relative_to(root)}:{i}" for p in files
             for i, line in enumerate(p.read_text().splitlines(), 1) if calls.search(line)]
    assert found == []
    shared = ["a", "b"]
    text = yamlio.dumps({"classes": shared, "class_splits": {"mine": {"base": shared, "novel": []}}})
    assert "&" not in text and yamlio.loads(text, "t") == {"classes": shared,
                                                          "class_splits": {"mine": {"base": shared, "novel": []}}}
