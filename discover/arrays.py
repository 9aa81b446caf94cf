"""What an environment whose program is `solve(parent, iters, seed)` returning an array needs:
its `iterations` option, running it in the sandbox, reading its artefact, checking its numbers
(Erdős, AC1, AC2, circle packing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from discover.environment import Environment, Evaluation, InvalidArtifact
from discover.sandbox import Limits, run_function

WALL_MARGIN_S = 3.0  # interpreter and numpy start-up on top of the wall limit time_budget_s
STDOUT_CHARS = 300


@dataclass
class Solved:
    """What running solve() gave: an array of the expected rank, or the failure to record."""

    value: np.ndarray | None
    failure: Evaluation | None
    wall_s: float
    stdout: str


def run_solve(env: Environment, program: str, parent: np.ndarray | None, seed: int,
              iters: int, time_budget_s: float, memory_mb: int, ndim: int) -> Solved:
    """Run `program`'s solve(parent, iters, seed) in the sandbox; map every failure.

    `iters` is the work the program is asked for (its result must not depend on the clock);
    `time_budget_s` only bounds the run's wall time, as a safety limit: a run past it fails.
    A run that returns anything but a real `ndim`-dimensional array fails as invalid_output;
    what the values mean (and whether they are valid) is the environment's to verify.
    """
    kwargs = {"parent": parent, "iters": int(iters), "seed": int(seed)}
    limits = Limits(wall_s=time_budget_s + WALL_MARGIN_S, memory_mb=memory_mb)
    res = run_function(program, "solve", kwargs, limits, env.sandbox_packages, env.sandbox_paths)
    if res.failure:
        return Solved(None, env.failed(res.failure, res.log, wall_s=res.wall_s), res.wall_s,
                      res.stdout)
    value = res.value
    if value.ndim != ndim or value.dtype.kind == "c":
        return Solved(None, env.failed(
            "invalid_output", f"solve must return a {ndim}-D array of real numbers, got "
            f"dtype {value.dtype}, shape {value.shape}", wall_s=res.wall_s), res.wall_s,
            res.stdout)
    return Solved(value, None, res.wall_s, res.stdout)


def iterations_option(value: Any, default: int) -> int:
    """The `iterations` option ([env] iterations): the work a program is handed as `iters`,
    `default` (the environment's) when not given; raises ValueError unless an integer >= 1.
    Counting work, not seconds, makes a program's result depend on the program, its parent and
    its seed only; time_budget_s is only the sandbox's wall limit."""
    iterations = default if value is None else value
    if not (isinstance(iterations, int) and not isinstance(iterations, bool) and iterations >= 1):
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    return iterations


def real_array(values: Any, what: str) -> np.ndarray:
    """`values` as a float64 array (a copy); raises InvalidArtifact if they are not real numbers
    or not finite. `what` names the expected form in messages, e.g. "a 1-D list of numbers"."""
    if values is None or isinstance(values, (str, bytes, dict)):
        raise InvalidArtifact(f"not {what}: got {type(values).__name__}")
    try:
        raw = np.asarray(values)
        if raw.dtype.kind not in "biufO":  # complex, strings, dates: not real numbers
            raise TypeError(f"got elements of dtype {raw.dtype}")
        a = raw.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as e:  # ragged lists land here too
        raise InvalidArtifact(f"not {what}: {e}") from e
    bad = ~np.isfinite(a)
    if bad.any():
        where = np.unravel_index(int(np.argmax(bad)), a.shape)
        index = where[0] if a.ndim == 1 else tuple(int(i) for i in where)
        more = f" ({int(bad.sum())} non-finite values)" if bad.sum() > 1 else ""
        raise InvalidArtifact(f"contains {a[where]} at index {index}{more}")
    return a


def load_json_artifact(path: str | Path, keys: tuple[str, ...]) -> Any:
    """An artefact file: JSON, the artefact itself or an object holding it under one of `keys`;
    raises InvalidArtifact naming the file and what is wrong."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InvalidArtifact(f"cannot read artefact {path}: {e}") from e
    try:
        return unwrap(data, keys)
    except InvalidArtifact as e:
        raise InvalidArtifact(f"{path}: {e}") from e


def length(artifact: Any) -> int:
    """How many values an artefact holds (0 for None: no parent construction)."""
    try:
        return len(artifact)
    except TypeError:
        return 0


def unwrap(data: Any, keys: tuple[str, ...]) -> Any:
    """The artefact inside a JSON object stored under one of `keys`, or `data` itself."""
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                return data[key]
        raise InvalidArtifact(f"a JSON object needs one of the keys {', '.join(keys)}; "
                              f"got {', '.join(map(str, data)) or 'none'}")
    return data
