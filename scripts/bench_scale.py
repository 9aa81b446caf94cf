"""The driver's own work per step, and the read paths, on archives of 25,600 and 1,000,000
candidates.

No sandbox and no model: each step's children are synthetic Candidate rows shaped like a real
`erdos` step's (program ~1 KB, a 100-number artefact, 30 % failures), built in Python. Everything
else is the real code a step runs:

  select   Puct.select(B) and search.parent_view for each parent (the archive reads);
  render   prompt.render for each parent (the real `erdos` environment);
  commit   Archive.commit_step with the real Puct (one transaction: children, PUCT, metrics);
  files    the artefact file of each valid child (rundir.write_atomic, as run_step does).

Archives are grown once through the same API (commit_step of B x G children per step, one
transaction per step; `--groups-per-commit` packs several steps' groups into one commit_step call
when set above B) into DIR/run-SIZE and reused; measured steps are added on top. On each archive
(medians of `--repeat`):

  best     cli.cmd_best (`discover best RUN`, in-process); and as a subprocess (with imports);
  show     cli.cmd_show (`discover show RUN ID`) of the best candidate;
  ui-page  the server's /api/runs/0/candidates?limit=200 (views.ui.Runs.open + candidates);
  ui-series  the server's /api/runs/0/series (views.ui.series);
  ui-run   the server's /api/runs/0 (views.ui.Runs.info: the run's stats the page shows first);
  resume   what `discover run --resume` does that scales with the archive: Archive(path) (writer),
           load_puct, repair_run_dir.

Targets (issue 36): driver time per candidate at B x G = 512 at most 5 ms; on 1,000,000
candidates `best` at most 2 s, the UI's first page at most 1 s, resume at most 30 s.

    nice -n 19 python scripts/bench_scale.py --dir /tmp/scale-bench --sizes 25600 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from discover import cli, prompt
from discover.archive import Archive, Candidate
from discover.puct import Puct
from discover.registry import load_environment
from discover.rundir import RunDir, repair_run_dir, write_atomic
from discover.search import parent_view
from discover.views import ui

ENV = "erdos"
INITIAL = 8
FAIL_RATE = 0.3
FAILURES = ("timeout", "runtime_error", "invalid_artifact", "no_code")
DRIVER_TARGET_MS = 5.0
TARGETS_S = {"best": 2.0, "ui-page": 1.0, "resume": 30.0}
UI_LIMIT = 200


def _env():
    return load_environment(ENV)


def synthetic_children(rng: random.Random, parent: Candidate, g: int, starter: str,
                       serial: int) -> list[Candidate]:
    """G children of `parent` as a null-backend step would hand them to commit_step."""
    out = []
    base = parent.score if parent.score is not None else 0.5
    for i in range(g):
        code = f"{starter}\n# variant {serial}-{i}\nALPHA = {rng.random():.12f}\n"
        completion = f"```python\n{code}```"
        if rng.random() < FAIL_RATE:
            kind = rng.choice(FAILURES)
            out.append(Candidate(id=None, step=0, parent_id=parent.id, code=code, artifact=None,
                                 score=None, reward=-1.0, ok=False, failure=kind,
                                 log=f"{kind}: synthetic failure", completion=completion,
                                 eval_s=rng.random()))
            continue
        score = max(0.3, base + rng.gauss(0.0005, 0.003))
        art = [round(rng.random(), 6) for _ in range(100)]
        out.append(Candidate(id=None, step=0, parent_id=parent.id, code=code, artifact=art,
                             score=score, reward=-score, ok=True, log="ok",
                             stdout=f"score {score:.6f}\n", completion=completion,
                             eval_s=rng.random(), metrics={"c5": score}))
    return out


def init_run(path: Path, env) -> tuple[Archive, Puct]:
    rd = RunDir(path)
    rd.artifacts.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(f'[run]\nenv = "{ENV}"\n')
    archive = Archive(rd.archive)
    archive.set_meta("env", ENV)
    puct = Puct()
    states = []
    for art in env.initial_artifacts(INITIAL, 0):
        ev = env.verify(art)
        states.append(Candidate(id=None, step=-1, parent_id=None, code=env.starter_program(),
                                artifact=ev.artifact, score=ev.score, reward=env.reward(ev.score),
                                ok=True, metrics={"start_score": ev.score}))
    archive.add_initial(states, puct)
    return archive, puct


def driver_step(step: int, archive: Archive, puct: Puct, env, rd: RunDir, rng: random.Random,
                groups: int, group_size: int, write_files: bool = True) -> dict[str, float]:
    """One step's driver work, timed by phase (seconds)."""
    t0 = time.perf_counter()
    parent_ids = puct.select(groups)
    parents = [parent_view(archive, p) for p in parent_ids]
    t1 = time.perf_counter()
    [prompt.render(env, p, "block") for p in parents]
    t2 = time.perf_counter()
    starter = env.starter_program()
    kids = [synthetic_children(rng, archive.get(pid), group_size, starter, step * groups + g)
            for g, pid in enumerate(parent_ids)]
    t3 = time.perf_counter()
    valid = sum(c.ok for g in kids for c in g)
    metrics = {"step": step, "total": groups * group_size, "valid": valid, "tokens": 0,
               "seconds": {"generate": 0.0, "score": 0.0, "learn": 0.0}}
    ids = archive.commit_step(step, list(zip(parent_ids, kids, strict=True)), puct, metrics)
    t4 = time.perf_counter()
    if write_files:
        for g, gids in zip(kids, ids, strict=True):
            for c, cid in zip(g, gids, strict=True):
                if c.ok:
                    write_atomic(rd.artifact(cid), "[" + ",".join(map(str, c.artifact)) + "]")
    archive.best(1)
    t5 = time.perf_counter()
    return {"select": t1 - t0, "render": t2 - t1, "commit": t4 - t3, "files": t5 - t4,
            "synth": t3 - t2}


def grow(path: Path, size: int, env, groups: int, group_size: int, per_commit: int) -> None:
    """Grow the archive at `path` to at least `size` candidates (created if missing)."""
    rd = RunDir(path)
    if rd.archive.exists():
        archive = Archive(rd.archive)
        puct = archive.load_puct()
    else:
        archive, puct = init_run(path, env)
    rng = random.Random(archive.count())
    t0, n0 = time.perf_counter(), archive.count()
    try:
        while archive.count() < size:
            step = archive.last_step() + 1
            if per_commit <= groups:
                driver_step(step, archive, puct, env, rd, rng, groups, group_size)
            else:  # several steps' groups in one commit_step call (fewer, larger transactions)
                pids = puct.select(per_commit)
                kids = [synthetic_children(rng, archive.get(p), group_size,
                                           env.starter_program(), step * per_commit + g)
                        for g, p in enumerate(pids)]
                archive.commit_step(step, list(zip(pids, kids, strict=True)), puct,
                                    {"step": step, "total": per_commit * group_size})
            if step % 100 == 0:
                n = archive.count()
                print(f"  growing {path.name}: {n} candidates, "
                      f"{(n - n0) / (time.perf_counter() - t0):.0f}/s", flush=True)
    finally:
        archive.close()


def timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quiet(fn: Callable[[], object]) -> Callable[[], None]:
    def call() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            fn()
    return call


def measure(path: Path, env, groups: int, group_size: int, steps: int,
            repeat: int) -> dict[str, float]:
    rd = RunDir(path)
    out: dict[str, float] = {}

    def resume() -> None:
        a = Archive(rd.archive)
        a.load_puct()
        repair_run_dir(rd, a)
        a.close()

    def archive_open() -> None:
        Archive(rd.archive).close()

    def load_puct() -> None:
        with Archive(rd.archive, readonly=True) as a:
            a.load_puct()

    out["resume"] = timed(resume, repeat)
    out["resume: Archive()"] = timed(archive_open, repeat)
    out["resume: load_puct"] = timed(load_puct, repeat)
    # The driver's steps, on top of the grown archive.
    archive = Archive(rd.archive)
    puct = archive.load_puct()
    rng = random.Random(archive.count())
    phases: dict[str, list[float]] = {}
    for _ in range(steps):
        for k, v in driver_step(archive.last_step() + 1, archive, puct, env, rd, rng, groups,
                                group_size).items():
            phases.setdefault(k, []).append(v)
    n = groups * group_size
    for k in ("select", "render", "commit", "files"):
        out[f"driver: {k} ms/cand"] = 1000 * statistics.median(phases[k]) / n
    out["driver ms/cand"] = sum(out[f"driver: {k} ms/cand"] for k in ("select", "render",
                                                                      "commit", "files"))
    out["candidates"] = archive.count()
    best_id = archive.best(1)[0].id
    archive.close()

    out["best"] = timed(quiet(lambda: cli.cmd_best(argparse.Namespace(run=str(path), k=10))),
                        repeat)
    cmd = [sys.executable, "-c", "import sys; from discover.cli import main; "
           f"sys.exit(main(['best', {str(path)!r}]))"]
    out["best (subprocess)"] = timed(lambda: subprocess.run(cmd, check=True,
                                                            stdout=subprocess.DEVNULL), repeat)
    out["show"] = timed(quiet(lambda: cli.cmd_show(argparse.Namespace(run=str(path), id=best_id,
                                                                      full=False))), repeat)
    runs = ui.Runs([path])

    def page() -> None:
        with runs.open(0) as run:
            ui.candidates(run, limit=UI_LIMIT)

    def series() -> None:
        with runs.open(0) as run:
            ui.series(run)

    out["ui-page"] = timed(page, repeat)
    out["ui-run"] = timed(lambda: runs.info(0), repeat)
    out["ui-series"] = timed(series, repeat)
    return out


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return f"CPU: {model}, {os.cpu_count()} cores\nuptime: {up}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dir", type=Path, default=Path("/tmp/scale-bench"))
    p.add_argument("--sizes", type=int, nargs="+", default=[25_600, 1_000_000])
    p.add_argument("--groups", type=int, default=32, help="B: groups (parents) per step")
    p.add_argument("--group-size", type=int, default=16, help="G: children per group")
    p.add_argument("--groups-per-commit", type=int, default=0,
                   help="growing only: groups per commit_step call (default B: one step each)")
    p.add_argument("--steps", type=int, default=3, help="driver steps measured per archive")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--grow-only", action="store_true")
    args = p.parse_args()

    env = _env()
    print(machine(), flush=True)
    results = {}
    for size in args.sizes:
        path = args.dir / f"run-{size}"
        t0 = time.perf_counter()
        grow(path, size, env, args.groups, args.group_size, args.groups_per_commit or args.groups)
        print(f"{path}: grown in {time.perf_counter() - t0:.0f} s", flush=True)
        if not args.grow_only:
            results[size] = measure(path, env, args.groups, args.group_size, args.steps,
                                    args.repeat)
    if not results:
        return
    sizes = list(results)
    keys = [k for k in results[sizes[0]] if k != "candidates"]
    head = "".join(f"{results[s]['candidates']:>14,}" for s in sizes)
    ratio = len(sizes) > 1
    print(f"\n{args.groups} x {args.group_size} = {args.groups * args.group_size} candidates a "
          f"step; seconds unless marked (medians of {args.repeat}; driver: of {args.steps} steps)")
    print(f"{'':<26}{head}" + (f"{'ratio':>8}" if ratio else ""))
    for k in keys:
        row = "".join(f"{results[s][k]:>14.4f}" for s in sizes)
        if ratio:
            a, b = results[sizes[0]][k], results[sizes[-1]][k]
            row += f"{b / a:>8.1f}" if a > 0 else f"{'-':>8}"
        print(f"{k:<26}{row}")
    if ratio:
        print(f"{'(candidates ratio)':<26}{'':>{14 * len(sizes)}}"
              f"{results[sizes[-1]]['candidates'] / results[sizes[0]]['candidates']:>8.1f}")
    big = results[sizes[-1]]
    print()
    for s in sizes:
        d = results[s]["driver ms/cand"]
        print(f"driver at {results[s]['candidates']:,}: {d:.3f} ms/candidate; target <= "
              f"{DRIVER_TARGET_MS} ms: {'met' if d <= DRIVER_TARGET_MS else 'MISSED'}")
    for k, target in TARGETS_S.items():
        print(f"{k} at {big['candidates']:,}: {big[k]:.3f} s; target <= {target} s: "
              f"{'met' if big[k] <= target else 'MISSED'}")
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime after: {up}")


if __name__ == "__main__":
    main()
