"""Where a search starts: the environment's constructions improved once by its starter, or
another run's initial states as it stored them."""

from __future__ import annotations

import math
import sys

from discover.archive import Archive, Candidate, check_archive, dedup_key
from discover.config import Config, ConfigError
from discover.environment import Environment
from discover.puct import Puct
from discover.rundir import RunDir
from discover.scoring import ScorerPool

SCHEMA_VERSION = 1  # of the run (the archive's own schema is archive.SCHEMA_VERSION)


def open_tree(env: Environment, cfg: Config, archive: Archive, pool: ScorerPool,
              stored: list[Candidate]) -> Puct:
    """The search tree of a run: reloaded from its archive, or started from its initial states
    (`stored`: the same starting states as another run, for paired ablations)."""
    puct_args = dict(c=cfg.run.puct_c, strategy=cfg.run.selection, seed=cfg.run.seed)
    if archive.get_meta("initialised"):
        return archive.load_puct(**puct_args)
    archive.set_meta("env", cfg.run.env)
    archive.set_meta("schema", SCHEMA_VERSION)
    puct = Puct(**puct_args)
    if stored:
        archive.add_initial(stored, puct)
    else:
        seed_initial_states(env, cfg, archive, puct, pool)  # marks it initialised
    return puct


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
            what = "the initial program fails its evaluator" if env.program_of(arts[i]) \
                else f"initial construction {i} is invalid"
            raise ConfigError(f"environment {env.name!r}: {what}: {ev.log}")
    check_failure_reward(env, [ev.reward for ev in starts])
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


def check_failure_reward(env: Environment, rewards: list[float]) -> None:
    """Every valid reward must lie above the failure reward: a failure must never rank above a
    valid candidate. Raises ConfigError naming the fix in the environment author's terms."""
    if not rewards:
        return
    for i, r in enumerate(rewards):
        if not math.isfinite(r):
            raise ConfigError(f"environment {env.name!r}: initial construction {i} has reward "
                              f"{r}; a valid reward must be a finite number")
    lowest, i = min((r, i) for i, r in enumerate(rewards))
    if lowest > env.failure_reward:
        return
    raise ConfigError(
        f"environment {env.name!r}: initial construction {i} has reward {lowest:g}, not above "
        f"the failure reward {env.failure_reward:g}; every valid reward must lie above it. "
        f"{failure_reward_fix(env, lowest)} (docs/ENVIRONMENTS.md, 'Choosing a failure reward')")


def failure_reward_fix(env: Environment, lowest: float) -> str:
    """The fix, in what the author controls: the option of a problem folder, the property of
    an environment class."""
    from discover.problem_folder import FolderEnvironment

    value = math.floor(lowest) - 1.0  # passes these states; a bound must hold for all valid ones
    if isinstance(env, FolderEnvironment):
        return (f"Pass a failure reward below every valid one, e.g. --set "
                f"env.failure_reward={value:.15g} (an option of the problem folder; a `new-env "
                f"--from` package sets FAILURE_REWARD in its __init__.py)")
    cls = type(env)
    return (f"Make {cls.__module__}.{cls.__name__}.failure_reward (a property; it returns "
            f"{env.failure_reward:g} now) return a value below the lowest reward a valid "
            f"artefact can get: {value:.15g} would pass these states, but derive the bound from "
            f"the scoring, or bound the rewards (override reward(score), e.g. max(score, FLOOR), "
            f"with failure_reward below FLOOR)")


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
