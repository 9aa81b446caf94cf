"""The search loop: ALGORITHM.md's "One step", repeated, with every step durable before the next."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from discover import metrics_log, prompt
from discover.archive import Archive, Candidate
from discover.config import Config, ConfigError
from discover.edits import is_copy
from discover.environment import Environment, Parent, load_environment
from discover.initial_states import seed_initial_states, stored_initial_states
from discover.model_store import check_model
from discover.policy import Policy, Sample
from discover.puct import Puct
from discover.rundir import (
    RunDir,
    prepare_run_dir,
    record_sandbox,
    repair_run_dir,
    save_adapter,
    write_atomic,
)
from discover.scoring import GroupScorer, ScorerPool, start_ray
from discover.signals import Interrupted, resume_command, stop_on_signals
from discover.wiring import Learner, make_learner, make_policy, publish_adapter

SCHEMA_VERSION = 1


@dataclass
class StepReport:
    step: int
    steps: int
    best_score: float | None
    valid: int
    total: int
    tokens: int
    seconds: dict[str, float] = field(default_factory=dict)  # generate, score, learn
    learner: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # the step's line of metrics.jsonl


def parent_view(archive: Archive, cand_id: int) -> Parent:
    c = archive.get(cand_id)
    if c.parent_id is not None:
        before = archive.get(c.parent_id).score
    else:  # an initial state: its starter program ran on the starting construction
        before = c.metrics.get("start_score")
    return Parent(code=c.code, artifact=c.artifact, score=c.score, parent_score=before,
                  stdout=c.stdout)


def run(cfg: Config, resume: bool = False,
        on_step: Callable[[StepReport], None] | None = None) -> Path:
    """Run (or resume) a search; returns the run directory.

    Ctrl-C (SIGINT) asks the run to stop after the step in progress is stored; a second Ctrl-C
    or SIGTERM stops it at once and the step in progress is discarded. Either way it raises
    `Interrupted` after closing the archive and the scorers.
    """
    cfg.validate()
    metrics_log.check(cfg.run.log)  # a missing optional package fails before anything is made
    env = load_environment(cfg.run.env, **cfg.env)
    if cfg.policy.backend == "hf":
        check_model(cfg.policy.model)  # before anything is created or started
    stored = stored_initial_states(cfg.run.init_from, cfg.run.env) if cfg.run.init_from else []
    rd, cfg = prepare_run_dir(cfg, resume)
    archive = Archive(rd.archive)
    pool = log = policy = learner = None
    with stop_on_signals() as stop:
        try:
            if resume and archive.get_meta("env") not in (None, cfg.run.env):
                raise ConfigError(
                    f"{rd.path} holds a run of {archive.get_meta('env')!r}, not {cfg.run.env!r}")
            puct_args = dict(c=cfg.run.puct_c, strategy=cfg.run.selection, seed=cfg.run.seed)
            start_ray(cfg.ray.address)
            pool = ScorerPool(cfg.run.env, cfg.env, cfg.ray.scorer_slots)
            record_sandbox(rd, cfg, archive, pool.sandbox_modes())
            if archive.get_meta("initialised"):
                puct = archive.load_puct(**puct_args)
            else:
                archive.set_meta("env", cfg.run.env)
                archive.set_meta("schema", SCHEMA_VERSION)
                puct = Puct(**puct_args)
                if stored:  # the same starting states as another run (paired ablations)
                    archive.add_initial(stored, puct)
                else:
                    seed_initial_states(env, cfg, archive, puct, pool)  # marks it initialised
            repair_run_dir(rd, archive)  # what a kill between commit and file writes left
            policy = make_policy(cfg)
            learner = make_learner(cfg, policy)
            start = archive.last_step() + 1
            if learner is not None and start > 0:
                version = archive.step_metrics()[-1].get("version", 0)
                if version > 0:
                    learner.load(rd.adapter(version))
                    publish_adapter(policy, rd)
            if cfg.run.log:
                log = metrics_log.MetricsLog(cfg.run.log, rd.path, cfg.to_dict())

            parts = RunParts(cfg, env, archive, puct, policy, learner, pool, rd)
            t_run = time.monotonic()
            for step in range(start, cfg.run.steps):
                if stop["requested"] or (
                        cfg.run.budget_s and time.monotonic() - t_run >= cfg.run.budget_s):
                    break
                report = run_step(step, parts)
                if log is not None:
                    log.write(step, {**report.metrics, "best_score": report.best_score})
                if on_step:
                    on_step(report)
            done = archive.last_step() + 1
            if stop["requested"] and done < cfg.run.steps:
                raise Interrupted(f"stopped after step {done}: {done} finished steps are stored",
                                  resume_command(cfg))
        except KeyboardInterrupt as e:
            if isinstance(e, Interrupted):
                raise
            done = archive.last_step() + 1
            raise Interrupted(f"stopped before step {done + 1} was stored (it is discarded and "
                              f"runs again on resume); {done} finished steps are stored",
                              resume_command(cfg)) from None
        finally:
            if log is not None:
                log.close()
            if pool is not None:
                pool.shutdown()
            for part in (learner, policy):  # GPU actors hold their memory until killed
                if hasattr(part, "shutdown"):
                    part.shutdown()
            archive.close()
    return rd.path


@dataclass
class RunParts:
    """What one step works with, made once per run."""

    cfg: Config
    env: Environment
    archive: Archive
    puct: Puct
    policy: Policy
    learner: Learner | None
    pool: ScorerPool
    rd: RunDir


def run_step(step: int, parts: RunParts) -> StepReport:
    cfg, env, archive, puct = parts.cfg, parts.env, parts.archive, parts.puct
    policy, learner, pool, rd = parts.policy, parts.learner, parts.pool, parts.rd
    seed = cfg.run.seed * 1_000_003 + step
    t0 = time.monotonic()
    parent_ids = puct.select(cfg.run.groups)  # 1. select B parents with PUCT
    parents = [parent_view(archive, p) for p in parent_ids]
    edit = cfg.run.edit
    prompts = [prompt.render(env, p, edit) for p in parents]  # 2. one prompt per parent
    prefill = [prompt.prefill(env, p, edit) if cfg.policy.prefill else "" for p in parents]
    scoring = GroupScorer(env, pool, parents, seed, edit)  # 4. each program goes to the
    samples = policy.sample(prompts, cfg.run.group_size,  # 3. G completions per prompt
                            max_new_tokens=cfg.policy.max_new_tokens,
                            temperature=cfg.policy.temperature, seed=seed, prefill=prefill,
                            stop=prompt.stop(env, edit) if cfg.policy.prefill else (),
                            on_sample=scoring.send if cfg.run.stream_scoring else None)
    t1 = time.monotonic()
    groups = scoring.children(samples)  # 4. ... sandbox as soon as it is sampled; the rest here
    t2 = time.monotonic()
    learn: dict = {}
    adapter = None
    if learner is not None:  # 6-7. advantages per group, one LoRA step; shared model on CPU
        copies = [[is_copy(c.code, p.code, env.language) for c in g]
                  for p, g in zip(parents, groups, strict=True)]
        learn = learner.step(samples, [[c.reward for c in g] for g in groups], copies)
        if not any(a["version"] == policy.version for a in archive.adapters()):
            save_adapter(learner, rd, policy.version)  # a new version (a skipped step: none)
            adapter = (policy.version, str(rd.adapter(policy.version).relative_to(rd.path)))
            publish_adapter(policy, rd)  # 7. hand the new weights to the samplers (vLLM)
    t3 = time.monotonic()
    for g in groups:
        for c in g:
            c.step = step
            c.gen_s = (t1 - t0) / max(1, len(g) * len(groups))
    metrics = step_metrics(step, groups, samples, policy.version, learn,
                           {"generate": t1 - t0, "score": t2 - t1, "learn": t3 - t2})
    usage = getattr(policy, "last_stats", {})
    if "requests" in usage:  # an HTTP endpoint: its token usage (it returns no token ids)
        metrics["usage"] = {k: v for k, v in usage.items() if k != "seconds"}
        metrics["tokens"] = metrics["tokens"] or usage["completion_tokens"]
    # 5. record every child and update PUCT statistics, all in one transaction
    # (with the step's new adapter version, if any: a kill cannot separate the two)
    ids = archive.commit_step(step, list(zip(parent_ids, groups, strict=True)), puct, metrics,
                              adapter=adapter)
    # Files mirror the archive; a kill here leaves some missing, and resume writes them again.
    for g, gids in zip(groups, ids, strict=True):
        for c, cid in zip(g, gids, strict=True):
            if c.ok:
                write_atomic(rd.artifact(cid), json.dumps(c.artifact))
    with open(rd.metrics, "a") as f:
        f.write(json.dumps(metrics) + "\n")
    best = archive.best(1)
    return StepReport(step=step, steps=cfg.run.steps, best_score=best[0].score if best else None,
                      valid=metrics["valid"], total=metrics["total"], tokens=metrics["tokens"],
                      seconds=metrics["seconds"], learner=learn, metrics=metrics)


def step_metrics(step: int, groups: list[list[Candidate]], samples: list[list[Sample]],
                 version: int, learn: dict, seconds: dict) -> dict:
    children = [c for g in groups for c in g]
    valid = [c for c in children if c.ok]
    failures: dict[str, int] = {}
    for c in children:
        if c.failure:
            failures[c.failure] = failures.get(c.failure, 0) + 1
    return {
        "step": step, "version": version, "total": len(children), "valid": len(valid),
        "mean_reward": sum(c.reward for c in children) / max(1, len(children)),
        "best_step_reward": max((c.reward for c in valid), default=None),
        "tokens": sum(len(s.completion_ids) for g in samples for s in g),
        "failures": failures, "seconds": seconds,
        "samples_per_hour": 3600 * len(children) / max(1e-9, sum(seconds.values())),
        "learner": {k: v for k, v in learn.items() if isinstance(v, (int, float, bool))},
        "time": time.time(),
    }


