"""`discover new-env NAME`: a working skeleton of an environment package, with its test
(`--from FOLDER`: one that starts as an OpenEvolve or ShinkaEvolve problem folder runs)."""

from __future__ import annotations

import re
from pathlib import Path

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "discover-{name}"
version = "0.1.0"
description = "A discover environment: {name}"
dependencies = ["discover", "numpy"]

[project.entry-points."discover.environments"]
{name} = "discover_{pkg}:Environment"

[tool.setuptools]
packages = ["discover_{pkg}"]

[tool.setuptools.package-data]
discover_{pkg} = ["prompt.md", "starter.py"]
'''

PROMPT = '''Choose n numbers x_1..x_n in [0, 1] (1 <= n <= 1000) to MAXIMISE
score = sum(x) - sum(x_i * x_(i+1)) (adjacent products penalised).

Write a Python function `solve(parent, iters, seed)` that returns a 1-D list or numpy array
of numbers in [0, 1]. `parent` is the best solution so far (a numpy array) or None; `iters` is
how many improvement attempts to make (the work budget: the same program, parent and seed must
give the same result on any machine); `seed` is for your random number generator. numpy is
available. A run that takes more than a few seconds is stopped and fails.
'''

ENV = '''"""The {name} environment. Replace the problem, scoring, prompt and starter."""

from pathlib import Path

import numpy as np

from discover.environment import Environment as Base
from discover.environment import Evaluation, InvalidArtifact
from discover.sandbox import Limits, run_function

HERE = Path(__file__).parent
STATEMENT = (HERE / "prompt.md").read_text()
STARTER = (HERE / "starter.py").read_text()


class Environment(Base):
    name = "{name}"
    direction = "max"
    language = "python"
    time_budget_s = 5.0  # the sandbox's wall-clock safety limit; a timeout is a failure
    # The work each program is handed: count work, not seconds, so that a program's reward
    # depends on the program, its parent and its seed only, never on the machine's load.
    iterations = 2000
    target = None  # the record to beat, when there is one
    score_name = "score"  # what prompts call the score
    entry = "solve(parent, iters, seed)"
    sandbox_packages = ("numpy",)  # all a candidate may import (the sandbox hides the rest)

    # --- what the model sees: the framework renders the prompt from these parts
    def statement(self) -> str:
        return STATEMENT

    def handoff(self, artifact) -> str:
        n = 0 if artifact is None else len(artifact)
        return f"Your solve() receives the parent's x as `parent` (a numpy array of {{n}} values)."

    def summarize(self, artifact) -> str:
        return f"a starting list of {{len(artifact)}} numbers"

    def starter_program(self) -> str:
        # A simple program that improves its parent; every initial state runs it once, so the
        # first prompt shows a working program. Its EVOLVE-BLOCK is what the model rewrites.
        return STARTER

    # --- rewards: every valid reward must lie above failure_reward, or the search refuses to
    # start. Here reward = score = sum_i x_i (1 - x_(i+1)) + x_n >= 0 for x in [0, 1], so -1
    # lies below all of them. When you replace the problem, keep this true: derive the lowest
    # valid reward from your scoring (or bound it with reward(score), as max(score, FLOOR)),
    # and put failure_reward just below it (discover's docs/ENVIRONMENTS.md).
    @property
    def failure_reward(self) -> float:
        return -1.0

    # --- the search's starting points
    def initial_artifacts(self, count, seed, init_file=None):
        if init_file:
            return [self.load_artifact(init_file)]
        rng = np.random.default_rng(seed)
        return [rng.uniform(0, 1, 10).tolist() for _ in range(count)]

    # --- scoring
    def score_artifact(self, artifact) -> float:
        try:
            x = np.asarray(artifact, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InvalidArtifact(f"not a list of numbers: {{e}}") from e
        if x.ndim != 1 or not 1 <= len(x) <= 1000:
            raise InvalidArtifact(f"need a 1-D list of 1..1000 numbers, got shape {{x.shape}}")
        if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
            raise InvalidArtifact("every value must be finite and within [0, 1]")
        return float(x.sum() - np.sum(x[:-1] * x[1:]))  # >= 0: see failure_reward

    def evaluate(self, program: str, parent_artifact, seed: int) -> Evaluation:
        parent = None if parent_artifact is None else np.asarray(parent_artifact, dtype=np.float64)
        kwargs = {{"parent": parent, "iters": self.iterations, "seed": seed}}
        res = run_function(program, "solve", kwargs, Limits(wall_s=self.time_budget_s + 5),
                           self.sandbox_packages, self.sandbox_paths)
        if res.failure:
            return self.failed(res.failure, res.log)
        try:  # the score is recomputed here from the artefact; nothing the program says counts
            score = self.score_artifact(res.value)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e))
        art = np.asarray(res.value, dtype=np.float64).tolist()
        return Evaluation(ok=True, score=score, reward=self.reward(score), artifact=art,
                          log=res.stdout[-500:])
'''

STARTER = '''# EVOLVE-BLOCK-START
def propose(x, rng):  # a changed copy of x
    k = 1  # how many values to change
    step = 0.1  # how far to move them
    i = rng.integers(len(x), size=k)
    x = x.copy()
    x[i] += rng.normal(0, step, size=k)
    return x
# EVOLVE-BLOCK-END

import numpy as np


def score(x):
    return x.sum() - np.sum(x[:-1] * x[1:])


def solve(parent, iters, seed):
    rng = np.random.default_rng(seed)
    x = np.full(10, 0.5) if parent is None else parent
    for _ in range(iters):
        trial = np.clip(propose(x, rng), 0, 1)
        if score(trial) > score(x):  # keep improvements only
            x = trial
    return x
'''

TEST = '''import numpy as np
import pytest

from discover.cli import main
from discover.registry import load_environment, registered

GOOD = """
import numpy as np
def solve(parent, iters, seed):
    return np.array([1.0, 0.0] * 5)
"""


def test_registered():
    assert "{name}" in registered()


def test_verify_and_refuse():
    env = load_environment("{name}")
    assert env.verify([1.0, 0.0, 1.0]).score == 2.0
    bad = env.verify([2.0])
    assert not bad.ok and "within [0, 1]" in bad.log


def test_the_starter_improves_its_parent():
    env = load_environment("{name}")
    (start,) = env.initial_artifacts(1, seed=0)
    ev = env.evaluate(env.starter_program(), start, seed=0)
    assert ev.ok and ev.score > env.verify(start).score


def test_evaluate_in_sandbox():
    env = load_environment("{name}")
    ev = env.evaluate(GOOD, None, seed=0)
    assert ev.ok and ev.score == 5.0
    crash = env.evaluate("def solve(parent, iters, seed):\\n    raise RuntimeError('x')\\n",
                         None, seed=0)
    assert not crash.ok and crash.failure == "crash"


def test_valid_rewards_lie_above_the_failure_reward():
    # The search refuses to start on a valid reward at or below the failure reward: try the
    # problem's extremes and its starting points (keep this true when you replace them).
    env = load_environment("{name}")
    rng = np.random.default_rng(0)
    extremes = [[1.0] * 1000, [0.0], [1.0], rng.uniform(0, 1, 1000).tolist()]
    starts = [a for seed in range(10) for a in env.initial_artifacts(4, seed=seed)]
    for art in extremes + starts:
        ev = env.verify(art)
        assert ev.ok and ev.reward > env.failure_reward, (art, ev)
'''

# What a changed problem must still pass: a real search starts from every seed tried and stores
# valid candidates (the null backend re-runs each parent's program: no model, seconds a seed).
SEARCH_TEST = '''

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_short_search_runs(tmp_path, seed, capsys):
    run = str(tmp_path / "run")
    rc = main(["run", "{name}", "--backend", "null", "--steps", "1", "--groups", "1",
               "--group-size", "2", "--seed", str(seed), "--run-dir", run])
    assert rc == 0, capsys.readouterr().err[-3000:]
    assert main(["best", run, "-k", "1"]) == 0, capsys.readouterr().out  # a valid candidate
'''
TEST += SEARCH_TEST


FOLDER_ENV = '''"""The {name} environment, made from the problem folder {source}.

It starts as that folder runs in `discover run FOLDER`: the folder (copied to problem/) is the
problem, its evaluator judges each program in the sandbox, and the artefact is the program. For
the full contract of a discover environment, override here:
- evaluate(program, parent_artifact, seed): run the program with the parent's artefact handed in
  (discover.sandbox.run_function) and return the Evaluation of the artefact it produced;
- score_artifact(artifact): the score recomputed from the artefact alone (raise InvalidArtifact
  naming what is wrong), so that `discover verify` re-verifies constructions, not programs;
- starter_program(): a short program that improves the parent's artefact, counting work (not
  seconds), with its EVOLVE-BLOCK the part the model rewrites.
"""

from pathlib import Path

from discover.problem_folder import FolderEnvironment

HERE = Path(__file__).parent


# Every valid reward (the evaluator's combined_score; its negative with direction "min") must
# lie above the failure reward, or the search refuses to start: -1 suits rewards above -1. If
# yours can fall lower, put it just below the lowest (discover's docs/ENVIRONMENTS.md: choosing
# a failure reward); `--set env.failure_reward=VALUE` overrides it for one run.
FAILURE_REWARD = -1.0


class Environment(FolderEnvironment):
    def __init__(self, **options):
        options.setdefault("failure_reward", FAILURE_REWARD)
        super().__init__(str(HERE / "problem"), **options)
        self.name = "{name}"
'''

FOLDER_TEST = '''import pytest

from discover.cli import main
from discover.registry import load_environment, registered


def test_registered():
    assert "{name}" in registered()


def test_the_initial_program_passes_its_evaluator():
    env = load_environment("{name}")
    (start,) = env.initial_artifacts(1, seed=0)
    ev = env.verify(start)
    assert ev.ok, ev.log


def test_a_broken_program_fails():
    env = load_environment("{name}")
    ev = env.evaluate("raise RuntimeError('broken')\\n", None, seed=0)
    assert not ev.ok
''' + SEARCH_TEST


def write_folder_skeleton(name: str, where: Path, folder: Path) -> Path:
    """A package whose environment is the problem folder (copied into it), to grow into the
    full contract (artefact re-verification, a starter that takes the parent's artefact)."""
    from discover.problem_folder import folder_files, read_folder

    spec = read_folder(folder)  # a broken folder is refused before anything is written
    root = _package_root(name, where)
    pkg = root / f"discover_{name}"
    (root / "tests").mkdir(parents=True)
    for rel, data in folder_files(spec.root).items():
        if not rel.startswith("_discover/") and rel.split("/")[0] not in ("openevolve", "shinka"):
            (pkg / "problem" / rel).parent.mkdir(parents=True, exist_ok=True)
            (pkg / "problem" / rel).write_bytes(data)
    pyproject = PYPROJECT.format(name=name, pkg=name).replace(
        '["prompt.md", "starter.py"]', '["problem/*", "problem/**/*"]')
    (root / "pyproject.toml").write_text(pyproject)
    (pkg / "__init__.py").write_text(FOLDER_ENV.format(name=name, source=spec.root))
    (root / "tests" / f"test_{name}.py").write_text(FOLDER_TEST.format(name=name))
    return root


def _package_root(name: str, where: Path) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"environment name {name!r} must be lower-case letters, digits, '_'")
    root = where / f"discover-{name}"
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another name or folder")
    return root


def write_skeleton(name: str, where: Path) -> Path:
    root = _package_root(name, where)
    pkg = root / f"discover_{name}"
    (root / "tests").mkdir(parents=True)
    pkg.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT.format(name=name, pkg=name))
    (pkg / "__init__.py").write_text(ENV.format(name=name))
    (pkg / "prompt.md").write_text(PROMPT)
    (pkg / "starter.py").write_text(STARTER)
    (root / "tests" / f"test_{name}.py").write_text(TEST.format(name=name))
    return root
