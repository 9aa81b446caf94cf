"""The search loop (docs/METHOD.md, "One step"): a run opens its parts, repeats one step, and
closes them; every step is durable before the next.

One step, in seven phases (numbered so in the comments below): 1 select, 2 render prompts,
3 sample, 4 score, 5 learn (advantages + one LoRA step), 6 publish the adapter, 7 commit
(children, PUCT statistics, metrics and the adapter version in one transaction). The commit
comes after the learner's step, so a killed run never holds children without the weights they
trained.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ray.exceptions import RayActorError

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
from discover.scoring import GroupScorer, ScorerPool, ScorersLost, start_ray
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
        on_step: Callable[[StepReport], None] | None = None,
        env: Environment | None = None) -> Path:
    """Run (or resume) a search; returns the run directory. `env`: the run's environment where
    the caller has loaded it already (from cfg.run.env and cfg.env), so it is loaded once.

    Ctrl-C (SIGINT) asks the run to stop after the step in progress is stored; a second Ctrl-C
    or SIGTERM stops it at once and the step in progress is discarded. Either way it raises
    `Interrupted` after closing the archive and the scorers.
    """
    parts, stored = prepare_run(cfg, resume, env)
    with stop_on_signals() as stop:
        try:
            open_run(parts, resume, stored)
            run_loop(parts, stop, on_step)
        except (ScorersLost, RayActorError) as e:
            # A cluster fault (no scorer left, a generator or learner actor lost): stop cleanly;
            # on resume the step runs again with new actors and the last committed adapter.
            done = parts.archive.last_step() + 1
            what = str(e) if isinstance(e, ScorersLost) else \
                f"a generator or learner actor was lost ({type(e).__name__})"
            raise Interrupted(f"stopped before step {done + 1} was stored: {what}; {done} "
                              f"finished steps are stored", resume_command(parts.cfg)) from None
        except KeyboardInterrupt as e:
            if isinstance(e, Interrupted):
                raise
            done = parts.archive.last_step() + 1
            raise Interrupted(f"stopped before step {done + 1} was stored (it is discarded and "
                              f"runs again on resume); {done} finished steps are stored",
                              resume_command(parts.cfg)) from None
        finally:
            close_run(parts)
    return parts.rd.path


@dataclass
class RunParts:
    """What one step works with, made once per run: prepare_run makes the first four (checks,
    run directory, archive; nothing started), open_run the rest, close_run releases them."""

    cfg: Config
    env: Environment
    archive: Archive
    rd: RunDir
    puct: Puct | None = None
    policy: Policy | None = None
    learner: Learner | None = None
    pool: ScorerPool | None = None
    log: metrics_log.MetricsLog | None = None


def prepare_run(cfg: Config, resume: bool,
                env: Environment | None) -> tuple[RunParts, list[Candidate]]:
    """Every check that needs nothing started, then the run directory (config.toml written) and
    its archive; with them the initial states of run.init_from (read before anything is
    written)."""
    cfg.validate()
    metrics_log.check(cfg.run.log)  # a missing optional package fails before anything is made
    if env is None:
        env = load_environment(cfg.run.env, **cfg.env)
    if cfg.policy.backend == "hf":
        check_model(cfg.policy.model)  # before anything is created or started
    stored = stored_initial_states(cfg.run.init_from, cfg.run.env) if cfg.run.init_from else []
    rd, cfg = prepare_run_dir(cfg, resume)
    return RunParts(cfg, env, Archive(rd.archive), rd), stored


def open_run(parts: RunParts, resume: bool, stored: list[Candidate]) -> None:
    """Start what the steps use: scorers, the PUCT tree, policy, learner (its adapter on resume)
    and the metrics sinks. Each part is on `parts` as soon as it exists, for close_run."""
    cfg, archive, rd = parts.cfg, parts.archive, parts.rd
    if resume and archive.get_meta("env") not in (None, cfg.run.env):
        raise ConfigError(
            f"{rd.path} holds a run of {archive.get_meta('env')!r}, not {cfg.run.env!r}")
    start_ray(cfg.ray.address)
    parts.pool = ScorerPool(cfg.run.env, cfg.env, cfg.ray.scorer_slots, cfg.ray.scorer_wait_s)
    record_sandbox(rd, cfg, archive, parts.pool.sandbox_modes())
    parts.puct = open_tree(parts.env, cfg, archive, parts.pool, stored)
    repair_run_dir(rd, archive)  # what a kill between commit and file writes left
    parts.policy = make_policy(cfg)
    parts.learner = make_learner(cfg, parts.policy)
    if parts.learner is not None and archive.last_step() >= 0:
        version = archive.step_metrics()[-1].get("version", 0)
        if version > 0:
            parts.learner.load(rd.adapter(version))
            publish_adapter(parts.policy, rd)
    if cfg.run.log:
        parts.log = metrics_log.MetricsLog(cfg.run.log, rd.path, cfg.to_dict())


def run_loop(parts: RunParts, stop: dict, on_step: Callable[[StepReport], None] | None) -> None:
    """Steps until run.steps, run.budget_s or a stop request; a request that cut the run short
    raises `Interrupted` once the step in progress is stored."""
    cfg, archive = parts.cfg, parts.archive
    t_run = time.monotonic()
    for step in range(archive.last_step() + 1, cfg.run.steps):
        if stop["requested"] or (
                cfg.run.budget_s and time.monotonic() - t_run >= cfg.run.budget_s):
            break
        report = run_step(step, parts)
        if parts.log is not None:
            parts.log.write(step, {**report.metrics, "best_score": report.best_score})
        if on_step:
            on_step(report)
    done = archive.last_step() + 1
    if stop["requested"] and done < cfg.run.steps:
        raise Interrupted(f"stopped after step {done}: {done} finished steps are stored",
                          resume_command(cfg))


def close_run(parts: RunParts) -> None:
    """Release what open_run made, as far as it got, then the archive."""
    if parts.log is not None:
        parts.log.close()
    if parts.pool is not None:
        parts.pool.shutdown()
    for part in (parts.learner, parts.policy):  # GPU actors hold their memory until killed
        if part is not None:
            part.shutdown()
    parts.archive.close()


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
    # 4. Score: the children from the scores streaming started, the rest scored here.
    groups = scoring.children(samples)
    t2 = time.monotonic()
    # 5-6. Learn (advantages per group, one LoRA step) and publish the new adapter.
    learn, adapter = learn_and_publish(parts, parents, samples, groups)
    t3 = time.monotonic()
    for g in groups:
        for c in g:
            c.step = step
            c.gen_s = (t1 - t0) / max(1, len(g) * len(groups))
    metrics = metrics_log.step_metrics(step, groups, samples, policy, learn,
                                       {"generate": t1 - t0, "score": t2 - t1, "learn": t3 - t2})
    # 7. Commit the step: children, PUCT statistics, metrics and adapter in one transaction.
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
    # 5. Learn: advantages per group and one LoRA step.
    learn = learner.step(samples, [[c.reward for c in g] for g in groups], copies)
    if any(a["version"] == policy.version for a in parts.archive.adapters()):
        return learn, None  # a skipped step (no gradient): no new version
    # 6. Publish: the new version's adapter saved, then handed to the samplers.
    save_adapter(learner, rd, policy.version)
    publish_adapter(policy, rd)  # vLLM's generators load it; the CPU sampler already has it
    return learn, (policy.version, str(rd.adapter(policy.version).relative_to(rd.path)))
