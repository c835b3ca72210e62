"""The search's trials in MLflow as they run: a Tune callback (in the driver) that makes each trial a child
run of its study's run, named after its hyperparameters, with its running means at step = seeds done,
each seed's AP_all at step = seed, and its end state.

An unreachable store never stops the trials: the logger warns once and goes on; what it could not
write is completed when the study's search ends (``sweeps.outputs.mlflow_log``) or by ``--resume``.
Tune pickles its callbacks with its state: the logger keeps the masked tracking URI only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from sweeps.core.progress import TrialReport
from sweeps.shell.tracker import Tracker
from sweeps.tracking import TAG_KIND, mask_uri, real_uri, remember_uri, trial_state, trial_tags


def trial_name(n: int, config: dict[str, Any], method: str = "dkan") -> str:
    """"trial 3: fka 0.44 / lka 0.014": the study's n-th trial and its distillation weights (else its first two
    searched values; a baseline's search says its method: "tfa trial 5: optim.lr 0.0031"); a fixed
    candidate: "candidate: tfa"."""
    if "candidate" in config:
        return f"candidate: {config['candidate']}"
    keys = [k for k in ("fka_weight", "lka_weight") if k in config] or list(config)[:2]
    w = [f"{k.split('_')[0] if k in ('fka_weight', 'lka_weight') else k} {_short(config[k])}" for k in keys]
    name = f"trial {n}" if method == "dkan" else f"{method} trial {n}"
    return f"{name}: {' / '.join(w)}" if w else name


def _short(v: Any) -> str:
    return f"{float(v):.2g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


class TrialLogger(Callback):
    """Tune callback: trial runs as children of the study's run ``parent_id``."""

    outage = False  # class default: a logger pickled by an older version restores without the attribute

    def __init__(self, uri: str, experiment: str, parent_id: str | None, sweep_key: str, n_seeds: int,
                 method: str = "dkan"):
        self.uri, self.experiment, self.parent_id = mask_uri(uri), experiment, parent_id  # no password pickled
        remember_uri(uri)
        self.key, self.n_seeds, self.method = sweep_key, n_seeds, method
        self._tracker: Tracker | None = None
        self.run_ids: dict[str, str] = {}
        self.seeds_done: dict[str, int] = {}
        self.outage = False  # the store failed on the last call

    def __getstate__(self) -> dict:
        # Tune pickles its RunConfig (callbacks included) for restore; the client is rebuilt lazily
        return {**self.__dict__, "_tracker": None}

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(real_uri(self.uri), self.experiment)
        return self._tracker

    def _run(self, trial) -> str:
        if trial.trial_id not in self.run_ids:
            params = {k: v for k, v in trial.config.items() if isinstance(v, (int, float, str))}
            kind = "candidate" if "candidate" in trial.config else "trial"
            tags = {**trial_tags(self.key, self.parent_id, trial.trial_id), TAG_KIND: kind}
            # numbered in the order the study's trials started (counted in the store: a resume goes on counting;
            # under the study's run: another run folder's trials of the same study key are not counted)
            n = self.tracker.count(**trial_tags(self.key, self.parent_id), **{TAG_KIND: kind}) + 1 \
                if not self.tracker.find(**tags) else 0
            name = trial_name(n, trial.config, getattr(self, "method", "dkan"))
            self.run_ids[trial.trial_id] = self.tracker.run(name, tags, params, self.parent_id)
        return self.run_ids[trial.trial_id]

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        """Run one logging call; while the store is unreachable, warn once and let the sweep go on."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a tracking outage must not stop the trials
            if not self.outage:
                print(f"warning: MLflow store {self.uri} unreachable while logging {what} ({type(e).__name__}: "
                      f"{str(e)[:200]}); the sweep goes on. Each trial's final state, metrics, config and cost are "
                      "written when the study's search ends (or by --resume); per-seed points sent during the "
                      "outage are missing", flush=True)
            self.outage = True
            return
        if self.outage:
            print(f"MLflow store {self.uri} reachable again", flush=True)
            self.outage = False

    def on_trial_start(self, iteration, trials, trial, **info):
        self._guard("a trial's start", lambda: self._run(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        report = TrialReport.from_result(result)
        if report is None:
            return
        self.seeds_done[trial.trial_id] = report.seeds_done
        self._guard("a trial's result", lambda: self._result(trial, report))

    def _result(self, trial, report: TrialReport) -> None:
        run_id = self._run(trial)
        self.tracker.metrics(run_id, report.named_means(), step=report.seeds_done)
        self.tracker.metrics(run_id, {"seed_AP_all": report.seed_ap[report.last_seed]}, step=report.last_seed)

    def on_trial_complete(self, iteration, trials, trial, **info):
        state = trial_state(self.seeds_done.get(trial.trial_id, 0), self.n_seeds)
        self._guard("a trial's end", lambda: self.tracker.finish(self._run(trial), state))

    def on_trial_error(self, iteration, trials, trial, **info):
        reason = str(getattr(trial, "error_msg", None) or getattr(trial, "error_file", None) or "error")
        self._guard("a trial's error",
                    lambda: self.tracker.finish(self._run(trial), "failed", status="FAILED", reason=reason))
