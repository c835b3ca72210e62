from __future__ import annotations

import re

import pytest

from dkan.data.coco import class_names
from dkan.data.splits import (
    NEU_DET_SPLITS,
    ClassSplit,
    load_class_splits,
    primary_class,
    resolve_class_split,
    restrict_classes,
    split_name,
    stratified_split,
)
from dkan.data.voc import load_voc
from dkan.errors import DataError, DkanError

NEU = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def test_paper_splits_partition_the_six_classes():
    for s in NEU_DET_SPLITS.values():
        assert sorted(s.all) == sorted(NEU) and not set(s.base) & set(s.novel)
    assert NEU_DET_SPLITS[1].base == ("crazing", "inclusion", "patches")


def test_user_split_defaults_novel_to_the_rest_and_rejects_bad_names():
    cs = resolve_class_split(NEU, base=["scratches", "crazing"])
    assert cs.base == ("scratches", "crazing") and cs.novel == (
        "inclusion",
        "patches",
        "pitted_surface",
        "rolled-in_scale",
    )
    with pytest.raises(DataError, match="unknown class names"):
        resolve_class_split(NEU, base=["cracks"])
    with pytest.raises(DataError, match="no such NEU-DET split"):
        resolve_class_split(NEU, split=4)
    with pytest.raises(DataError, match="classes listed twice"):
        resolve_class_split(NEU, base=["crazing"], novel=["crazing", "patches"])
    assert resolve_class_split(NEU, base=NEU, novel=[]).novel == ()


def test_stratified_split_is_seeded_disjoint_and_per_class(tiny_voc):
    coco, _, _ = load_voc(tiny_voc)
    keep, held = stratified_split(coco, 0.2, seed=3)
    assert (keep, held) == stratified_split(coco, 0.2, seed=3)
    assert stratified_split(coco, 0.2, seed=4)[1] != held
    assert not set(keep) & set(held) and len(keep) + len(held) == 20
    prim = primary_class(coco)
    assert sorted(prim[i] for i in held) == [1, 1, 2, 2]  # 20% of each class's 10 images
    assert stratified_split(coco, 0.0, seed=0)[1] == []


def test_restrict_classes_renumbers_and_drops_empty_images(tiny_voc):
    coco, _, _ = load_voc(tiny_voc)
    only_b = restrict_classes(coco, ["beta-x_y"])
    assert class_names(only_b) == ["beta-x_y"] and len(only_b["images"]) == 10
    assert {a["category_id"] for a in only_b["annotations"]} == {1}
    assert len(restrict_classes(coco, ["beta-x_y"], drop_empty=False)["images"]) == 20


def test_numbered_split_on_another_dataset_names_its_classes_and_the_base_novel_call():
    tiles = ["pit", "burr", "stain", "crack", "dent", "void"]
    with pytest.raises(DataError) as e:
        resolve_class_split(tiles, split=1)
    msg = str(e.value)
    assert "NEU-DET's presets" in msg and "['pit', 'burr', 'stain', 'crack', 'dent', 'void']" in msg
    assert "--base pit,burr,stain" in msg and "data.split=null" in msg
    assert resolve_class_split(NEU, split=2).base == ("inclusion", "rolled-in_scale", "scratches")


def test_split_names_are_file_name_safe_and_distinct():
    assert split_name(1) == "split1"
    assert split_name(None, ["pit", "burr"]) == "base-pit-burr"
    assert split_name(None, ["pit"], ["dent"]) == "base-pit-novel-dent"
    assert split_name(None, ["pit"], name="my split/2") == "my_split_2"
    odd = split_name(None, ["a/b", "c d"])
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", odd) and odd != split_name(None, ["a_b", "c_d"])
    long = split_name(None, [f"class{i:02d}" for i in range(30)])
    assert len(long) <= 64 and long != split_name(None, [f"class{i:02d}" for i in range(31)])


def test_load_class_splits_yaml(tmp_path):
    f = tmp_path / "splits.yaml"
    f.write_text("mine:\n  base: [pit, burr]\n  novel: [dent]\nrest novel:\n  base: [void]\n")
    splits = load_class_splits(f)
    assert list(splits) == ["mine", "rest_novel"]
    assert splits["mine"] == ClassSplit(("pit", "burr"), ("dent",)) and splits["rest_novel"].novel == ()
    f.write_text("bad:\n  basis: [pit]\n")
    with pytest.raises(DataError, match=r"split 'bad'.*Fix: write e.g."):
        load_class_splits(f)
    with pytest.raises(DkanError, match="not found"):
        load_class_splits(tmp_path / "missing.yaml")


def test_cli_base_novel_map_to_the_config(tmp_path):
    from dkan.cli import build_parser, main
    from dkan.compose import job_config

    args = build_parser().parse_args(["base-train", "--profile", "cpu-quick", "--base", "pit, burr", "--novel", "dent"])
    cfg = job_config("base", args)
    assert cfg.data.split is None and cfg.data.base == ["pit", "burr"] and cfg.data.novel == ["dent"]
    args = build_parser().parse_args(["finetune", "--profile", "cpu-quick", "--base", "pit"])
    cfg = job_config("finetune", args)
    assert cfg.data.split is None and cfg.data.base == ["pit"] and cfg.data.novel is None
    assert main(["base-train", "--profile", "cpu-quick", "--split", "1", "--base", "pit", "--print-config"]) == 2
    assert main(["base-train", "--profile", "cpu-quick", "--novel", "pit", "--print-config"]) == 2


def test_evaluate_refuses_a_class_split_other_than_the_checkpoints(tmp_path, capsys):
    import torch

    from dkan.cli import main

    ckpt = tmp_path / "model_final.pt"
    meta = {"stage": "finetune", "classes": ["pit", "burr", "dent"], "base": ["pit", "burr"], "novel": ["dent"],
            "config": {}, "iteration": 1}
    torch.save({"model": {}, "meta": meta}, ckpt)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--base", "pit,dent"]) == 2
    err = capsys.readouterr().err
    assert "trained with base ['pit', 'burr'], novel ['dent']" in err and "Fix:" in err
