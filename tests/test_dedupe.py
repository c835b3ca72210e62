"""Model files a run folder holds twice become hard links of one; nothing else is touched."""

from __future__ import annotations

import os

from sweeps.outputs.dedupe import link_duplicates


def test_identical_model_files_become_one_and_other_files_stay(tmp_path):
    blob, other = os.urandom(2 << 20), os.urandom(2 << 20)
    paths = {"best_configs/a/base_model.pt": blob, "mlartifacts/1/x/artifacts/base_model.pt": blob,
             "best_configs/b/base_model.pt": blob, "runs/k/t/seed1/model_final.pt": other,
             "mlflow.db": blob, "copy.db": blob}
    for rel, data in paths.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path / "runs" / "link.pt").symlink_to(tmp_path / "best_configs/a/base_model.pt")
    assert link_duplicates(tmp_path) == 2 * (2 << 20)
    a = tmp_path / "best_configs/a/base_model.pt"
    assert os.path.samefile(a, tmp_path / "best_configs/b/base_model.pt")
    assert os.path.samefile(a, tmp_path / "mlartifacts/1/x/artifacts/base_model.pt") and a.read_bytes() == blob
    assert not os.path.samefile(tmp_path / "mlflow.db", tmp_path / "copy.db")  # written in place: never linked
    assert (tmp_path / "runs/k/t/seed1/model_final.pt").stat().st_nlink == 1
    assert link_duplicates(tmp_path) == 0 and not list(tmp_path.rglob(".*link-*"))
