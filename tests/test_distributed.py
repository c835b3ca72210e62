"""fit() under a real 2-process gloo group: ranks stay in sync, rank 0 alone writes files."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dkan.engine.distributed import rank_and_world, shard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_dict: dict, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        from dkan.config import BaseTrainConfig, from_dict
        from dkan.engine.train import fit

        metrics = fit(from_dict(BaseTrainConfig, cfg_dict), progress=False)
        with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
            json.dump(
                {
                    "metrics_AP_all": metrics["AP_all"],
                    "rank_world": rank_and_world(),
                    "world_size": metrics["world_size"],
                },
                f,
            )
    finally:
        dist.destroy_process_group()


def _sync_worker(rank: int, world: int, port: int, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from dkan.engine.distributed import average_gradients, broadcast_module

        torch.manual_seed(100 + rank)  # different weights on each rank
        net = torch.nn.Linear(3, 2)
        broadcast_module(net)
        net.weight.grad = torch.full_like(net.weight, float(rank + 1))  # 1 on rank 0, 2 on rank 1
        net.bias.grad = None  # a missing gradient must not hang the reduction
        average_gradients(net.parameters())
        out = {
            "weight": net.weight.tolist(),
            "grad": net.weight.grad.tolist(),
            "bias_grad": net.bias.grad.tolist(),
            "shard": shard(list(range(6))),
        }
        with open(os.path.join(result_dir, f"sync{rank}.json"), "w") as f:
            json.dump(out, f)
    finally:
        dist.destroy_process_group()


def test_ranks_start_equal_and_average_gradients(tmp_path):
    mp.spawn(_sync_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"sync{r}.json").read_text()) for r in (0, 1))
    assert r0["weight"] == r1["weight"]  # rank 0's init everywhere
    assert r0["grad"] == r1["grad"] == [[1.5] * 3] * 2  # (1 + 2) / 2
    assert r0["bias_grad"] == [0.0, 0.0]
    assert (r0["shard"], r1["shard"]) == ([0, 2, 4], [1, 3, 5])


def test_shard_without_a_group_is_the_whole_batch():
    assert shard([5, 6, 7, 8]) == [5, 6, 7, 8] and rank_and_world() == (0, 1)


@pytest.mark.slow
def test_two_ranks_train_in_sync_and_only_rank0_writes(synthetic_prepared, tmp_path):
    from dkan.config import BaseTrainConfig, DataConfig, OptimConfig, to_dict
    from tests.conftest import tiny_model_config

    cfg = BaseTrainConfig(
        model=tiny_model_config(), data=DataConfig(root=str(synthetic_prepared), split=1),
        optim=OptimConfig(lr=0.01, batch_size=4, iterations=3, warmup_iters=1), out=str(tmp_path / "run"),
        checkpoint_every=0,
    )
    mp.spawn(_worker, args=(2, _free_port(), to_dict(cfg), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["rank_world"] == [0, 2] and r1["rank_world"] == [1, 2] and r1["world_size"] == 2
    assert json.dumps(r0["metrics_AP_all"]) == json.dumps(r1["metrics_AP_all"])  # rank 0's metrics reach every rank
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.yaml", "history.jsonl", "metrics.json", "model_final.pt"]
