"""A run directory as `discover run` leaves it, written through the real Archive (a real SQLite
file, toy artefacts scored by the real toy environment), so a test needs no model."""

from __future__ import annotations

import json
import time
from pathlib import Path

from discover import config as config_mod
from discover.archive import Archive, Candidate
from discover.config import Config
from discover.puct import Puct
from discover.rundir import RunDir, repair_run_dir
from environments.toy import ToyEnvironment

SECONDS = {"generate": 1.0, "score": 0.5, "learn": 0.2}  # each step's; they sum to 1.7


def program(art) -> str:
    return f"def solve():\n    # digits\n    return {art!r}\n"


def simple_plan(steps: int) -> list:
    """`steps` steps of one group: a valid child ([step, 1]) beside a crash."""
    return [[[[step, 1], "crash"]] for step in range(steps)]


def write_adapter(path: Path, version: int) -> None:
    """The files a saved LoRA adapter version holds (placeholders)."""
    from discover.learners.peft import ADAPTER_FILE, OPTIMIZER_FILE, STATE_FILE  # (imports torch)

    path.mkdir(parents=True)
    for name in (ADAPTER_FILE, "adapter_config.json", OPTIMIZER_FILE):
        (path / name).write_text("{}")
    (path / STATE_FILE).write_text(json.dumps({"version": version}))


def fake_run(path: Path, plan: list | int = 3, *, env: str = "toy", config: dict | None = None,
             learning: bool = False, files: bool = False, seconds: dict = SECONDS) -> dict:
    """Write a run directory at `path`: config.toml (run.env = `env`, run.run_dir = `path`, then
    the `config` sections), and an archive whose initial state is [0] and whose steps follow
    `plan` (an int n: simple_plan(n)).

    Each step of the plan is a list of groups; each group a list of children, a child a toy
    artefact (valid) or a failure kind. The first group's parent is the best so far, the others'
    the other valid candidates in id order. `learning`: the steps record a learner (policy
    version v = step + 1, learner metrics, an adapter per step); `files`: the artefact files and
    metrics.jsonl are written (rundir.repair_run_dir, as a run does).
    Returns {"best_id", "best_score", "valid_rate"}."""
    toy = ToyEnvironment()
    plan = simple_plan(plan) if isinstance(plan, int) else plan
    rd = RunDir(path)
    rd.path.mkdir(parents=True, exist_ok=True)
    cfg = config_mod.apply(Config(), {"run": {"env": env, "run_dir": str(path)}})
    cfg = config_mod.apply(cfg, config or {})
    rd.config.write_text(config_mod.dumps(cfg))
    a = Archive(rd.archive)
    a.set_meta("env", env)
    puct = Puct()
    ev = toy.verify([0])
    [best_id] = a.add_initial([Candidate(None, -1, None, None, ev.artifact, ev.score, ev.reward,
                                         True)], puct)
    best, ids = ev.score, [best_id]
    for step, groups in enumerate(plan):
        v = step + 1 if learning else 0  # the version the step's learner left
        pv = step if learning else 0  # the version the step's children were sampled with
        parents = [best_id] + [i for i in ids if i != best_id][: len(groups) - 1]
        commit, flat = [], []
        for parent, kids in zip(parents, groups, strict=True):
            children = []
            for k in kids:
                if isinstance(k, str):
                    children.append(Candidate(
                        None, step, None, None if k == "no_code" else "def solve(:", None, None,
                        toy.failure_reward, False, k, log=f"{k} here", policy_version=pv))
                else:
                    e = toy.verify(k)
                    children.append(Candidate(
                        None, step, None, program(k), e.artifact, e.score, e.reward, True,
                        log=f"ran step {step}", policy_version=pv, gen_s=1.0, eval_s=0.2,
                        metrics={"wall_s": 0.1}))
            commit.append((parent, children))
            flat += children
        metrics = {"step": step, "version": v, "total": len(flat),
                   "valid": sum(c.ok for c in flat),
                   "failures": {c.failure: 1 for c in flat if c.failure}, "seconds": seconds,
                   "learner": {"beta": 1.5 + step, "kl": 0.69, "loss": -0.1 * step,
                               "skipped": False} if learning else {},
                   "time": time.time()}
        if learning:
            write_adapter(rd.adapter(v), v)
        a.commit_step(step, commit, puct, metrics,
                      adapter=(v, f"adapters/v{v:05d}") if learning else None)
        for c in flat:  # (commit_step gave them their ids)
            if c.ok:
                ids.append(c.id)
                if c.score > best:
                    best_id, best = c.id, c.score
    if files:
        rd.artifacts.mkdir(exist_ok=True)
        repair_run_dir(rd, a)
    a.close()
    generated = [c for step in plan for g in step for c in g]
    return {"best_id": best_id, "best_score": best,
            "valid_rate": sum(not isinstance(c, str) for c in generated) / len(generated)}
