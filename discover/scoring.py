"""Scoring on Ray: a pool of scorer actors, each holding one environment, sized in CPU slots."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import ray

from discover.config import ConfigError
from discover.environment import Evaluation, load_environment

AUTH_HINT = ("a Ray cluster started with token authentication (RAY_AUTH_MODE=token on its "
             "nodes) needs RAY_AUTH_MODE=token and the same token here: RAY_AUTH_TOKEN, or a file "
             "named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token (`ray get-auth-token` on the head "
             "prints it); see docs/gpu.md, 'A Ray cluster of your own'")


class RayConnectError(ConfigError):
    """`--ray-address` names a cluster this process cannot join; the message says why."""


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
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
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

    def sandbox(self) -> str:
        """The sandbox level this scorer runs candidates at, e.g. 'bwrap+netns+pidns+uid_drop
        (sealed filesystem)'."""
        from discover.sandbox import isolation

        iso = isolation()
        return f"{iso['mode']} ({'sealed' if iso['sealed'] else 'NOT sealed:'} filesystem)"


class ScorerPool:
    """Evaluate many programs in parallel; results come back in the order of the jobs."""

    def __init__(self, env_name: str, env_options: dict, slots: int = 0) -> None:
        env = load_environment(env_name, **env_options)
        self.failure_reward = env.failure_reward
        cpus = max(1, env.cpu_slots)
        total = slots or int(ray.available_resources().get("CPU", 1))
        size = max(1, total // cpus)
        # SPREAD: on a cluster, scorers go to every node rather than filling the first one.
        opts: dict[str, Any] = {"num_cpus": cpus, "scheduling_strategy": "SPREAD"}
        if env.gpus:
            opts["num_gpus"] = env.gpus
            # No more scorers than the GPUs can hold: an actor Ray cannot place never starts,
            # and a job sent to it would wait forever.
            gpus = ray.available_resources().get("GPU", 0.0)
            size = max(1, min(size, int(gpus // env.gpus)))
        self.actors = [Scorer.options(**opts).remote(env_name, env_options) for _ in range(size)]

    @property
    def size(self) -> int:
        return len(self.actors)

    def evaluate(self, jobs: list[tuple[str, Any, int]]) -> list[tuple[Evaluation, float]]:
        """jobs: (program, parent_artifact, seed). Returns (evaluation, seconds) per job."""
        results: list[tuple[Evaluation, float] | None] = [None] * len(jobs)
        pending: dict[Any, int] = {}
        queue = list(enumerate(jobs))
        idle = list(self.actors)
        busy: dict[Any, Any] = {}
        while queue or pending:
            while queue and idle:
                i, (program, artifact, seed) = queue.pop(0)
                actor = idle.pop()
                ref = actor.evaluate.remote(program, artifact, seed)
                pending[ref] = i
                busy[ref] = actor
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            i = pending.pop(ref)
            idle.append(busy.pop(ref))
            try:
                ev, seconds = ray.get(ref)
                results[i] = (Evaluation(**ev), seconds)
            except ray.exceptions.RayError as e:  # the actor died; Ray restarts it
                msg = f"scorer failed: {type(e).__name__}: {str(e)[:500]}"
                results[i] = (Evaluation(ok=False, reward=self.failure_reward, failure="crash",
                                         log=msg), 0.0)
        return results  # type: ignore[return-value]

    def sandbox_modes(self) -> list[str]:
        """The sandbox levels the scorers run at (each probes its own machine)."""
        return sorted(set(ray.get([a.sandbox.remote() for a in self.actors])))

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
