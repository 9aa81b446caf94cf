"""The search loop: ALGORITHM.md's "One step", repeated, with every step durable before the next.

Steps 5-7 are stored together: the archive commit comes after the learner's step, so a step's
children, PUCT statistics, metrics and the adapter version they produced land in one
transaction (a killed run never holds children without the weights they trained).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from discover import metrics_log, prompt
from discover.archive import Archive, Candidate
from discover.backends.base import Policy, Sample, publish_adapter
from discover.backends.factory import make_policy
from discover.config import Config, ConfigError
from discover.edits import is_copy
from discover.environment import Environment, Parent
from discover.initial_states import open_tree, stored_initial_states
from discover.learners.base import Learner
from discover.learners.factory import make_learner
from discover.model.store import check_model
from discover.progress import StepReport
from discover.puct import Puct
from discover.registry import load_environment
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
            start_ray(cfg.ray.address)
            pool = ScorerPool(cfg.run.env, cfg.env, cfg.ray.scorer_slots)
            record_sandbox(rd, cfg, archive, pool.sandbox_modes())
            puct = open_tree(env, cfg, archive, pool, stored)
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
                if part is not None:
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
    cfg, env, archive, policy, rd = parts.cfg, parts.env, parts.archive, parts.policy, parts.rd
    seed = cfg.run.seed * 1_000_003 + step
    edit, prefilled = cfg.run.edit, cfg.policy.prefill
    t0 = time.monotonic()
    # 1. Select B parents with PUCT.
    parent_ids = parts.puct.select(cfg.run.groups)
    parents = [parent_view(archive, p) for p in parent_ids]
    # 2. Render one prompt per parent (and the opening of the answer where it is prefilled).
    prompts = [prompt.render(env, p, edit) for p in parents]
    prefill = [prompt.prefill(env, p, edit) if prefilled else "" for p in parents]
    # 3. Sample G completions per prompt, each streamed to the sandbox as soon as it is sampled.
    scoring = GroupScorer(env, parts.pool, parents, seed, edit)
    samples = policy.sample(prompts, cfg.run.group_size,
                            max_new_tokens=cfg.policy.max_new_tokens,
                            temperature=cfg.policy.temperature, seed=seed, prefill=prefill,
                            stop=prompt.stop(env, edit) if prefilled else (),
                            on_sample=scoring.send if cfg.run.stream_scoring else None)
    t1 = time.monotonic()
    # 4. Build the children: the scores streaming started, the rest scored here.
    groups = scoring.children(samples)
    t2 = time.monotonic()
    # 6-7. Learn (advantages per group, one LoRA step) and publish the new adapter.
    learn, adapter = learn_and_publish(parts, parents, samples, groups)
    t3 = time.monotonic()
    for g in groups:
        for c in g:
            c.step = step
            c.gen_s = (t1 - t0) / max(1, len(g) * len(groups))
    metrics = metrics_log.step_metrics(step, groups, samples, policy, learn,
                                       {"generate": t1 - t0, "score": t2 - t1, "learn": t3 - t2})
    # 5. Commit the step: children, PUCT statistics, metrics and adapter in one transaction.
    ids = archive.commit_step(step, list(zip(parent_ids, groups, strict=True)), parts.puct,
                              metrics, adapter=adapter)
    # Mirror the files: a kill here leaves some missing, and resume writes them again.
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


def learn_and_publish(parts: RunParts, parents: list[Parent], samples: list[list[Sample]],
                      groups: list[list[Candidate]]) -> tuple[dict, tuple[int, str] | None]:
    """The learner's metrics, and (version, adapter folder) where the step made a new version."""
    learner, policy, rd = parts.learner, parts.policy, parts.rd
    if learner is None:
        return {}, None
    copies = [[is_copy(c.code, p.code, parts.env.language) for c in g]
              for p, g in zip(parents, groups, strict=True)]
    learn = learner.step(samples, [[c.reward for c in g] for g in groups], copies)
    if any(a["version"] == policy.version for a in parts.archive.adapters()):
        return learn, None  # a skipped step (no gradient): no new version
    save_adapter(learner, rd, policy.version)
    publish_adapter(policy, rd)  # vLLM's generators load it; the CPU sampler already has it
    return learn, (policy.version, str(rd.adapter(policy.version).relative_to(rd.path)))
