"""A local Ray for one sweep: token auth, dashboard on loopback, findable by its own processes.

Two sweeps on one machine each start their own Ray. Ray Train's placement-group cleaner (a
detached actor that frees a Train run's reserved CPUs when its controller is killed, as happens
when ASHA stops a trial) finds "its" cluster through the State API with no address: with two
local clusters and no ``RAY_ADDRESS`` that lookup fails ("Found multiple active Ray
instances"), the reservations of stopped trials are never freed and both sweeps wait forever.
Here the GCS port is chosen before start and ``RAY_ADDRESS`` set to it, so every Ray process of
this sweep (they inherit the raylet's environment) talks to its own cluster.

What listens where (Ray 2.60, checked with /proc/net/tcp): the dashboard (job submission) on
127.0.0.1; GCS, raylet, workers and agents on all interfaces, whatever ``_node_ip_address`` says
(``ray.init`` turns 127.0.0.1 into the machine's address). Those ports take no request without
the cluster's token: token auth is Ray's default for a new local cluster and is left on. When the
driver ends in any way (killed, or its shutdown cut short), a reaper beside it (``sweeps/shell/reaper.py``)
stops what Ray would leave listening for another minute or two (its two agents), within a second or two.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from typing import Any

from sweeps.shell.reaper import start_reaper

LOOPBACK = "127.0.0.1"
# set for the sweep's own Ray, restored by stop_local_ray (tests run several sweeps in one process)
_ENV_KEYS = ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT", "RAY_USAGE_STATS_ENABLED")
_saved_env: dict[str, str | None] = {}
_reaper: list[Any] = []  # the reaper of the local Ray started here (at most one)

# A Train run whose workers do not start within Ray's worker-group start timeout (60 s, or
# RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S) is retried this many times, then fails with a message
# naming what holds the resources (Ray's own default retries forever: a hang).
START_RETRIES = 10
REAP_WAIT_S = 10.0  # the reaper's last look and kills take well under a second


class WorkersDidNotStart(RuntimeError):
    """The workers of a Train run could not be placed: the resources are held elsewhere."""

    def __init__(self, name: str, res: Any, cause: Exception, holders: str):
        super().__init__(
            f"{name}: {res.workers} worker(s) of {_fmt(res.bundle())} could not start ({cause}); retried "
            f"{START_RETRIES} times. Cluster now: {holders}. Fix: stop the other Ray work holding these "
            "resources (`ray status`, `ray list placement-groups`), or lower --max-concurrent / --cpus-per-worker"
        )


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_local_ray(num_cpus: float, logging_level: int = logging.INFO) -> str:
    """Start a private local Ray with ``num_cpus`` logical CPUs; its GCS address (``RAY_ADDRESS``)."""
    import ray
    import ray.util

    _saved_env.update({k: os.environ.get(k) for k in _ENV_KEYS})
    port = free_port()
    address = f"{ray.util.get_node_ip_address()}:{port}"  # what the GCS will report
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    os.environ["RAY_ADDRESS"] = address  # inherited by the raylet, hence by every worker and actor
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # RAY_AUTH_MODE left alone: a new local Ray uses token auth unless the user turned it off.
    # The dashboard stays on (loopback): Ray Train's placement-group cleaner needs its State API.
    before = _children()
    try:
        try:
            _init_with_retry(num_cpus, logging_level)
        finally:  # after a failed or interrupted start too: what it started is reaped by stop_local_ray
            _reaper.append(start_reaper(_rays_processes(before)))
    except BaseException:
        stop_local_ray()
        raise
    return os.environ["RAY_ADDRESS"]


def _children() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children()}


def _rays_processes(before: set[int]) -> list[int]:
    """The processes ``ray.init`` started here: this process's new children that are Ray's (its GCS,
    raylet, dashboard, log monitor; their own children, the agents and workers, follow from them)."""
    import psutil

    mine = []
    for p in psutil.Process().children():
        try:
            if p.pid not in before and (p.name() in ("gcs_server", "raylet") or "/ray/" in " ".join(p.cmdline())):
                mine.append(p.pid)
        except psutil.Error:
            continue
    return mine


def _init_with_retry(num_cpus: float, logging_level: int = logging.INFO, attempts: int = 2) -> None:
    """ray.init; once more when the raylet missed Ray's fixed 30 s registration wait (seen on an
    overloaded machine: load 40 on 2 cores while another sweep started)."""
    import ray

    for attempt in range(attempts):
        try:
            ray.init(address="local", num_cpus=num_cpus, dashboard_host=LOOPBACK, log_to_driver=False,
                     logging_level=logging_level)
            return
        except Exception as e:
            if "timed out during startup" not in str(e) or attempt == attempts - 1:
                raise
            ray.shutdown()
            port = free_port()  # a fresh GCS port: the first may still be held by the half-started GCS
            os.environ["RAY_GCS_SERVER_PORT"] = str(port)
            os.environ["RAY_ADDRESS"] = f"{os.environ['RAY_ADDRESS'].rsplit(':', 1)[0]}:{port}"


def stop_local_ray() -> None:
    """Shut Ray down, then have the reaper kill what it left (whether shutdown returned, raised or was
    interrupted), and give the environment back as it was before ``start_local_ray``."""
    import ray

    try:
        ray.shutdown()
    finally:
        while _reaper:
            reaper = _reaper.pop()
            reaper.terminate()  # SIGTERM: reap now
            try:
                reaper.wait(timeout=REAP_WAIT_S)
            except subprocess.TimeoutExpired:
                reaper.kill()
                reaper.wait()
        for k, v in _saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _saved_env.clear()


def resource_holders() -> str:
    """Who holds the cluster's resources now: free/total, live placement groups, busy actors.

    For the error of a Train run whose workers could not start (named, not retried forever)."""
    import ray

    lines = [f"free {_fmt(ray.available_resources())} of {_fmt(ray.cluster_resources())}"]
    for pg in ray.util.placement_group_table().values():
        if pg.get("state") in ("CREATED", "PENDING", "RESCHEDULING"):
            bundles = ", ".join(_fmt(b) for b in pg.get("bundles", {}).values())
            lines.append(f"placement group {pg['placement_group_id'][:12]} {pg['state']}: [{bundles}]")
    try:
        from ray.util.state import list_actors

        alive = list_actors(filters=[("state", "=", "ALIVE")], limit=200, raise_on_missing_output=False)
        names: dict[str, int] = {}
        for a in alive:
            names[a.class_name] = names.get(a.class_name, 0) + 1
        lines.append("alive actors: " + ", ".join(f"{n} x{c}" for n, c in sorted(names.items())))
    except Exception as e:  # the State API needs the dashboard; the rest is still worth showing
        lines.append(f"(actors unknown: {type(e).__name__})")
    return "; ".join(lines)


def _fmt(res: dict[str, Any]) -> str:
    keep = {k: v for k, v in res.items() if k in ("CPU", "GPU") or k.endswith(("_CPU", "_GPU"))}
    return "{" + ", ".join(f"{k}: {float(v):g}" for k, v in sorted(keep.items())) + "}"
