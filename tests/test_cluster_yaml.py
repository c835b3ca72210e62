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
    cfg["available_node_types"]["gpu_worker"]["max_wokers"] = cfg["available_node_types"]["gpu_worker"].pop(
        "max_workers"
    )
    with pytest.raises(Exception, match="max_wokers|Additional properties"):
        _validate(cfg)


def test_nothing_is_open_without_the_token():
    """Dashboard (it accepts job submissions) on loopback; token auth on every node; the token shipped."""
    cfg = yaml.safe_load(YAML.read_text())
    assert "0.0.0.0" not in YAML.read_text()
    commands = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    starts = [c for c in commands if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    [head] = [c for c in cfg["head_start_ray_commands"] if "--head" in c]
    assert "--dashboard-host=127.0.0.1" in head
    assert cfg["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("RAY_AUTH_MODE=token" in c for c in cfg["setup_commands"])
