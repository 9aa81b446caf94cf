"""`discover report RUN`: one self-contained HTML page (plots embedded as PNG) plus the PNGs.

It answers, during a run or after it: what is the best solution, how did we get there, is the
search still improving, is the model learning. The archive is read in one snapshot, read-only;
only the report folder (RUN/report by default) is written, each file atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas by default
from matplotlib.ticker import MaxNLocator

from discover.archive import Candidate
from discover.registry import load_environment
from discover.rundir import RunDir
from discover.views.inspection import Run, better_text, fmt, open_run, run_stats

FAIL_COLOUR = "tab:red"


@dataclass
class Plot:
    name: str  # file stem of its PNG
    title: str
    png: bytes | None = None  # None: nothing to plot, `note` says why
    note: str = ""


@dataclass
class RunData:
    run: Run
    rows: list[dict]  # archive.summary()
    steps: list[dict]  # archive.step_metrics()
    best: Candidate | None
    lineage: list[Candidate]


def load(run: Run) -> RunData:
    a = run.archive
    with a.snapshot():
        best = a.best(1)
        return RunData(run, a.summary(), a.step_metrics(), best[0] if best else None,
                       a.lineage(best[0].id) if best else [])


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _steps_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def best_so_far(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(row, best valid row up to and including it) for rows in the order given."""
    out, best = [], None
    for r in rows:
        if r["ok"] and (best is None or r["reward"] > best["reward"]):
            best = r
        if best is not None:
            out.append((r, best))
    return out


def best_by_step(rows: list[dict], steps: list[dict]) -> list[tuple[int, dict]]:
    """(step, best valid row by the end of it) for every step from -1 (the initial states) to
    the last one stored, from the first step that has a valid candidate."""
    last = max([m["step"] for m in steps] + [r["step"] for r in rows], default=-1)
    by_step = {}
    for r, best in best_so_far(sorted(rows, key=lambda r: (r["step"], r["id"]))):
        by_step[r["step"]] = best
    out, cur = [], None
    for s in range(-1, last + 1):
        cur = by_step.get(s, cur)
        if cur is not None:
            out.append((s, cur))
    return out


def best_by_time(rows: list[dict]) -> list[tuple[float, dict]]:
    """(seconds since the first candidate was stored, best valid row by then) at each stored
    candidate, and once more at the last one (the curve reaches the run's latest time)."""
    pts = best_so_far(sorted(rows, key=lambda r: (r["created_at"], r["id"])))
    if not pts:
        return []
    t0 = min(r["created_at"] for r in rows)
    end = max(r["created_at"] for r in rows)
    return [(r["created_at"] - t0, b) for r, b in pts] + [(end - t0, pts[-1][1])]


# --- the plots --------------------------------------------------------------------------------

def plot_best_by_step(d: RunData) -> Plot:
    p = Plot("best_by_step", "Best score so far, by step")
    pts = best_by_step(d.rows, d.steps)
    xs, ys = [s for s, _ in pts], [b["score"] for _, b in pts]
    if not ys:
        p.note = "no valid candidate yet"
        return p
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    ax.plot(xs, ys, marker="o", drawstyle="steps-post")
    ax.set(xlabel="step (-1: initial states)", ylabel="best score",
           title=f"best score so far by step ({better_text(d.run)})")
    _steps_axis(ax)
    ax.grid(alpha=0.3)
    p.png = _png(fig)
    return p


def plot_best_by_time(d: RunData) -> Plot:
    p = Plot("best_by_time", "Best score so far, by wall time")
    pts = best_by_time(d.rows)
    if not pts:
        p.note = "no valid candidate yet"
        return p
    scale, unit = (60.0, "minutes") if pts[-1][0] > 120 else (1.0, "seconds")
    ts = [t / scale for t, _ in pts]
    ys = [b["score"] for _, b in pts]
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    ax.plot(ts, ys, marker=".", drawstyle="steps-post")
    ax.set(xlabel=f"wall time since the run started ({unit})", ylabel="best score",
           title=f"best score so far by wall time ({better_text(d.run)})")
    ax.grid(alpha=0.3)
    p.png = _png(fig)
    return p


def plot_rewards(d: RunData) -> Plot:
    p = Plot("rewards", "Reward distribution per step")
    gen = [r for r in d.rows if not r["initial"]]
    if not gen:
        p.note = "no step finished yet"
        return p
    rng = np.random.default_rng(0)
    valid = defaultdict(list)
    failed = defaultdict(list)
    for r in gen:
        (valid if r["ok"] else failed)[r["step"]].append(r["reward"])
    steps = sorted({r["step"] for r in gen})
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    vr = [x for s in steps for x in valid[s]]
    fr = [x for s in steps for x in failed[s]]
    if vr:
        lo, hi = min(vr), max(vr)
        span = (hi - lo) or max(abs(hi), 1.0) * 0.1
        # Failure rewards may lie far below every valid one (-1e9 by default): draw failures
        # on a band just under the valid range rather than squash the valid spread.
        band = lo - 0.25 * span
        far = bool(fr) and min(fr) < lo - 3 * span
        boxes = [valid[s] for s in steps if valid[s]]
        ax.boxplot(boxes, positions=[s for s in steps if valid[s]], widths=0.5,
                   showfliers=False, manage_ticks=False)
    else:
        far, band = False, None
    for s in steps:
        if valid[s]:
            ax.scatter(s + rng.uniform(-0.15, 0.15, len(valid[s])), valid[s], s=12,
                       color="tab:blue", alpha=0.7, zorder=3)
        if failed[s]:
            ys = [band] * len(failed[s]) if far else failed[s]
            ax.scatter(s + rng.uniform(-0.15, 0.15, len(failed[s])), ys, s=16, marker="x",
                       color=FAIL_COLOUR, alpha=0.7, zorder=3)
    what = "dots: valid, boxes: quartiles" if vr else "no valid program yet"
    ax.set(xlabel="step" + (f" (x: failures, reward {min(fr):.3g}, drawn under the valid range)"
                            if far else ""),
           ylabel="reward", title=f"reward per step ({what}" + (", x: failed)" if fr else ")"))
    ax.set_xlim(steps[0] - 0.6, steps[-1] + 0.6)
    _steps_axis(ax)
    ax.grid(alpha=0.3)
    p.png = _png(fig)
    return p


def plot_valid_rate(d: RunData) -> Plot:
    p = Plot("valid_rate", "Valid-program rate per step")
    if not d.steps:
        p.note = "no step finished yet"
        return p
    steps = [m["step"] for m in d.steps]
    totals = np.array([max(1, m.get("total", 0)) for m in d.steps], dtype=float)
    valid = np.array([m.get("valid", 0) for m in d.steps], dtype=float) / totals
    kinds = sorted({k for m in d.steps for k in m.get("failures", {})})
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    ax.bar(steps, valid, color="tab:green", label="valid")
    bottom = valid.copy()
    colours = ["tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
               "tab:olive"]
    for i, kind in enumerate(kinds):
        share = np.array([m.get("failures", {}).get(kind, 0) for m in d.steps]) / totals
        ax.bar(steps, share, bottom=bottom, color=colours[i % len(colours)], label=kind,
               alpha=0.8)
        bottom += share
    rate = sum(m.get("valid", 0) for m in d.steps) / max(1, sum(m.get("total", 0)
                                                              for m in d.steps))
    ax.set(xlabel="step", ylabel="share of the step's programs", ylim=(0, 1.05),
           title=f"valid programs per step (green; whole run {100 * rate:.0f}%) and failures")
    _steps_axis(ax)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    p.png = _png(fig)
    return p


def plot_learner(d: RunData) -> Plot:
    p = Plot("learner", "The learner: beta, KL, loss and how far it moved the model per step")
    pts = [(m["step"], m["learner"]) for m in d.steps if m.get("learner")]
    if not pts:
        p.note = ("no learner: this run did not train the model (learner.method = none)"
                  if d.steps else "no step finished yet")
        return p
    fig = Figure(figsize=(15, 3.2))
    axes = fig.subplots(1, 5)
    for ax, key, what in zip(axes, ("beta", "kl", "loss", "policy_kl", "logp_change"),
                             ("beta (entropic)", "KL of the reweighting", "loss",
                              "KL(adapted || base)", "|log-prob change| a token"), strict=True):
        xs = [s for s, m in pts if m.get(key) is not None]
        ys = [m[key] for s, m in pts if m.get(key) is not None]
        ax.plot(xs, ys, marker="o")
        skipped = [s for s, m in pts if m.get("skipped")]
        if key == "loss" and skipped:
            ax.scatter(skipped, [0.0] * len(skipped), marker="x", color="tab:gray", zorder=3,
                       label="no update (all advantages 0)")
            ax.legend(fontsize=7)
        ax.set(xlabel="step", title=what)
        _steps_axis(ax)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    p.png = _png(fig)
    return p


def plot_lineage(d: RunData) -> Plot:
    p = Plot("lineage", "Lineage of the best candidate")
    if not d.lineage:
        p.note = "no valid candidate yet"
        return p
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    gens = list(range(len(d.lineage)))
    scores = [c.score for c in d.lineage]
    ax.plot(gens, scores, marker="o", color="tab:purple")
    for g, c in zip(gens, d.lineage, strict=True):
        ax.annotate(f"#{c.id}\nstep {c.step}", (g, c.score), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8)
    ax.set(xlabel="generation (0: the root)", ylabel="score", xticks=gens,
           title=f"from the root to the best (#{d.best.id}): score by generation")
    ax.margins(x=0.15, y=0.25)
    ax.grid(alpha=0.3)
    p.png = _png(fig)
    return p


def draw_artifact(run: Run, c: Candidate) -> tuple[bytes | None, str]:
    """A PNG of a valid candidate's artefact drawn by its environment (`Environment.draw`), or
    None and a note saying why there is none. Used by the report and by `discover ui`."""
    if not c.ok or c.artifact is None:
        return None, f"candidate {c.id} has no artefact ({c.failure or 'none stored'})"
    try:
        env = load_environment(run.env, **run.env_options)
    except Exception as e:  # not installed here, or its options no longer load
        return None, f"the {run.env} environment cannot be loaded here ({e}): no picture"
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    try:
        drawn = env.draw(c.artifact, ax, c.metrics)
    except Exception as e:  # plugin code: say what went wrong, keep the rest of the page
        return None, f"the {run.env} environment failed to draw it: {type(e).__name__}: {e}"
    if not drawn:
        return None, f"the {run.env} environment draws no picture of its artefacts"
    return _png(fig), ""


def plot_artifact(d: RunData) -> Plot:
    p = Plot("artifact", "The best artefact")
    if d.best is None:
        p.note = "no valid candidate yet"
        return p
    p.png, p.note = draw_artifact(d.run, d.best)
    return p


PLOTS = (plot_best_by_step, plot_best_by_time, plot_rewards, plot_valid_rate, plot_learner,
         plot_lineage, plot_artifact)


# --- the page ---------------------------------------------------------------------------------

CSS = """body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}
figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:85%}.note{color:#a00}"""


def page(d: RunData, plots: list[Plot]) -> str:
    s = run_stats(d.run)
    rate = "-" if s["valid_rate"] is None else f"{100 * s['valid_rate']:.1f}%"
    facts = [("environment", f"{d.run.env} ({better_text(d.run)})"),
             ("run directory", str(d.run.path.resolve())),
             ("steps finished", s["steps"]), ("programs generated", s["samples"]),
             ("valid rate", rate), ("best score", fmt(s["best_score"])),
             ("best candidate", f"#{s['best_id']} (step {s['best_step']})"
              if s["best_id"] else "-"),
             ("samples to best", s["samples_to_best"] if s["samples_to_best"] is not None
              else "-"),
             ("report written", time.strftime("%Y-%m-%d %H:%M:%S"))]
    e = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           f"<title>discover report: {e(d.run.env)} {e(d.run.path.name)}</title>",
           f"<style>{CSS}</style></head><body>",
           f"<h1>discover: {e(d.run.env)} &mdash; {e(d.run.path.name)}</h1><table>"]
    out += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts]
    out.append("</table>")
    for p in plots:
        out.append(f"<figure id='{p.name}'><h2>{e(p.title)}</h2>")
        if p.png is not None:
            data = base64.b64encode(p.png).decode()
            out.append(f"<img alt='{e(p.title)}' src='data:image/png;base64,{data}'>")
        else:
            out.append(f"<p class='note'>{e(p.note)}</p>")
        out.append("</figure>")
        if p.name == "lineage" and d.lineage:
            out.append("<table><tr><th>generation</th><th>id</th><th>step</th><th>score</th>"
                       "<th>reward</th><th>policy version</th></tr>")
            out += [f"<tr><td>{g}</td><td>{c.id}</td><td>{c.step}</td><td>{fmt(c.score)}</td>"
                    f"<td>{c.reward:.6g}</td><td>{c.policy_version}</td></tr>"
                    for g, c in enumerate(d.lineage)]
            out.append("</table>")
    if d.best is not None:
        out.append(f"<h2>The best program (#{d.best.id})</h2>")
        out.append(f"<pre>{e(d.best.code or '(none: an initial state)')}</pre>")
        art = json.dumps(d.best.artifact)
        cut = art if len(art) <= 4000 else art[:4000] + " ..."
        out.append(f"<h3>Its artefact (JSON, {len(art):,} characters)</h3><pre>{e(cut)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def _write(path: Path, data: bytes) -> None:
    """Write, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write report.html (self-contained) and one PNG per plot; returns the HTML's path."""
    run = open_run(run_dir)
    d = load(run)
    plots = [make(d) for make in PLOTS]
    folder = Path(out) if out else RunDir(run.path).report
    folder.mkdir(parents=True, exist_ok=True)
    for p in plots:
        if p.png is not None:
            _write(folder / f"{p.name}.png", p.png)
        else:  # a picture from an earlier report would contradict this one
            (folder / f"{p.name}.png").unlink(missing_ok=True)
    target = folder / "report.html"
    _write(target, page(d, plots).encode())
    return target
