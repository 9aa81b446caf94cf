"""Read-only views of a run directory: one candidate, a lineage tree, an export, a comparison.

A run may still be writing its directory (the driver is the archive's single writer), so nothing
here writes into it: the archive is opened read-only and exports go to a folder of their own.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discover import config as config_mod
from discover.archive import Archive, ArchiveError, Candidate
from discover.config import ConfigError
from discover.registry import registered
from discover.rundir import RunDir

PROGRAM_SUFFIX = {"python": ".py", "cpp": ".cpp"}
ARTIFACT_PREVIEW = 2000  # characters of an artefact's JSON that `show` prints without --full


@dataclass
class Run:
    path: Path
    archive: Archive
    env: str
    env_options: dict  # the [env] table of the run's config.toml
    direction: str | None  # "min" / "max"; None when the environment is not installed here
    language: str | None


def open_run(path: str | Path) -> Run:
    rd = RunDir(path)
    path = rd.path
    if not rd.holds_run():
        raise ArchiveError(f"{path} holds no run: no {rd.archive.name} there")
    archive = Archive(rd.archive, readonly=True)
    env = archive.get_meta("env") or "?"
    options: dict = {}
    if rd.config.is_file():
        try:
            options = config_mod.load_toml(rd.config).get("env", {})
        except ConfigError:
            pass  # the archive still says everything these views need
    direction = language = None
    ep = registered().get(env)
    if ep is not None:
        try:
            cls = ep.load()
            direction, language = cls.direction, cls.language
        except Exception:  # a broken plugin must not stop anyone reading the archive
            pass
    elif "/" in env:  # a problem folder (discover/problem_folder.py): Python, its direction
        direction, language = options.get("direction", "max"), "python"
    return Run(path, archive, env, options, direction, language)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.10g}"


def better_text(run: Run) -> str:
    return {"min": "lower is better", "max": "higher is better"}.get(run.direction or "",
                                                                      "direction unknown")


def best_or(run: Run, cand_id: int | None) -> Candidate:
    """The candidate `cand_id`, or the best valid one when it is None."""
    if cand_id is not None:
        return run.archive.get(cand_id)
    best = run.archive.best(1)
    if not best:
        raise ArchiveError(f"{run.path} holds no valid candidate yet")
    return best[0]


def _line(c: Candidate) -> str:
    what = f"score {fmt(c.score)}" if c.ok else f"failed: {c.failure}"
    tag = "  (initial)" if c.initial else ""
    return f"#{c.id}  step {c.step}  {what}  reward {c.reward:.6g}{tag}"


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines()) or prefix + "(empty)"


# --- show -------------------------------------------------------------------------------------

def show_text(run: Run, cand_id: int, full: bool = False) -> str:
    a = run.archive
    with a.snapshot():
        c = a.get(cand_id)
        chain = a.lineage(cand_id)
        kids = a.children(cand_id)
    status = "valid" if c.ok else f"failed ({c.failure})"
    out = [f"candidate {c.id} of {run.path} ({run.env}, {better_text(run)})",
           f"status: {status}",
           f"score: {fmt(c.score)}    reward: {c.reward:.10g}",
           f"step {c.step}, group {c.group_idx}, parent {c.parent_id}, policy version "
           f"{c.policy_version}{', initial state' if c.initial else ''}",
           f"generation {c.gen_s:.2f} s, evaluation {c.eval_s:.2f} s, {len(kids)} children"]
    if c.metrics:
        out.append("metrics: " + json.dumps(c.metrics)[:ARTIFACT_PREVIEW])
    out += ["", "lineage (root first):"]
    out += [f"  {_line(x)}" + ("   <- this" if x.id == c.id else "") for x in chain]
    if c.log:
        out += ["", "log:", _indent(c.log)]
    if c.stdout and c.stdout != c.log:
        out += ["", "stdout (tail):", _indent(c.stdout)]
    if c.code is not None:
        out += ["", f"program ({run.language or 'code'}):", _indent(c.code)]
    elif c.initial:
        out += ["", "program: none (an initial state)"]
    else:
        out += ["", "program: none: the model's completion held no code block to run"]
    if c.completion and (full or c.code is None):
        tail = c.completion if full else c.completion[-ARTIFACT_PREVIEW:]
        cut = "" if tail == c.completion else f", the last {ARTIFACT_PREVIEW:,} characters"
        out += ["", f"completion (the model's answer{cut}):", _indent(tail)]
    if c.artifact is None:
        out += ["", "artefact: none"]
    else:
        text = json.dumps(c.artifact)
        if full or len(text) <= ARTIFACT_PREVIEW:
            out += ["", f"artefact (JSON, {len(text):,} characters):", _indent(text)]
        else:
            out += ["", f"artefact (JSON, {len(text):,} characters; the first "
                        f"{ARTIFACT_PREVIEW:,} shown: --full for all, or discover export):",
                    _indent(text[:ARTIFACT_PREVIEW] + " ...")]
    return "\n".join(out)


# --- tree -------------------------------------------------------------------------------------

def _siblings(a: Archive, c: Candidate) -> tuple[list[Candidate], list[Candidate],
                                                  Candidate | None]:
    """The other children of c's parent: all, the valid ones, and the best of those."""
    if c.parent_id is None:
        return [], [], None
    others = [x for x in a.children(c.parent_id) if x.id != c.id]
    valid = [x for x in others if x.ok]
    return others, valid, max(valid, key=lambda x: x.reward) if valid else None


def _siblings_note(a: Archive, c: Candidate) -> str:
    others, valid, best = _siblings(a, c)
    if not others:
        return ""
    note = f"   [{len(others)} siblings: {len(valid)} valid"
    if best is not None:
        note += f", best #{best.id} score {fmt(best.score)}"
    return note + f", {len(others) - len(valid)} failed]"


def _ranked_children(a: Archive, c: Candidate) -> list[Candidate]:
    """Valid children first, best reward first."""
    return sorted(a.children(c.id), key=lambda x: (not x.ok, -x.reward, x.id))


def tree_text(run: Run, cand_id: int | None = None, depth: int = 1, width: int = 8) -> str:
    """The lineage of a candidate (the best by default) from its root, each ancestor with a
    note on its siblings, then its own descendants down to `depth` generations (the `width`
    best children of each node; the rest counted)."""
    a = run.archive
    with a.snapshot():
        target = best_or(run, cand_id)
        is_best = [b.id for b in a.best(1)] == [target.id]
        chain = a.lineage(target.id)
        head = (f"lineage of #{target.id}{' (the best so far)' if is_best else ''} in {run.path}: "
                f"{run.env}, {better_text(run)}, {len(chain) - 1} generation(s) from its root")
        out = [head]
        for g, c in enumerate(chain):
            pad = "    " * (g - 1) + "└── " if g else ""
            mark = "   <== this" if c.id == target.id else _siblings_note(a, c)
            out.append(pad + _line(c) + mark)
        _subtree(a, target, "    " * (len(chain) - 1), depth, width, out)
    return "\n".join(out)


def _subtree(a: Archive, c: Candidate, pad: str, depth: int, width: int, out: list[str]) -> None:
    if depth <= 0:
        return
    kids = _ranked_children(a, c)
    shown = kids[:width]
    for i, k in enumerate(shown):
        last = i == len(shown) - 1 and len(kids) <= width
        out.append(pad + ("└── " if last else "├── ") + _line(k))
        _subtree(a, k, pad + ("    " if last else "│   "), depth - 1, width, out)
    if len(kids) > width:
        rest = kids[width:]
        out.append(pad + f"└── ... {len(rest)} more children "
                         f"({sum(x.ok for x in rest)} valid)")


def brief(c: Candidate) -> dict:
    """A candidate without its code, artefact and logs: what lists and trees show."""
    return {"id": c.id, "step": c.step, "parent_id": c.parent_id, "score": c.score,
            "reward": c.reward, "ok": c.ok, "failure": c.failure, "initial": c.initial,
            "policy_version": c.policy_version}


def tree_data(run: Run, cand_id: int | None = None, depth: int = 1, width: int = 8) -> dict:
    """What tree_text shows, as data: the chain from the root to the candidate (the best by
    default), each ancestor with its siblings counted, and its descendants to `depth`
    generations (the `width` best children of each; `more` counts the rest)."""
    a = run.archive
    with a.snapshot():
        target = best_or(run, cand_id)
        best = a.best(1)
        chain = []
        for c in a.lineage(target.id):
            others, valid, top = _siblings(a, c)
            chain.append({**brief(c), "siblings": len(others), "siblings_valid": len(valid),
                          "best_sibling": None if top is None else brief(top)})
        return {"target": target.id, "best": best[0].id if best else None, "chain": chain,
                "descendants": _subtree_data(a, target, depth, width)}


def _subtree_data(a: Archive, c: Candidate, depth: int, width: int) -> dict:
    kids = _ranked_children(a, c)
    shown = kids[:width] if depth > 0 else []
    rest = kids[len(shown):]
    return {"children": [{**brief(k), "descendants": _subtree_data(a, k, depth - 1, width)}
                         for k in shown],
            "more": len(rest), "more_valid": sum(x.ok for x in rest)}


# --- export -----------------------------------------------------------------------------------

def verify_command(run: Run, artifact_file: Path) -> str:
    sets = [f"--set env.{k}={json.dumps(v)}" for k, v in sorted(run.env_options.items())]
    return shlex.join(["discover", "verify", run.env, str(artifact_file)]) + \
        "".join(" " + shlex.quote(s) for s in sets)


def export(run: Run, cand_id: int | None, out: str | Path,
           fmt: str = "discover") -> dict[str, Path]:
    """Write a candidate's artefact (artifact.json, which `discover verify` reads), its program
    and a candidate.json describing it into `out`, a new or empty folder. `fmt` "openevolve" or
    "shinka" writes instead a problem folder those tools take, the program as its initial
    program (see export_folder)."""
    if fmt != "discover":
        return export_folder(run, cand_id, out, fmt)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; export writes into a "
                              f"new folder so that nothing is overwritten")
    a = run.archive
    with a.snapshot():
        c = best_or(run, cand_id)
        chain = a.lineage(c.id)
    if not c.ok or c.artifact is None:
        raise ArchiveError(f"candidate {c.id} is not valid ({c.failure}): it has no artefact to "
                           f"export; `discover show {run.path} {c.id}` shows its program and log")
    out.mkdir(parents=True, exist_ok=True)
    files = {"artifact": out / "artifact.json", "candidate": out / "candidate.json"}
    files["artifact"].write_text(json.dumps(c.artifact))
    if c.code is not None:
        files["program"] = out / ("program" + PROGRAM_SUFFIX.get(run.language or "", ".txt"))
        files["program"].write_text(c.code)
    meta: dict[str, Any] = {
        "env": run.env, "env_options": run.env_options, "id": c.id, "step": c.step,
        "score": c.score, "reward": c.reward, "direction": run.direction,
        "policy_version": c.policy_version, "run": str(run.path.resolve()),
        "lineage": [{"id": x.id, "step": x.step, "score": x.score} for x in chain],
        "files": {k: p.name for k, p in files.items()},
        "verify": verify_command(run, Path("artifact.json")),
    }
    files["candidate"].write_text(json.dumps(meta, indent=2) + "\n")
    return files


def export_folder(run: Run, cand_id: int | None, out: str | Path, fmt: str) -> dict[str, Path]:
    """A problem folder in OpenEvolve's or ShinkaEvolve's shape whose initial program is the
    candidate's program. A run of a problem folder brings the folder's other files (evaluator,
    config, data) along, with the evaluator renamed to the target tool's name; a run of an
    installed environment gets the program only (that tool needs an evaluator written for it)."""
    from discover.problem_folder import SHAPES, SHIMS, folder_files

    if fmt not in SHAPES:
        raise ValueError(f"unknown export format {fmt!r}; known: discover, {', '.join(SHAPES)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; export writes into a "
                              f"new folder so that nothing is overwritten")
    with run.archive.snapshot():
        c = best_or(run, cand_id)
    if not c.ok or not c.code:
        raise ArchiveError(f"candidate {c.id} is not a valid program ({c.failure}); "
                           f"`discover show {run.path} {c.id}` shows it")
    evaluator, initial = SHAPES[fmt]
    files: dict[str, bytes] = {}
    source = Path(run.env)
    if "/" in run.env and source.is_dir():
        from discover.problem_folder import read_folder

        folder = read_folder(source)
        files = {k: v for k, v in folder_files(folder.root).items()
                 if k != folder.initial and not k.startswith(("_discover/", "openevolve/",
                                                               "shinka/"))}
        if folder.shape != fmt:  # the folder's own evaluator stays; a wrapper speaks the other
            files[evaluator] = (SHIMS / f"{Path(evaluator).stem}_for_{fmt}.py").read_bytes()
    files[initial] = c.code.encode()
    written = {}
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
        written[rel] = out / rel
    return {"initial": written[initial], **({"evaluator": written[evaluator]}
                                             if evaluator in written else {})}


# --- compare ----------------------------------------------------------------------------------

def run_stats(run: Run) -> dict:
    """Best, valid rate, samples per hour and samples-to-best of one run (samples: generated
    candidates, in the order they were stored; samples-to-best counts those up to and including
    the best; samples per hour: over the steps' own time, so pauses between resumes do not
    count). Counted on the archive's indexes: it costs the same at any archive size."""
    a = run.archive
    with a.snapshot():
        steps = a.last_step() + 1
        metrics = a.step_metrics()
        samples, valid = a.generated(), a.generated(valid=True)
        best = a.best(1)
        best = best[0] if best else None
        start = a.created_at()
        to_best = a.generated(upto=best.id) if best is not None else None
        best_at = a.created_at(best.id) if best is not None else None
    step_s = sum(sum(m.get("seconds", {}).values()) for m in metrics)
    step_samples = sum(m.get("total", 0) for m in metrics)
    stats = {"run": str(run.path), "env": run.env, "steps": steps, "samples": samples,
             "samples_per_hour": 3600 * step_samples / step_s if step_s > 0 else None,
             "valid_rate": valid / samples if samples else None, "best_score": None,
             "best_id": None, "best_step": None, "samples_to_best": None,
             "time_to_best_s": None}
    if best is not None:
        stats.update(best_score=best.score, best_id=best.id, best_step=best.step,
                     samples_to_best=to_best, time_to_best_s=best_at - start)
    return stats


def compare_text(runs: list[Run]) -> str:
    stats = [run_stats(r) for r in runs]
    head = ["run", "env", "steps", "samples", "samples/h", "valid", "best score", "best id", "step",
            "samples to best", "time to best"]
    table = [head]
    for s in stats:
        rate = "-" if s["valid_rate"] is None else f"{100 * s['valid_rate']:.1f}%"
        t = s["time_to_best_s"]
        per_hour = "-" if s["samples_per_hour"] is None else f"{s['samples_per_hour']:.0f}"
        table.append([s["run"], s["env"], str(s["steps"]), str(s["samples"]), per_hour, rate,
                      fmt(s["best_score"]), str(s["best_id"] or "-"),
                      "-" if s["best_step"] is None else str(s["best_step"]),
                      "-" if s["samples_to_best"] is None else str(s["samples_to_best"]),
                      "-" if t is None else _duration(t)])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in table]
    by_env = {r.env: r for r in runs}
    notes = [f"{env}: {better_text(r)}" for env, r in by_env.items()]
    if len(by_env) > 1:
        notes.append("the runs are of different environments: their scores do not compare")
    return "\n".join(lines + [""] + notes)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
