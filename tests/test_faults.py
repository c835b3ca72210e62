"""Credentials never shown or pickled; MLflow lookups survive quotes in paths; a Train run whose
workers cannot start fails with a message naming who holds the resources."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest

from sweeps.core.jobspec import WorkerResources
from sweeps.shell.localray import WorkersDidNotStart
from sweeps.shell.tracker import Tracker
from sweeps.shell.trial_logger import TrialLogger
from sweeps.tracking import TrackingError, filter_value, mask_uri, real_uri


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("postgresql://alice:s3cret@db:5432/mlflow", "postgresql://alice:***@db:5432/mlflow"),
        ("postgresql+psycopg2://alice:s3cret@db/mlflow", "postgresql+psycopg2://alice:***@db/mlflow"),
        ("https://bob:p%40ss@mlflow.example/", "https://bob:***@mlflow.example/"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db"),
        ("databricks", "databricks"),
    ],
)
def test_mask_uri_hides_only_the_password(uri, shown):
    assert mask_uri(uri) == shown


def test_trial_logger_pickles_no_password_and_finds_the_real_uri_again(monkeypatch):
    uri = "postgresql://alice:s3cret@db:5432/mlflow"
    logger = TrialLogger(uri, "exp", "parent", "key", 3)
    state = pickle.dumps(logger)  # what Tune writes into the run folder for --resume
    assert b"s3cret" not in state
    restored = pickle.loads(state)
    assert restored.uri == "postgresql://alice:***@db:5432/mlflow"
    assert real_uri(restored.uri) == uri  # same driver process: from memory
    monkeypatch.setattr("sweeps.tracking._REAL_URIS", {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert real_uri(restored.uri) == uri  # a new process (resume): from the environment


def test_runs_are_found_again_when_the_out_path_has_an_apostrophe(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp")
    key = f"{tmp_path}/bob's sweep|prepared_split1_2shot"
    first = tracker.run("parent", {"dkan.sweep_key": key})
    assert tracker.run("parent", {"dkan.sweep_key": key}) == first  # resume: no duplicate run
    assert tracker.find(**{"dkan.sweep_key": "other"}) is None


def test_filter_value_refuses_what_cannot_be_quoted():
    assert filter_value("a'b") == '"a\'b"'
    with pytest.raises(TrackingError, match="Fix:"):
        filter_value("a'b\"c")


def test_workers_did_not_start_names_the_request_the_holders_and_the_fix():
    e = WorkersDidNotStart("trial_1", WorkerResources(2, 1.0, 0.5), TimeoutError("60 s"), "free {CPU: 0.98} of ...")
    msg = str(e)
    assert "2 worker(s) of {CPU: 1, GPU: 0.5}" in msg and "free {CPU: 0.98}" in msg and "Fix:" in msg


# ---- with a real local Ray (slow) ----------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, grew = {root}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in found} - found
        found |= new
        grew = bool(new)
    return found


def listening_addresses(pids: set[int]) -> dict[str, list[str]]:
    """{local address: [process names]} of the TCP sockets in LISTEN state owned by ``pids``."""
    import ipaddress

    owner: dict[str, str] = {}
    for pid in pids:
        try:
            name = open(f"/proc/{pid}/comm").read().strip()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[link[8:-1]] = name
        except OSError:
            continue
    out: dict[str, list[str]] = {}
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in open(table).readlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in owner:  # 0A: LISTEN
                continue
            hexip, port = f[1].split(":")
            raw = bytes.fromhex(hexip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))  # little-endian words
            out.setdefault(f"{ipaddress.ip_address(raw)}:{int(port, 16)}", []).append(owner[f[9]])
    return out


def test_out_inside_a_file_is_refused_before_any_work(tmp_path, capsys):
    """--out whose parent is a file: one line naming the path, exit 2, nothing made."""
    from sweeps.run_tune import main as sweep_main

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert sweep_main(["--data", str(tmp_path / "nodata"), "--out", str(blocker / "sweep")]) == 2
    err = capsys.readouterr().err
    assert f"--out {blocker / 'sweep'}" in err and "is not a folder" in err and "Traceback" not in err
    assert blocker.read_text() == "x"


def test_read_only_out_is_named_before_any_work(tmp_path, monkeypatch):
    """A read-only mount (simulated: tests run as root, which ignores permission bits)."""
    from dkan.errors import StorageError, check_writable

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    monkeypatch.setattr(os, "statvfs", lambda p: type("V", (), {"f_flag": os.ST_RDONLY})())
    with pytest.raises(StorageError, match=r"cannot write into .* \(read-only file system\)\. Fix: choose a writable"):
        check_writable(tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("code, why", [("ENOSPC", "the disk is full"), ("EROFS", "the file system is read-only"),
                                       ("EACCES", "permission denied")])
def test_disk_full_or_read_only_mid_run_is_one_clear_line(tmp_path, monkeypatch, capsys, code, why):
    """A write that fails mid-sweep (disk full, remounted read-only): exit 2 naming the file, no traceback."""
    import errno

    import sweeps.shell.sweep
    from sweeps.run_tune import main as sweep_main
    from tests.sweeps_shared import tiny_args

    target = tmp_path / "sweep" / "results" / "x.json"

    def fail(*a, **k):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(target))

    monkeypatch.setattr(sweeps.shell.sweep, "run_sweep", fail)
    monkeypatch.setattr("sweeps.core.inputs.build_plan", lambda args: None)
    assert sweep_main(tiny_args(tmp_path / "data", tmp_path / "sweep", tmp_path / "cache")) == 2
    err = capsys.readouterr().err
    assert f"cannot write {target}: {why}" in err and "Fix:" in err and "Traceback" not in err


def test_other_os_errors_are_not_disguised_as_storage_errors():
    import errno

    from dkan.errors import storage_error

    assert storage_error(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert storage_error(OSError(errno.ENOSPC, "No space left on device", "x")) is not None


def test_dkan_commands_refuse_an_unwritable_out_before_reading_anything(tmp_path, capsys):
    from dkan.cli import main as dkan_main

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert dkan_main(["prepare-data", "--source", str(tmp_path / "missing"), "--out", str(blocker / "p")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "missing" not in err  # the --out check came first


def test_base_lock_makes_a_second_sweep_wait_then_reuse(tmp_path, capsys):
    """Two sweeps sharing --cache-dir: the second waits (and says so) until the first releases."""
    import threading

    from dkan.runfolder import exclusive

    lock, order = tmp_path / "base" / "split1.lock", []

    def second():
        with exclusive(lock, "another sweep is training it; waiting"):
            order.append("second")

    with exclusive(lock, "never printed: nobody holds it"):
        t = threading.Thread(target=second)
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive() and order == []  # blocked while the first holds the lock
        order.append("first done")
    t.join(timeout=10)
    assert order == ["first done", "second"]
    out = capsys.readouterr().out
    assert "waiting" in out and "never printed" not in out


def test_mlflow_outage_mid_search_warns_goes_on_and_is_completed_at_the_end(tmp_path, capsys, monkeypatch,
                                                                           synthetic_prepared):
    """The store fails while a trial runs (its result and end are lost): the callbacks warn once and
    raise nothing; once it is back, log_trials (the study's end, or --resume) writes the last result and
    the final state, so the run is not left RUNNING."""
    from types import SimpleNamespace

    from sweeps.core.progress import TrialReport
    from sweeps.outputs.mlflow_log import log_trials
    from sweeps.tracking import TAG_KEY, TAG_TRIAL

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = TrialLogger(uri, "exp", None, "key", 2)
    trial = SimpleNamespace(trial_id="t1", config={"fka_weight": 1.0, "lka_weight": 0.01})
    logger.on_trial_start(0, [], trial)
    run_id = logger.run_ids["t1"]

    class Down:
        def __getattr__(self, name):
            def fail(*a, **k):
                raise ConnectionError("connection refused")
            return fail

    real_client = logger.tracker.client
    monkeypatch.setattr(logger.tracker, "client", Down())
    result = TrialReport.of_seeds("val", [(1, {"AP_all": 0.6}), (2, {"AP_all": 0.4})]).to_metrics()
    logger.on_trial_result(0, [], trial, result)
    logger.on_trial_complete(0, [], trial)
    out = capsys.readouterr().out
    assert out.count("unreachable") == 1 and "the sweep goes on" in out
    monkeypatch.setattr(logger.tracker, "client", real_client)
    assert real_client.get_run(run_id).info.status == "RUNNING"
    logger.on_trial_start(0, [], SimpleNamespace(trial_id="t2", config={}))
    assert "reachable again" in capsys.readouterr().out

    done = {"trial_id": "t1", "config": {"seed": 1}, "wall_s": 3.0, "state": "completed", "seeds_done": 2,
            "last_metrics": {"val_AP_all": 0.5}}
    log_trials(logger.tracker, "key", [done], None, "", synthetic_prepared, "v", (1, 0))
    run = real_client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["val_AP_all"] == 0.5
    assert run.data.tags["dkan.state"] == "completed"
    assert logger.tracker.find(**{TAG_KEY: "key", TAG_TRIAL: "t1"}) == run_id


# ---------------------------------------------------------------- on one private local Ray (last: it stays up)


@pytest.fixture(scope="module")
def local_ray():
    """One private local Ray for this module's tests (Ray's default for a new local cluster: token auth)."""
    from sweeps.shell.localray import start_local_ray, stop_local_ray

    auth = os.environ.pop("RAY_AUTH_MODE", None)
    address = start_local_ray(2)
    yield address
    stop_local_ray()
    if auth is not None:
        os.environ["RAY_AUTH_MODE"] = auth


@pytest.mark.slow
def test_local_ray_takes_no_request_without_its_token(local_ray):
    """Job submission (the dashboard) on loopback only; every other port refuses a client without the token."""
    import subprocess
    import sys

    import ray
    from ray._private.authentication.authentication_token_setup import get_authentication_mode
    from ray._private.authentication.authentication_utils import get_authentication_mode_name

    assert get_authentication_mode_name(get_authentication_mode()) == "token"
    assert os.environ["RAY_ADDRESS"] == local_ray == ray.get_runtime_context().gcs_address
    listening = listening_addresses(_descendants(os.getpid()))
    dash = ray._private.worker._global_node.webui_url  # host:port of the dashboard
    assert [a for a in listening if a.endswith(":" + dash.rsplit(":", 1)[1])] == [dash], listening
    probe = "import ray; ray.init(address='%s'); print('CONNECTED')" % local_ray
    clients = []  # a wrong token and no token at all, tried at once
    for env in ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}, {"RAY_AUTH_MODE": "disabled"}):
        env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env}
        clients.append(subprocess.Popen([sys.executable, "-c", probe], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True))
    for c in clients:
        try:
            out, _ = c.communicate(timeout=90)
        except subprocess.TimeoutExpired:  # refused and retrying: not connected either
            c.kill()
            out, _ = c.communicate()
        assert "CONNECTED" not in str(out)


@pytest.mark.slow
def test_train_workers_that_cannot_start_fail_with_the_holders_named(local_ray, tmp_path, monkeypatch):
    """Every CPU held by a placement group: the Train run gives up after bounded retries."""
    import ray

    from dkan.profiles import finetune_config
    from sweeps.core.jobspec import SeedJob
    from sweeps.shell.jobs import run_jobs
    from tests.conftest import tiny_model_config

    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "2")
    monkeypatch.setattr("sweeps.shell.localray.START_RETRIES", 1)
    pg = ray.util.placement_group([{"CPU": 2}])
    ray.get(pg.ready(), timeout=60)
    cfg = finetune_config("cpu-quick")
    job = SeedJob("dkan", 1, cfg.__class__(**{**vars(cfg), "model": tiny_model_config(), "out": str(tmp_path / "j")}))
    t = time.time()
    try:
        with pytest.raises(WorkersDidNotStart) as e:
            run_jobs([job], WorkerResources(1, 1.0), "starved", str(tmp_path / "ray"))
    finally:
        ray.util.remove_placement_group(pg)  # the module's other tests share this Ray
    assert time.time() - t < 120
    assert "placement group" in str(e.value) and "CREATED: [{CPU: 2}]" in str(e.value)


def _job_in(folder: Path, data_root: Path):
    from dataclasses import replace

    from dkan.profiles import finetune_config
    from sweeps.core.jobspec import SeedJob
    from tests.conftest import tiny_model_config

    cfg = finetune_config("cpu-quick")
    cfg = replace(cfg, model=tiny_model_config(), out=str(folder), data=replace(cfg.data, root=str(data_root)))
    return SeedJob("dkan", 1, cfg, label="dkan/1")


def test_a_failure_this_sweep_recorded_is_raised_without_starting_workers(tmp_path, monkeypatch):
    """A retried trial whose seed failed deterministically (recorded in failed.json by this sweep's session)
    raises that error at once; a record from an earlier sweep is removed so a --resume tries again."""
    import json

    import ray.train.torch

    from sweeps.shell.jobs import FAILED, SeedFailed, recorded_failures, run_jobs

    class NoTrainer:
        def __init__(self, *a, **k):
            raise AssertionError("workers were started for a job whose failure was recorded")

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", NoTrainer)
    job = _job_in(tmp_path / "seed1", tmp_path)
    job.out.mkdir()
    (job.out / FAILED).write_text(json.dumps({"session": "s1", "error": "TrainingError: non-finite loss at it 7"}))
    with pytest.raises(SeedFailed, match="dkan/1: TrainingError: non-finite loss at it 7"):
        run_jobs([job], WorkerResources(), "t", str(tmp_path / "ray"), max_failures=2, session="s1")
    assert recorded_failures([job], "s2") == [] and not (job.out / FAILED).exists()


@pytest.mark.slow
def test_a_deterministic_seed_failure_is_recorded_and_not_retried(local_ray, tmp_path):
    """Bad data raises a DkanError in the worker: recorded in failed.json, the run raises SeedFailed naming
    it (Train's retry of lost workers does not run the job again)."""
    import json

    from sweeps.shell.jobs import FAILED, SeedFailed, run_jobs

    job = _job_in(tmp_path / "seed1", tmp_path / "no-such-dataset")
    with pytest.raises(SeedFailed, match="dkan/1: .*no-such-dataset") as e:
        run_jobs([job], WorkerResources(1, 1.0), "bad", str(tmp_path / "ray"), max_failures=2, session="s1")
    rec = json.loads((job.out / FAILED).read_text())
    assert rec["session"] == "s1" and rec["error"] in str(e.value)
