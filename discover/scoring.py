"""Scoring on Ray: a pool of scorer actors, each holding one environment, sized in CPU slots."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Any

import ray

from discover import prompt
from discover.archive import Candidate, dedup_key
from discover.backends.base import Sample
from discover.config import ConfigError
from discover.environment import Environment, Evaluation, Parent
from discover.registry import load_environment
from discover.threads import CHOICE

AUTH_HINT = ("a Ray cluster started with token authentication (RAY_AUTH_MODE=token on its "
             "nodes) needs RAY_AUTH_MODE=token and the same token here: RAY_AUTH_TOKEN, or a file "
             "named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token (`ray get-auth-token` on the head "
             "prints it); see docs/gpu.md, 'A Ray cluster of your own'")


class RayConnectError(ConfigError):
    """`--ray-address` names a cluster this process cannot join; the message says why."""


class ScorersLost(RuntimeError):
    """No scorer answered within the pool's wait limit (its nodes lost, Ray unable to bring
    them back): the step cannot be finished, and the run stops so that it can resume."""


# A job whose scorer died is sent again, this many times in all, before it is stored as the
# program's crash: one lost node costs a retry, a program that kills every scorer it reaches
# (an escape the sandbox missed) is still stopped.
SCORER_LOSSES = 3


def start_ray(address: str = "", num_cpus: int | None = None) -> None:
    """Start a local Ray (never attach to a stray cluster by accident) or join `address`."""
    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ray.exceptions.AuthenticationError, RuntimeError) as e:
            raise RayConnectError(_join_failure(address, e)) from e
    else:
        # address="local": a bare ray.init() would attach to any cluster named by RAY_ADDRESS.
        ray.init(address="local", num_cpus=num_cpus or CHOICE.cores, include_dashboard=False,
                 log_to_driver=False)


def _join_failure(address: str, e: BaseException) -> str:
    """Why joining `address` failed, in words: Ray's own error is a chain of tracebacks."""
    chain = []
    while e is not None:
        chain.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    text = " ".join(chain)
    mode = os.environ.get("RAY_AUTH_MODE", "")
    if "token" in text.lower() and "auth" in text.lower():
        if mode.lower() != "token":
            return f"the Ray cluster at {address} refused this client: RAY_AUTH_MODE is " \
                   f"{mode or 'not set'} here; {AUTH_HINT}"
        return f"the Ray cluster at {address} refused this client's token (wrong or missing); " \
               f"{AUTH_HINT}"
    return f"cannot join the Ray cluster at {address} ({chain[-1][:300]}); is `ray start " \
           f"--head` running there, and is the address HOST:PORT of its GCS? If its nodes " \
           f"use token authentication, {AUTH_HINT}"


@ray.remote(max_restarts=-1, max_task_retries=0)
class Scorer:
    def __init__(self, env_name: str, env_options: dict) -> None:
        self.env = load_environment(env_name, **env_options)
        from discover.sandbox import isolation

        try:  # probe the sandbox now, not inside the first candidate's time
            isolation()
        except RuntimeError:  # no level runs here: each evaluation reports it as a crash
            pass

    def evaluate(self, program: str, parent_artifact: Any, seed: int) -> tuple[dict, float]:
        t0 = time.perf_counter()
        try:
            ev = self.env.evaluate(program, parent_artifact, seed)
        except Exception as e:  # a bug in an environment must not take the run down
            ev = self.env.failed("crash", f"environment error: {type(e).__name__}: {e}")
        out = dataclasses.asdict(ev)
        # Which node scored it (a cluster spreads scorers over its nodes).
        out["metrics"] = {**(out["metrics"] or {}),
                          "scorer_node": ray.get_runtime_context().get_node_id()}
        return out, time.perf_counter() - t0

    def ping(self) -> bool:
        """Answers once the actor runs (again, after a restart)."""
        return True

    def sandbox(self) -> str:
        """The sandbox level this scorer runs candidates at, e.g. 'bwrap+netns+pidns+uid_drop
        (sealed filesystem)'."""
        from discover.sandbox import isolation

        iso = isolation()
        return f"{iso['mode']} ({'sealed' if iso['sealed'] else 'NOT sealed:'} filesystem)"


class ScorerPool:
    """Evaluate many programs in parallel; results come back in the order of the jobs."""

    def __init__(self, env_name: str, env_options: dict, slots: int = 0,
                 wait_s: float | None = None) -> None:
        env = load_environment(env_name, **env_options)
        self.failure_reward = env.failure_reward
        # How long a stream waits with no job finishing before it gives the scorers up for lost:
        # far longer than one evaluation may take, so only a cluster fault reaches it.
        self.wait_s = wait_s or max(600.0, 4 * float(env.time_budget_s or 0))
        cpus = max(1, env.cpu_slots)
        total = slots or int(ray.available_resources().get("CPU", 1))
        size = max(1, total // cpus)
        if env.max_parallel:  # the problem asks for no more evaluations at once
            size = min(size, env.max_parallel)
        # SPREAD: on a cluster, scorers go to every node rather than filling the first one.
        opts: dict[str, Any] = {"num_cpus": cpus, "scheduling_strategy": "SPREAD"}
        if env.gpus:
            opts["num_gpus"] = env.gpus
            # No more scorers than the GPUs can hold: an actor Ray cannot place never starts,
            # and a job sent to it would wait forever.
            gpus = ray.available_resources().get("GPU", 0.0)
            size = max(1, min(size, int(gpus // env.gpus)))
        self.actors = [Scorer.options(**opts).remote(env_name, env_options) for _ in range(size)]
        self.probation: dict[Any, Any] = {}  # ping ref -> a scorer that died, until it answers

    def suspect(self, actor: Any) -> None:
        """`actor` died: ping it, and send it no job until the ping answers (`probation`)."""
        self.probation[actor.ping.remote()] = actor

    @property
    def size(self) -> int:
        return len(self.actors)

    def evaluate(self, jobs: list[tuple[str, Any, int]]) -> list[tuple[Evaluation, float]]:
        """jobs: (program, parent_artifact, seed). Returns (evaluation, seconds) per job."""
        stream = self.stream()
        for i, job in enumerate(jobs):
            stream.add(i, job)
        results = stream.results()
        return [results[i] for i in range(len(jobs))]

    def stream(self) -> Stream:
        """A batch of jobs that start as they are added (see Stream)."""
        return Stream(self)

    def sandbox_modes(self) -> list[str]:
        """The sandbox levels the scorers run at (each probes its own machine)."""
        return sorted(set(ray.get([a.sandbox.remote() for a in self.actors])))

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors, self.probation = [], {}


class Stream:
    """Jobs handed to the pool one at a time, each started as soon as a scorer is free, so that
    scoring overlaps whatever produces the jobs (the sampler); `results` waits for the rest.

    There is no thread: finished jobs are collected, and queued ones started, whenever a job is
    added and in `results`. Results are keyed by the caller's key, whatever the finishing order.

    A scorer that dies (its process killed, its node lost) is a fault of the cluster, not of the
    program: its job goes to the front of the queue for another scorer, up to SCORER_LOSSES
    times, and only a program's own failure is stored as one. Ray restarts the dead actor where
    it can; until it answers a ping (the pool's `probation`) no job is sent to it, so a lost
    node's scorers do not hold jobs while the live ones idle.
    """

    def __init__(self, pool: ScorerPool) -> None:
        self.pool = pool
        self.queue: list[tuple[Any, tuple[str, Any, int]]] = []
        self.idle = [a for a in pool.actors if a not in pool.probation.values()]
        self.running: dict[Any, tuple[Any, Any, tuple]] = {}  # ref -> (key, actor, job)
        self.losses: dict[Any, int] = {}  # key -> scorers lost running it
        self.done: dict[Any, tuple[Evaluation, float]] = {}
        self.progress = time.monotonic()  # when a job last finished (or the stream began)

    def add(self, key: Any, job: tuple[str, Any, int]) -> None:
        """job: (program, parent_artifact, seed)."""
        self.queue.append((key, job))
        self._collect(block=False)
        self._start()

    def results(self) -> dict[Any, tuple[Evaluation, float]]:
        """(evaluation, seconds) per key, once every job added so far has finished."""
        while self.queue or self.running:
            self._start()
            self._collect(block=True)
        return self.done

    def _start(self) -> None:
        while self.queue and self.idle:
            key, job = self.queue.pop(0)
            actor = self.idle.pop()
            self.running[actor.evaluate.remote(*job)] = (key, actor, job)

    def _collect(self, block: bool) -> None:
        """Take in finished jobs and answered pings: at least one (block), or those by now."""
        refs = list(self.running) + list(self.pool.probation)
        if not refs:
            return
        if block:
            left = self.pool.wait_s - (time.monotonic() - self.progress)
            ready, _ = ray.wait(refs, num_returns=1, timeout=max(0.0, left))
            if not ready:
                raise ScorersLost(
                    f"no scorer finished a job in {self.pool.wait_s:.0f} s with "
                    f"{len(self.running) + len(self.queue)} waiting: the scorers' nodes are "
                    f"lost or stalled (ray.scorer_wait_s sets the limit)")
        else:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            if ref in self.pool.probation:
                self._pinged(ref)
                continue
            key, actor, job = self.running.pop(ref)
            try:
                ev, seconds = ray.get(ref)
            except ray.exceptions.RayError as e:
                self.pool.suspect(actor)
                self._lost(key, job, e)
                continue
            self.idle.append(actor)
            self.progress = time.monotonic()
            if key in self.losses:  # scored on another scorer after one was lost
                ev["metrics"] = {**(ev["metrics"] or {}), "scorer_losses": self.losses[key]}
            self.done[key] = (Evaluation(**ev), seconds)

    def _pinged(self, ref: Any) -> None:
        """A suspect scorer's ping came back: alive again (restarted), or not yet."""
        actor = self.pool.probation.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayError:
            self.pool.suspect(actor)  # ping it again
            return
        self.idle.append(actor)

    def _lost(self, key: Any, job: tuple, e: Exception) -> None:
        """The scorer running `job` died: send it again, or, past SCORER_LOSSES, store it as
        the program's crash (it takes down every scorer it reaches)."""
        self.losses[key] = self.losses.get(key, 0) + 1
        self.progress = time.monotonic()
        if self.losses[key] < SCORER_LOSSES:
            self.queue.insert(0, (key, job))
            return
        msg = (f"scorer failed {self.losses[key]} times running this program, last: "
               f"{type(e).__name__}: {str(e)[:500]}")
        self.done[key] = (Evaluation(ok=False, reward=self.pool.failure_reward,
                                     failure="crash", log=msg), 0.0)


class GroupScorer:
    """Step 4 for one step's groups: extract each completion's program, run it in the sandbox
    through the pool, build the children.

    `send` (the sampler's `on_sample`) hands a program to the pool as soon as its completion
    exists, so scoring overlaps generation; `children` sends whatever was not sent, waits, and
    builds every child, in group order. What is stored does not depend on what was streamed:
    a program's seed is a function of (step seed, group, index) only.
    """

    def __init__(self, env: Environment, pool: ScorerPool, parents: list[Parent], seed: int,
                 edit: str):
        self.env, self.parents, self.seed, self.edit = env, parents, seed, edit
        self.stream = pool.stream()
        self.codes: dict[tuple[int, int], str | None] = {}  # the program of each sent sample

    def send(self, g: int, i: int, sample: Sample) -> None:
        if (g, i) in self.codes:
            return
        code = self.codes[g, i] = prompt.program(self.env, self.parents[g], sample.response,
                                                 self.edit)
        if code is not None:
            self.stream.add((g, i), (code, self.parents[g].artifact, job_seed(self.seed, g, i)))

    def children(self, samples: list[list[Sample]]) -> list[list[Candidate]]:
        for g, group in enumerate(samples):
            for i, s in enumerate(group):
                self.send(g, i, s)
        results = self.stream.results()
        groups = []
        for g, group in enumerate(samples):
            children = []
            for i, s in enumerate(group):
                code = self.codes[g, i]
                ev, secs = results.get((g, i), (self.env.failed("no_code", "no code block found"),
                                                0.0))
                children.append(Candidate(
                    id=None, step=-1, parent_id=None, code=code, artifact=ev.artifact,
                    score=ev.score, reward=ev.reward, ok=ev.ok, failure=ev.failure, log=ev.log,
                    stdout=ev.log if ev.ok else "", completion=s.response, group_idx=g,
                    policy_version=s.version, eval_s=secs, metrics=ev.metrics,
                    key=dedup_key(ev.artifact, code) if ev.ok else ""))
            groups.append(children)
        return groups


def job_seed(seed: int, g: int, i: int) -> int:
    """The seed a program gets: (step seed, group, index within it), 31 bits, order-free."""
    digest = hashlib.blake2b(f"{seed}:{g}:{i}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 33


def score_groups(env: Environment, pool: ScorerPool, parents: list[Parent],
                 samples: list[list[Sample]], seed: int, edit: str) -> list[list[Candidate]]:
    """Step 4: extract each program, run it in the sandbox via the scorer pool, build children."""
    return GroupScorer(env, pool, parents, seed, edit).children(samples)
