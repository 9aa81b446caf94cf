"""The search loop (docs/METHOD.md, "One step"): a run opens its parts, repeats one step, and
closes them; every step is durable before the next.

One step, in seven phases (numbered so in the comments below): 1 select, 2 render prompts,
3 sample, 4 score, 5 learn (advantages + one LoRA step), 6 publish the adapter, 7 commit
(children, PUCT statistics, metrics and the adapter version in one transaction). The commit
comes after the learner's step, so a killed run never holds children without the weights they
trained. With run.overlap the learner's step of step t runs while step t+1 samples and scores
(with the adapter one version behind) and is published by step t+1; its inputs are kept in the
run directory (update.json) until then, so a resume after a kill makes the same update again.
"""

from __future__ import annotations

import dataclasses
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
from discover.learners.base import Learner, Update
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
    update: Update | None = None  # run.overlap: the learner's step under way


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
            publish_adapter(parts.policy, rd, version)
        if cfg.run.overlap:  # the update a kill (or the run's end) left unpublished, again
            parts.update = resubmit_update(parts, archive.last_step(), version)
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
    # 5-6. Learn (advantages per group, one LoRA step) and publish the new adapter; with
    # run.overlap, publish the previous step's update and start this step's.
    learn, adapter = learn_and_publish(parts, step, parents, samples, groups)
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


def learn_and_publish(parts: RunParts, step: int, parents: list[Parent],
                      samples: list[list[Sample]], groups: list[list[Candidate]]
                      ) -> tuple[dict, tuple[int, str] | None]:
    """The learner's metrics, and (version, adapter folder) where the step made a new version."""
    learner, cfg = parts.learner, parts.cfg
    if learner is None:
        return {}, None
    copies = [[is_copy(c.code, p.code, parts.env.language) for c in g]
              for p, g in zip(parents, groups, strict=True)]
    rewards = [[c.reward for c in g] for g in groups]
    if not cfg.run.overlap:
        # 5. Learn: advantages per group and one LoRA step. 6. Publish the new version.
        learn = learner.submit(samples, rewards, copies).result()
        return learn, publish(parts, learn["version"])
    # 5. Learn: wait for the update started at the last step, then 6. publish it ...
    learn, adapter = {}, None
    if parts.update is not None:
        learn = parts.update.result()
        parts.update = None
        adapter = publish(parts, learn["version"])
    # ... and start this step's, which the next step's sampling and scoring run beside. The
    # last step's is only kept for a resume that adds steps: nothing would sample with it.
    write_atomic(parts.rd.path / UPDATE_FILE, json.dumps({
        "step": step, "base": parts.policy.version, "rewards": rewards, "copies": copies,
        "samples": [[dataclasses.asdict(s) for s in g] for g in samples]}))
    if step + 1 < cfg.run.steps:
        parts.update = learner.submit(samples, rewards, copies)
    return learn, adapter


UPDATE_FILE = "update.json"  # run.overlap: the inputs of the update not yet published


def resubmit_update(parts: RunParts, last_step: int, version: int) -> Update | None:
    """On resume with run.overlap: start again the update of the last stored step, which was
    under way (or, at the run's end, never run) when the run stopped. Its inputs were written
    before that step's commit; they are stale if the step was not committed or the update was
    published since (the learner is past their base version)."""
    path = parts.rd.path / UPDATE_FILE
    if not path.exists():
        return None
    kept = json.loads(path.read_text())
    if kept["step"] != last_step or kept["base"] != version:
        return None
    samples = [[Sample(**s) for s in g] for g in kept["samples"]]
    return parts.learner.submit(samples, kept["rewards"], kept["copies"])


def publish(parts: RunParts, version: int) -> tuple[int, str] | None:
    """6. Publish: the learner's new version saved, then handed to the samplers; None where the
    update made no new version (a skipped step: no gradient)."""
    learner, policy, rd = parts.learner, parts.policy, parts.rd
    if any(a["version"] == version for a in parts.archive.adapters()):
        return None
    save_adapter(learner, rd, version)
    publish_adapter(policy, rd, version)  # vLLM's generators and an overlap sampler load it
    return version, str(rd.adapter(version).relative_to(rd.path))
