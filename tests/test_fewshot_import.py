"""--fewshot-from: TFA / mmfewshot list layouts, both readings, and the checks."""

from __future__ import annotations

import pytest
import yaml

from dkan.cli import main
from dkan.data.fewshot_import import parse_list_name
from dkan.data.prepare import PrepareConfig, prepare_data
from dkan.data.prepared import PreparedData
from dkan.errors import DataError

CLASSES = ("alpha", "beta-x_y")


def _trainval_stems(tiny_voc, tmp_path):
    """Prepare once without lists to learn which images are in trainval (the split is seeded)."""
    probe = tmp_path / "probe"
    prepare_data(PrepareConfig(out=str(probe), source=str(tiny_voc), seeds=[1], shots=[1]))
    tv = PreparedData.load(probe).split("trainval")
    return {
        c: sorted(im["file_name"][:-4] for im in tv["images"] if im["file_name"].startswith(c + "_")) for c in CLASSES
    }


def _write_lists(root, layout: str, lists: dict[tuple[int, int, str], list[str]]):
    for (seed, k, cls), lines in lists.items():
        if layout == "tfa":  # seed<N>/box_<K>shot_<class>_train.txt, seed 0 at the top
            path = root / (f"seed{seed}" if seed else "") / f"box_{k}shot_{cls}_train.txt"
        else:  # mmfewshot-style: seed in the name, under benchmark_<K>shot/
            path = root / f"benchmark_{k}shot" / f"box_{k}shot_{cls}_trainval_seed{seed}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("layout", ["tfa", "named"])
def test_each_layout_imports_the_listed_images_exactly(tiny_voc, tmp_path, layout):
    stems = _trainval_stems(tiny_voc, tmp_path)
    a, b = stems["alpha"], stems["beta-x_y"]
    # ids as bare stems, file names and VOC-style paths; the order given is kept
    lists = {
        (0, 2, "alpha"): [a[3], f"{a[0]}.jpg"],
        (0, 2, "beta-x_y"): [f"VOC2007/JPEGImages/{b[1]}.jpg", b[2]],
        (1, 2, "alpha"): [a[1], a[2]],
        (1, 2, "beta-x_y"): [b[0], b[4]],
    }
    src = tmp_path / "lists"
    _write_lists(src, layout, lists)
    out = tmp_path / "out"
    res = prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), fewshot_from=str(src)))
    assert "imported from" in res.summary
    data = PreparedData.load(out)
    for (seed, k, cls), lines in lists.items():
        shots = data.fewshot(seed + 1, k)  # TFA's seed 0 (top-level files) is dkan's seed 1, and so on
        got = [im["file_name"] for im in shots["images"]]
        want = [ln.rsplit("/", 1)[-1].removesuffix(".jpg") + ".jpg" for ln in lines]
        assert [g for g in got if g.startswith(cls + "_")] == want
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["fewshot_import"]["reading"] == "all" and meta["fewshot_import"]["files"] == 4
    assert meta["config"]["seeds"] == [1, 2] and meta["config"]["shots"] == [2]
    assert meta["fewshot_import"]["seed_map"] == {0: 1, 1: 2}


def test_all_reading_keeps_every_box_and_sample_draws_k_with_the_seed(tiny_voc, tmp_path):
    stems = _trainval_stems(tiny_voc, tmp_path)
    # images whose number is a multiple of 3 hold two boxes (tiny_voc); list two such alpha images for K=1
    two = [s for s in stems["alpha"] if int(s.split("_")[1]) % 3 == 0][:2]
    lists = {(1, 1, "alpha"): two, (1, 1, "beta-x_y"): stems["beta-x_y"][:1]}
    src = tmp_path / "lists"
    _write_lists(src, "tfa", lists)
    counts = {}
    for reading in ("all", "sample"):
        out = tmp_path / reading
        prepare_data(PrepareConfig(out=str(out), source=str(tiny_voc), fewshot_from=str(src), fewshot_reading=reading))
        shots = PreparedData.load(out).fewshot(1, 1)
        alpha = [a for a in shots["annotations"] if a["category_id"] == 1]
        assert sorted(im["file_name"][:-4] for im in shots["images"] if im["file_name"].startswith("alpha")) == sorted(
            two
        )
        counts[reading] = len(alpha)
        assert yaml.safe_load((out / "dataset.yaml").read_text())["fewshot_import"]["reading"] == reading
    assert counts == {"all": 4, "sample": 1}
    again = tmp_path / "again"
    prepare_data(PrepareConfig(out=str(again), source=str(tiny_voc), fewshot_from=str(src), fewshot_reading="sample"))
    assert PreparedData.load(again).fewshot(1, 1) == PreparedData.load(tmp_path / "sample").fewshot(1, 1)  # seeded


def test_list_names_parse_seed_k_and_class_with_underscores(tmp_path):
    root = tmp_path
    assert parse_list_name(root / "seed3" / "box_10shot_rolled-in_scale_train.txt", root) == (3, 10, "rolled-in_scale")
    assert parse_list_name(root / "box_5shot_pitted_surface_trainval_seed7.txt", root) == (7, 5, "pitted_surface")
    assert parse_list_name(root / "x" / "box_5shot_crazing_seed2_train.txt", root) == (2, 5, "crazing")
    assert parse_list_name(root / "box_1shot_crazing_train.txt", root) == (0, 1, "crazing")
    assert parse_list_name(root / "readme.txt", root) is None


def test_bad_lists_are_named_with_the_fix(tiny_voc, tmp_path):
    stems = _trainval_stems(tiny_voc, tmp_path)
    src = tmp_path / "lists"
    _write_lists(src, "tfa", {(1, 1, "alpha"): stems["alpha"][:1]})
    with pytest.raises(DataError, match=r"seed 1, K=1 has no list for classes \['beta-x_y'\]"):
        prepare_data(PrepareConfig(out=str(tmp_path / "o1"), source=str(tiny_voc), fewshot_from=str(src)))
    _write_lists(src, "tfa", {(1, 1, "beta-x_y"): ["nope_1"]})
    with pytest.raises(DataError, match=r"box_1shot_beta-x_y_train.txt:1: image 'nope_1' is not an image"):
        prepare_data(PrepareConfig(out=str(tmp_path / "o2"), source=str(tiny_voc), fewshot_from=str(src)))
    test_stem = next(f"{c}_{n}" for c in CLASSES for n in range(1, 11) if f"{c}_{n}" not in stems[c])
    _write_lists(src, "tfa", {(1, 1, "beta-x_y"): [test_stem]})
    with pytest.raises(DataError, match="is in the test split"):
        prepare_data(PrepareConfig(out=str(tmp_path / "o3"), source=str(tiny_voc), fewshot_from=str(src)))
    _write_lists(src, "tfa", {(1, 1, "gamma"): ["x"]})
    with pytest.raises(DataError, match="class 'gamma' is not one of the dataset's classes"):
        prepare_data(PrepareConfig(out=str(tmp_path / "o4"), source=str(tiny_voc), fewshot_from=str(src)))
    assert not (tmp_path / "o1").exists()


def test_cli_help_names_the_layouts(capsys):
    with pytest.raises(SystemExit):
        main(["prepare-data", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "seed<N>/box_<K>shot_<class>_train.txt" in out and "box_<K>shot_<class>_train_seed<N>.txt" in out
    assert "--fewshot-reading {all,sample}" in out
