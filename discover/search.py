"""The search loop: ALGORITHM.md's "One step", repeated, with every step durable before the next."""

from __future__ import annotations

import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from discover import metrics_log, prompt
from discover.archive import Archive, Candidate, check_archive, dedup_key
from discover.config import Config, ConfigError
from discover.edits import is_copy
from discover.environment import Environment, Parent, load_environment
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

SCHEMA_VERSION = 1


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run at a safe point; the message says what is stored."""

    def __init__(self, message: str, resume: str) -> None:
        super().__init__(message)
        self.resume = resume  # the command that continues the run

    def __str__(self) -> str:
        return str(self.args[0])


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


def make_policy(cfg: Config) -> Policy:
    p = cfg.policy
    if p.backend == "openai":
        from discover.policy_openai import OpenAIPolicy

        return OpenAIPolicy(base_url=p.base_url, model=p.model, api_key_env=p.api_key_env,
                            timeout_s=p.request_timeout_s)
    if p.backend == "vllm":  # generator actors on Ray GPUs (docs/gpu.md)
        import ray

        from discover.model_store import resolve_model
        from discover.policy_vllm import VLLMPolicy, check_gpus, require_vllm

        require_vllm()
        learning = cfg.learner.method != "none"
        learner_gpus = cfg.learner.gpus if learning and cfg.learner_backend() == "trl" else 0.0
        cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
        gpus = p.generator_gpus if cluster_gpus > 0 else 0.0  # no GPUs: vLLM's CPU build
        check_gpus(p.generators * gpus + learner_gpus, cluster_gpus)
        return VLLMPolicy(str(resolve_model(p.model)), generators=p.generators,
                          gpus=gpus, enable_lora=learning,
                          lora_rank=cfg.learner.lora_rank,
                          gpu_memory_utilization=p.gpu_memory_utilization,
                          max_model_len=p.max_model_len, seed=cfg.run.seed)
    if p.backend == "null":  # no model: children re-run their parent's program (ablation)
        from discover.policy_null import NullPolicy

        return NullPolicy()
    from discover.policy_hf import HFPolicy

    return HFPolicy(model=p.model, threads=p.threads or None, batch_size=p.batch_size,
                    shared_prefill=p.shared_prefill, onednn=p.onednn)


def make_learner(cfg: Config, policy: Policy):
    if cfg.learner.method == "none":
        return None
    from discover.learner import Learner, LearnerConfig

    lc = cfg.learner
    learner_cfg = LearnerConfig.of(lc, temperature=cfg.policy.temperature)
    if cfg.learner_backend() == "trl":  # its own model copy, in a Ray actor on lc.gpus GPUs
        from discover.learner_trl import RemoteLearner
        from discover.model_store import resolve_model

        return RemoteLearner(policy, str(resolve_model(cfg.policy.model)), learner_cfg,
                             temperature=cfg.policy.temperature, seed=cfg.run.seed, gpus=lc.gpus)
    return Learner(policy, learner_cfg, seed=cfg.run.seed)


def parent_view(archive: Archive, cand_id: int) -> Parent:
    c = archive.get(cand_id)
    if c.parent_id is not None:
        before = archive.get(c.parent_id).score
    else:  # an initial state: its starter program ran on the starting construction
        before = c.metrics.get("start_score")
    return Parent(code=c.code, artifact=c.artifact, score=c.score, parent_score=before,
                  stdout=c.stdout)


def seed_initial_states(env: Environment, cfg: Config, archive: Archive, puct: Puct,
                        pool: ScorerPool) -> None:
    """The initial states: each starting construction, verified, and improved once by the
    environment's starter program (run like any candidate), so that every first prompt shows a
    working program with its measured "before -> after". An artefact that is itself a program
    is its own starter."""
    arts = env.initial_artifacts(cfg.run.initial_states, cfg.run.seed, cfg.run.init_file or None)
    starts = [env.verify(art) for art in arts]
    for i, ev in enumerate(starts):
        if not ev.ok:
            raise ConfigError(f"initial construction {i} is invalid: {ev.log}")
        if not ev.reward > env.failure_reward:
            raise ConfigError(f"environment {env.name!r}: initial construction {i} has reward "
                              f"{ev.reward:g}, not above the failure reward "
                              f"{env.failure_reward:g}; the environment must set failure_reward "
                              "below every valid reward")
    starter = env.starter_program()
    runs = [None] * len(starts)
    if starter is not None:
        jobs = [(starter, ev.artifact, cfg.run.seed * 1000 + i) for i, ev in enumerate(starts)
                if env.program_of(ev.artifact) is None]
        done = iter(pool.evaluate(jobs))
        runs = [None if env.program_of(ev.artifact) is not None else next(done)[0]
                for ev in starts]
    cands = []
    for i, (start, run) in enumerate(zip(starts, runs, strict=True)):
        code = env.program_of(start.artifact)
        ev = start
        if run is not None and not run.ok and run.failure == "timeout":
            # A busy machine, not a broken starter: the state starts from the construction as
            # it is, still showing the starter as its program.
            print(f"discover: warning: the starter program ran out of time on initial "
                  f"construction {i} (a busy machine?); that state starts unimproved",
                  file=sys.stderr)
            code, ev = starter, start
        elif run is not None:
            if not run.ok:
                raise ConfigError(f"environment {env.name!r}: its starter program failed on "
                                  f"initial construction {i} ({run.failure}): {run.log}")
            code, ev = starter, run
            ev.metrics = {**ev.metrics, "start_score": start.score}
        cands.append(Candidate(id=None, step=-1, parent_id=None, code=code, artifact=ev.artifact,
                               score=ev.score, reward=ev.reward, ok=True, initial=True,
                               stdout=ev.log if code else "", metrics=ev.metrics,
                               key=dedup_key(ev.artifact, None)))
    archive.add_initial(cands, puct)


def stored_initial_states(source: str, env_name: str) -> list[Candidate]:
    """Another run's initial states, as it stored them (code, artefact, score, metrics): arms of
    an ablation then start from the same states, not from starters re-run at another time."""
    path = RunDir(source).archive
    if not path.exists():
        raise ConfigError(f"run.init_from: {source} holds no run (no {path.name})")
    check_archive(path)
    with Archive(path, readonly=True) as src:
        if src.get_meta("env") != env_name:
            raise ConfigError(f"run.init_from: {source} is a run of {src.get_meta('env')!r}, "
                              f"not {env_name!r}")
        states = src.initial_states()
    if not states:
        raise ConfigError(f"run.init_from: {source} holds no initial states")
    for c in states:
        c.id = None
    return states


def score_groups(env: Environment, pool: ScorerPool, parents: list[Parent],
                 samples: list[list[Sample]], seed: int, edit: str) -> list[list[Candidate]]:
    """Step 4: extract each program, run it in the sandbox via the scorer pool, build children."""
    return GroupScorer(env, pool, parents, seed, edit).children(samples)


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
    with _stop_on_signals() as stop:
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
                    _publish_adapter(policy, rd)
            if cfg.run.log:
                log = metrics_log.MetricsLog(cfg.run.log, rd.path, cfg.to_dict())

            t_run = time.monotonic()
            for step in range(start, cfg.run.steps):
                if stop["requested"] or (
                        cfg.run.budget_s and time.monotonic() - t_run >= cfg.run.budget_s):
                    break
                report = run_step(step, cfg, env, archive, puct, policy, learner, pool, rd)
                if log is not None:
                    log.write(step, {**report.metrics, "best_score": report.best_score})
                if on_step:
                    on_step(report)
            done = archive.last_step() + 1
            if stop["requested"] and done < cfg.run.steps:
                raise Interrupted(f"stopped after step {done}: {done} finished steps are stored",
                                  _resume_command(cfg))
        except KeyboardInterrupt as e:
            if isinstance(e, Interrupted):
                raise
            done = archive.last_step() + 1
            raise Interrupted(f"stopped before step {done + 1} was stored (it is discarded and "
                              f"runs again on resume); {done} finished steps are stored",
                              _resume_command(cfg)) from None
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


def _resume_command(cfg: Config) -> str:
    return f"discover run {cfg.run.env} --run-dir {shlex.quote(cfg.run.run_dir)} --resume"


@contextmanager
def _stop_on_signals() -> Iterator[dict]:
    """First SIGINT: stop after the step in progress. Second SIGINT, or SIGTERM: stop now."""
    stop = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return

    def on_sigint(signum: int, frame: object) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\ndiscover: stopping after the step in progress is stored "
              "(Ctrl-C again to discard it and stop now)", file=sys.stderr, flush=True)

    def on_sigterm(signum: int, frame: object) -> None:
        stop["requested"] = True
        raise KeyboardInterrupt

    previous = {}
    for sig, handler in ((signal.SIGINT, on_sigint), (signal.SIGTERM, on_sigterm)):
        if signal.getsignal(sig) != signal.SIG_IGN:  # e.g. nohup: leave an ignored signal be
            previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_step(step: int, cfg: Config, env: Environment, archive: Archive, puct: Puct,
             policy: Policy, learner, pool: ScorerPool, rd: RunDir) -> StepReport:
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
            _publish_adapter(policy, rd)  # 7. hand the new weights to the samplers (vLLM)
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


def _publish_adapter(policy: Policy, rd: RunDir) -> None:
    """Samplers with their own model copy (vLLM) load the saved adapter of the current version.

    On CPU the sampler and learner share one model, so HFPolicy has nothing to load.
    """
    load = getattr(policy, "load_adapter", None)
    if load is not None and policy.version > 0:
        load(rd.adapter(policy.version), policy.version)
