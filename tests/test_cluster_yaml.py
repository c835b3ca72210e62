"""clusters/gpu.yaml passes Ray's own autoscaler schema check (offline; `ray up` has no dry-run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

YAML = Path(__file__).resolve().parents[1] / "clusters" / "gpu.yaml"


def _validate(cfg: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cfg))


def test_cluster_yaml_is_valid_and_has_gpu_workers():
    cfg = yaml.safe_load(YAML.read_text())
    _validate(cfg)
    assert cfg["available_node_types"]["gpu_worker"]["resources"]["GPU"] >= 1
    assert any("constraints.txt" in c for c in cfg["setup_commands"])


def test_a_misspelled_key_is_caught():
    cfg = yaml.safe_load(YAML.read_text())
    cfg["available_node_types"]["gpu_worker"]["max_wokers"] = cfg["available_node_types"]["gpu_worker"].pop("max_workers")
    with pytest.raises(Exception, match="max_wokers|Additional properties"):
        _validate(cfg)
