"""One report of a sweep's run folder: ``RUN_DIR/report.html`` (self-contained) and ``report.md``
(`dkan report RUN_DIR`; the sweep writes it at its end).

Reads ``results/*.json`` (each ``{"table": {row: {metric: {mean, std, n}}}, "per_seed": ...,
"best_hyperparameters": ...}``; optional ``reference`` rows and ``stats`` / ``verdict``),
``best_configs/`` (YAMLs or bundle folders, with their ``provenance``) and the PNGs under
``plots/`` (paths: ``sweeps.core.layout.RunLayout``). A study's plots are those under ``plots/<key>/``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.evaluation.stats import wilcoxon_floor
from dkan.names import HEADLINE, PER_CLASS_PREFIX
from sweeps.core.layout import RunLayout
from sweeps.outputs.decision import DECISION_PNG
from sweeps.outputs.results import search_lines
from sweeps.outputs.run_folder import RunSummary, StudyResults, load_run

# ---------------------------------------------------------------- tables


def _cell(v: Any, scale: float = 100.0) -> str:
    """{mean, std, n} or a number -> "mean ± std" in AP points; a plain number above 1 is already in points."""
    if isinstance(v, Mapping):
        mean, std = v.get("mean"), v.get("std")
        if not isinstance(mean, (int, float)) or math.isnan(mean):
            return "n/a"
        return (
            f"{mean * scale:.1f} ± {std * scale:.1f}"
            if isinstance(std, (int, float)) and not math.isnan(std)
            else f"{mean * scale:.1f}"
        )
    if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v):
        return f"{v:.1f}" if abs(v) > 1.0 else f"{v * scale:.1f}"
    return "n/a"


def _n(agg: Mapping[str, Any]) -> str:
    n = agg.get("AP_all", {}).get("n") if isinstance(agg.get("AP_all"), Mapping) else None
    return str(n) if n is not None else ""


def _reference_rows(ref: Any) -> list[tuple[str, dict[str, Any]]]:
    """``reference`` as {row: {metric: value}} or [{"name"|"row": ..., metric: value}] -> [(name, metrics)]."""
    if isinstance(ref, Mapping):
        return [(str(k), dict(v)) for k, v in ref.items() if isinstance(v, Mapping)]
    if isinstance(ref, list):
        return [(str(r.get("name", r.get("row", "reference"))), dict(r)) for r in ref if isinstance(r, Mapping)]
    return []


def main_table(run: RunSummary) -> tuple[list[str], list[list[str]]]:
    """One table across all (split, K): header and rows (reference rows marked as such)."""
    header = ["dataset", "split", "K", "method", *HEADLINE, "seeds"]
    rows = []
    for s in run.studies:
        where = [s.dataset, "" if s.split is None else str(s.split), "" if s.shots is None else str(s.shots)]
        for name, agg in s.table.items():
            rows.append([*where, name, *(_cell(agg.get(m)) for m in HEADLINE), _n(agg)])
        for name, ref in _reference_rows(s.data.get("reference")):
            voc = not any(m in ref for m in HEADLINE) and any(f"voc07/{m}" in ref for m in HEADLINE)
            label = f"{name} (reference)" + (" [VOC07 AP50]" if voc else "")
            rows.append([*where, label, *(_cell(ref.get(f"voc07/{m}" if voc else m)) for m in HEADLINE), ""])
    return header, rows


def per_class_table(run: RunSummary) -> tuple[list[str], list[list[str]]]:
    classes = sorted(
        {
            m.removeprefix(PER_CLASS_PREFIX)
            for s in run.studies
            for agg in s.table.values()
            for m in agg
            if m.startswith(PER_CLASS_PREFIX)
        }
    )
    rows = [
        [s.key, name, *(_cell(agg.get(PER_CLASS_PREFIX + c)) for c in classes)]
        for s in run.studies
        for name, agg in s.table.items()
    ]
    return ["study", "method", *classes], rows


def sentences(data: Mapping[str, Any]) -> list[str]:
    """Statistics and verdicts of a study as readable lines (strings kept, numbers as key: value)."""
    out: list[str] = []
    floors = {note for _, note in floor_notes(data)}  # said once per study (``seeds_lines``), not per sentence

    def walk(x: Any, label: str) -> None:
        if isinstance(x, str):
            if x in floors:
                return
            x = _without_floor(x, floors)
            out.append(
                f"{label}: {x}" if label and not label.endswith(("verdict", "sentence", "text", "summary")) else x
            )
        elif isinstance(x, Mapping):
            for k, v in x.items():
                walk(v, f"{label}.{k}" if label else str(k))
        elif isinstance(x, list) and all(isinstance(v, str) for v in x):
            out.extend(_without_floor(v, floors) for v in x if v not in floors)
        elif x is not None:
            out.append(f"{label}: {json.dumps(x) if isinstance(x, (list, dict)) else x}")

    # the verdict sentences say what the numbers mean (the numbers stay in results/*.json); older
    # results without sentences show their statistics as key: value lines
    for key in ("verdict",) if data.get("verdict") else ("stats",):
        if key in data:
            walk(data[key], key if key == "verdict" else "")
    search = data.get("search")
    if isinstance(search, Mapping) and "trials" in search:
        out.extend(search_lines(search))
    return out


def floor_notes(data: Mapping[str, Any]) -> list[tuple[tuple[int, ...], str]]:
    """(seeds, the note that they cannot reach p < 0.05 with the Wilcoxon test) of a study's paired
    comparisons (``stats``), once per set of seeds: few seeds make every comparison's verdict say it."""
    found: dict[tuple[int, ...], str] = {}
    for d in (data.get("stats") or {}).values():
        if isinstance(d, Mapping) and isinstance(d.get("n"), int) and isinstance(d.get("seeds"), list):
            note = wilcoxon_floor(d["n"])
            if note and d.get("note") == note:
                found.setdefault(tuple(d["seeds"]), note)
    return list(found.items())


def _without_floor(sentence: str, floors: set[str]) -> str:
    for note in floors:
        sentence = sentence.replace(f"; {note}", "")
    return sentence


def seeds_lines(data: Mapping[str, Any]) -> list[str]:
    """The study's seeds and, once, what so few seeds mean for the Wilcoxon test."""
    return [f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); {note}: no verdict below can call a difference "
            "significant." for seeds, note in floor_notes(data)]


def mlflow_ids(run: RunSummary) -> list[tuple[str, str, str]]:
    """(where, key, run id) for every ``*run_id`` in bundle provenance and results."""
    found = []

    def walk(x: Any, where: str, path: str = "") -> None:
        if isinstance(x, Mapping):
            for k, v in x.items():
                if isinstance(v, str) and str(k).endswith("run_id"):
                    found.append((where, f"{path}{k}", v))
                else:
                    walk(v, where, f"{path}{k}.")

    for b in run.bundles:
        walk(b.provenance, str(b.path.relative_to(run.run_dir)))
    for s in run.studies:
        walk(s.data.get("mlflow", {}), f"results/{s.key}.json", "mlflow.")
    return found


# ---------------------------------------------------------------- rendering


def recommendations(run: RunSummary) -> list[tuple[StudyResults, str]]:
    """Each study's one recommendation line (results written before recommendations have none)."""
    out = []
    for s in run.studies:
        rec = s.data.get("recommendation")
        if isinstance(rec, dict) and isinstance(rec.get("line"), str):
            out.append((s, rec["line"]))
    return out


def decision_pictures(run: RunSummary) -> list[tuple[StudyResults, Path]]:
    """Each study's picture of its decision (``sweeps.outputs.decision``), for the top of the report."""
    layout = RunLayout(run.run_dir)
    return [(s, layout.plots(s.key) / DECISION_PNG) for s in run.studies
            if layout.plots(s.key) / DECISION_PNG in run.plots]


def _study_plots(run: RunSummary) -> list[tuple[str, list[Path]]]:
    groups, used = [], {p for _, p in decision_pictures(run)}  # those are at the top
    for s in run.studies:
        mine = [p for p in run.plots if s.key in str(p.relative_to(run.run_dir)) and p not in used]
        used.update(mine)
        groups.append((s.key, mine))
    rest = [p for p in run.plots if p not in used]
    return groups + ([("other plots", rest)] if rest else [])


def _hparams(s: StudyResults) -> str:
    hp = s.data.get("best_hyperparameters") or {}
    text = ", ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in hp.items())
    n = s.data.get("seed_finetunes_in_search")
    return text + (f" ({n} seed fine-tunes in the search)" if n is not None else "")


def render_markdown(run: RunSummary, folder: Path | None = None) -> str:
    """The report in markdown, its plot links relative to ``folder`` (where it is written; default RUN_DIR)."""
    import os

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        return [
            "| " + " | ".join(header) + " |",
            "|---" * len(header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]

    lines = [f"# Sweep report: {run.run_dir.name}", ""] + [f"- **{s.key}**: {r}" for s, r in recommendations(run)]
    lines += [x for s, p in decision_pictures(run)
              for x in ("", f"![decision: {s.key}]({p.relative_to(run.run_dir).as_posix()})")]
    lines += ["", "AP50 in points, mean ± std over seeds (test split).", ""]
    lines += table(*main_table(run)) + ["", "## Per class (AP50)", ""] + table(*per_class_table(run))
    for s in run.studies:
        lines += ["", f"## {s.key}", "", f"Best hyperparameters: {_hparams(s) or 'n/a'}"]
        lines += [x for t in seeds_lines(s.data) for x in ("", t)]
        lines += [f"- {t}" for t in sentences(s.data)]
    for title, plots in _study_plots(run):
        if plots:
            lines += ["", f"### Plots: {title}", ""]
            lines += [f"![{p.stem}]({Path(os.path.relpath(p, folder or run.run_dir)).as_posix()})" for p in plots]
    lines += ["", "## Exported bundles", ""] + (
        [
            f"- `{b.path.relative_to(run.run_dir)}`" + (f" (files: {', '.join(b.files)})" if b.files else "")
            for b in run.bundles
        ]
        or ["none"]
    )
    ids = mlflow_ids(run)
    if ids:
        lines += ["", "## MLflow runs", ""] + [f"- {w}: {k} = `{v}`" for w, k, v in ids] + ["", _mlflow_hint(run)]
    return "\n".join(lines) + "\n"


def _mlflow_hint(run: RunSummary) -> str:
    db = run.run_dir / "mlflow.db"
    store = f"sqlite:///{db.name}" if db.is_file() else "<tracking URI>"
    return f"Open them with `mlflow ui --backend-store-uri {store}` run in {run.run_dir.name}/ (or your MLflow server)."


CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:nth-child(-n+4),th{text-align:left}"
    "tr.ref{color:#666;font-style:italic}img{max-width:100%;border:1px solid #eee;margin:4px}code{background:#f4f4f4}"
)


def _figure(png: Path, run_dir: Path) -> str:
    """The PNG embedded as a data URI: the page needs no other file."""
    data = base64.b64encode(png.read_bytes()).decode()
    caption = html.escape(str(png.relative_to(run_dir)))
    img = f"<img alt='{html.escape(png.stem)}' src='data:image/png;base64,{data}'>"
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def render_html(run: RunSummary) -> str:
    e = html.escape

    def table(header: list[str], rows: list[list[str]]) -> str:
        body = "".join(
            f"<tr{' class=ref' if any('(reference)' in c for c in r) else ''}>"
            + "".join(f"<td>{e(c)}</td>" for c in r)
            + "</tr>"
            for r in rows
        )
        return "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + f"</tr>{body}</table>"

    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>Sweep report: {e(run.run_dir.name)}</title>",
        f"<style>{CSS}</style></head><body><h1>Sweep report: {e(run.run_dir.name)}</h1>",
        ("<ul>" + "".join(f"<li><b>{e(s.key)}</b>: {e(r)}</li>" for s, r in recommendations(run)) + "</ul>")
        if recommendations(run) else "",
        *(_figure(p, run.run_dir) for _, p in decision_pictures(run)),
        "<p>AP50 in points, mean ± std over seeds (test split).</p>",
        table(*main_table(run)),
        "<h2>Per class (AP50)</h2>",
        table(*per_class_table(run)),
    ]
    for s in run.studies:
        parts.append(f"<h2>{e(s.key)}</h2><p>Best hyperparameters: {e(_hparams(s) or 'n/a')}</p>")
        parts += [f"<p>{e(t)}</p>" for t in seeds_lines(s.data)]
        if sentences(s.data):
            parts.append("<ul>" + "".join(f"<li>{e(t)}</li>" for t in sentences(s.data)) + "</ul>")
    for title, plots in _study_plots(run):
        if plots:
            parts.append(f"<h3>Plots: {e(title)}</h3>")
            parts += [_figure(p, run.run_dir) for p in plots]
    parts.append(
        "<h2>Exported bundles</h2><ul>"
        + "".join(
            f"<li><code>{e(str(b.path.relative_to(run.run_dir)))}</code>"
            + (e(f" (files: {', '.join(b.files)})") if b.files else "")
            + "</li>"
            for b in run.bundles
        )
        + "</ul>"
        if run.bundles
        else "<h2>Exported bundles</h2><p>none</p>"
    )
    ids = mlflow_ids(run)
    if ids:
        parts.append(
            "<h2>MLflow runs</h2><ul>"
            + "".join(f"<li>{e(w)}: {e(k)} = <code>{e(v)}</code></li>" for w, k, v in ids)
            + f"</ul><p>{e(_mlflow_hint(run))}</p>"
        )
    return "\n".join(parts) + "</body></html>\n"


def seed_spread_plots(run: RunSummary) -> list[Path]:
    """Draw ``plots/<key>/seed_spread_AP_all.png`` for each study that has no plots yet."""
    from sweeps.outputs.plots import plot_seed_spread

    made = []
    for key, plots in _study_plots(run):
        study = next((s for s in run.studies if s.key == key), None)
        if study is None or plots or not study.data.get("per_seed"):
            continue
        path = RunLayout(run.run_dir).plots(key) / "seed_spread_AP_all.png"
        plot_seed_spread(study.data["per_seed"], "AP_all", f"{key}: AP_all over seeds (test)", path)
        made.append(path)
    return made


def write_report(run_dir: Path, make_plots: bool = True, out: Path | None = None) -> tuple[Path, Path]:
    """RUN_DIR/report.html and report.md (``out``: in that folder instead, RUN_DIR only read: no plots
    drawn into it); returns their paths."""
    run = load_run(Path(run_dir))
    if make_plots and out is None and seed_spread_plots(run):
        run = load_run(run.run_dir)
    layout = RunLayout(run.run_dir)
    folder = Path(out) if out is not None else run.run_dir
    html_path, md_path = folder / layout.report_html.name, folder / layout.report_md.name
    runfolder.write_text_atomic(html_path, render_html(run))
    runfolder.write_text_atomic(md_path, render_markdown(run, folder))
    return html_path, md_path


def write_sweep_report(out: Path) -> Path | None:
    """``write_report`` at the end of a sweep; a failure only warns (the results are written already)."""
    import warnings

    try:
        html_path, _ = write_report(Path(out))
    except Exception as e:  # noqa: BLE001 - the sweep's results are written already; the report can be redone
        warnings.warn(f"report not written: {type(e).__name__}: {e}. Fix: run `dkan report {out}`", stacklevel=2)
        return None
    print(f"report: {html_path}", flush=True)
    return html_path


def report_command(args: Any) -> int:
    """`dkan report RUN_DIR [--out DIR]` / `python scripts/report.py RUN_DIR`."""
    from dkan.errors import check_writable

    out = getattr(args, "out", None)
    if out is None and Path(args.run_dir).is_dir():  # before any work: a read-only run folder is not a full disk
        check_writable(Path(args.run_dir), "RUN_DIR", "pass --out DIR to write report.html and report.md elsewhere "
                       "(RUN_DIR is then only read)")
    out_html, out_md = write_report(Path(args.run_dir), make_plots=not getattr(args, "no_plots", False),
                                    out=Path(out) if out is not None else None)
    print(f"report: {out_html} (self-contained) and {out_md}")
    return 0
