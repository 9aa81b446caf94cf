"""The environment contract (docs/ARCHITECTURE.md); the checks and helpers environments share.

An environment is one problem: a statement, a way to run a candidate program and score what
it produces, and a direction. registry.py finds one by name (installed packages register under
an entry-point group; a problem folder is found by its path).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

# Every way a candidate can fail; each maps to the environment's failure reward.
FAILURE_KINDS = (
    "no_code",  # the completion holds no code block of the environment's language
    "syntax_error",  # the program does not compile
    "crash",  # it raised, exited non-zero, or died from a signal
    "timeout",  # wall-clock or CPU-time limit
    "memory",  # address-space limit
    "invalid_output",  # it returned nothing usable (wrong type, not serialisable, too big)
    "invalid_artifact",  # it returned an artefact that fails the environment's verification
)


@dataclass
class Evaluation:
    """What scoring one candidate (or verifying one artefact) produced."""

    ok: bool
    score: float | None = None  # the environment's own measure (e.g. C5); None on failure
    reward: float = 0.0  # higher is better; failures get the environment's failure reward
    failure: str | None = None  # one of FAILURE_KINDS when not ok
    artifact: Any = None  # JSON-serialisable artefact (recomputed score comes from it)
    metrics: dict = field(default_factory=dict)
    log: str = ""  # short excerpt: failure reason, stdout/stderr tail

    def __post_init__(self) -> None:
        if self.failure is not None and self.failure not in FAILURE_KINDS:
            raise ValueError(
                f"unknown failure kind {self.failure!r}; expected one of {FAILURE_KINDS}")


@dataclass
class Parent:
    """What the prompt renderer and the program see of a parent state."""

    code: str | None
    artifact: Any
    score: float | None
    parent_score: float | None  # the parent's own parent's score: "before -> after"
    stdout: str = ""


class InvalidArtifact(ValueError):
    """An artefact that fails verification; the message says what is wrong."""


class Environment:
    """Base class for problems. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str] = ""
    direction: ClassVar[str] = "min"  # "min" or "max"
    language: ClassVar[str] = "python"
    # Per program: its wall-clock limit. Some environments also hand it to the program as
    # budget_s; Erdős, AC and circle packing hand it a work count (`iters`) instead, so that
    # a result does not depend on the machine's load.
    time_budget_s: ClassVar[float] = 10.0
    cpu_slots: ClassVar[int] = 1  # Ray CPUs one evaluation occupies
    gpus: ClassVar[float] = 0.0  # CUDA devices one evaluation needs
    target: ClassVar[float | None] = None  # the record to beat, shown in prompts
    # What a candidate may read in the sealed sandbox besides the OS (/usr: programs, libraries,
    # compilers and headers) and the interpreter: Python distributions (with what they require)
    # and host paths or globs (those under /dev as devices). Pass both to run_function /
    # run_program. Nothing else of the host is visible to it.
    sandbox_packages: ClassVar[tuple[str, ...]] = ("numpy",)
    sandbox_paths: ClassVar[tuple[str, ...]] = ()
    score_name: ClassVar[str] = "score"  # what the score is called in prompts, e.g. "C5"
    entry: ClassVar[str] = ""  # the function a program defines, e.g. "solve(parent, iters,
    # seed)"; "" when a program is a whole program (C++ reading stdin)
    max_code_chars: ClassVar[int] = 4000  # of the parent's program shown (head and tail kept)
    max_parallel: ClassVar[int] = 0  # evaluations at once, at most (0: as many as the cores)
    # Settings a run of this environment starts from, as config sections, e.g. {"policy":
    # {"temperature": 1.0}}: a layer right above the config's defaults, below everything else
    # (config.resolve). Set one only where a measurement supports it.
    recommended: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, **options: Any) -> None:
        self.options = options

    # --- what the model sees: the parts discover/prompt.py renders ------------
    def statement(self) -> str:
        raise NotImplementedError

    def handoff(self, artifact: Any) -> str:
        """How the parent's artefact reaches the new program, e.g. "solve() receives the
        parent's h as `parent` (a numpy array of 50 values)." Empty when it does not."""
        return ""

    def summarize(self, artifact: Any) -> str:
        """A few words on an artefact, for a parent that has no program to show."""
        return "a starting construction"

    def target_text(self) -> str:
        """The target to beat, as the prompt states it ("" when there is none)."""
        if self.target is None:
            return ""
        return f"{self.score_name} {'<' if self.direction == 'min' else '>'} " \
               f"{self.target:.10g} (the record)"  # every digit: records differ in the 7th

    def format_score(self, score: float | None) -> str:
        return "none" if score is None else f"{score:.10g}"

    def starter_program(self) -> str | None:
        """A short, correct, deliberately simple program that improves the parent's artefact
        within its budget; initial states carry it (run once on each starting construction),
        so the first prompt already shows a working program and its score. It may mark the
        part the model rewrites with EVOLVE-BLOCK-START / EVOLVE-BLOCK-END comment lines.
        Optional: None starts from the bare constructions."""
        return None

    def program_of(self, artifact: Any) -> str | None:
        """The program an artefact is, where the artefact is a program (a C++ source, a kernel):
        such an environment's initial artefact is its own starter. None otherwise."""
        return None

    # --- the search's starting points ----------------------------------------
    def initial_artifacts(self, count: int, seed: int, init_file: str | None = None) -> list[Any]:
        """Artefacts of the initial states (no code). `init_file` holds a known construction."""
        raise NotImplementedError

    # --- scoring --------------------------------------------------------------
    def evaluate(self, program: str, parent_artifact: Any, seed: int) -> Evaluation:
        """Run `program` in the sandbox with the parent's artefact handed in, then verify."""
        raise NotImplementedError

    def score_artifact(self, artifact: Any) -> float:
        """The score of an artefact; raises InvalidArtifact naming what is wrong."""
        raise NotImplementedError

    def verify(self, artifact: Any) -> Evaluation:
        """Score a stored or user-supplied artefact without running any program."""
        try:
            score = self.score_artifact(artifact)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e))
        return Evaluation(ok=True, score=score, reward=self.reward(score), artifact=artifact)

    def load_artifact(self, path: str | Path) -> Any:
        """Read an artefact file (JSON by default); raises InvalidArtifact if unreadable."""
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise InvalidArtifact(f"cannot read artefact {path}: {e}") from e

    # --- pictures (optional) ---------------------------------------------------
    def draw(self, artifact: Any, ax: Any, metrics: dict | None = None) -> bool:
        """Draw a picture of a valid artefact on matplotlib axes `ax` for `discover report`;
        `metrics` are the candidate's stored evaluation metrics ({} when none were stored).
        Return False when nothing was drawn. Optional: the default draws nothing, and the
        report then says that this environment has no picture."""
        return False

    # --- rewards --------------------------------------------------------------
    def reward(self, score: float) -> float:
        return -score if self.direction == "min" else score

    @property
    def failure_reward(self) -> float:
        """Below any valid reward. The default suits rewards in [-1, inf); an environment
        whose valid rewards can fall lower overrides it (the search checks the initial states).
        Keep it close below the valid range: advantages by the mean baseline are on the reward
        scale, so a remote failure reward drowns every difference between valid candidates."""
        return -1.0

    def failed(self, kind: str, log: str = "", **metrics: Any) -> Evaluation:
        return Evaluation(ok=False, reward=self.failure_reward, failure=kind, log=log[-2000:],
                          metrics=metrics)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "min" else a > b

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "direction": cls.direction, "language": cls.language,
                "time_budget_s": cls.time_budget_s, "cpu_slots": cls.cpu_slots,
                "gpus": cls.gpus, "sandbox_packages": list(cls.sandbox_packages),
                "sandbox_paths": list(cls.sandbox_paths),
                "recommended": copy.deepcopy(cls.recommended)}


def refuse_unknown(env_name: str, options: dict, known: tuple[str, ...]) -> None:
    """An environment's options check: a misspelt option must not be silently ignored."""
    if options:
        raise ValueError(f"unknown option(s) for {env_name}: {', '.join(sorted(options))}; "
                         f"known: {', '.join(known)}")


def check_positive(name: str, value: Any) -> None:
    if not float(value) > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class InvalidOptions(ValueError):
    """Options (the [env] config section) that the environment refuses."""


def program_and_seed(artifact: Any, entry: str) -> tuple[str, int]:
    """(program, seed) of an artefact that is a program run with a seed (AHC, denoising,
    TriMul): {"program": source, "seed": int, default 0}. `entry` says what the program is;
    raises InvalidArtifact naming what is wrong."""
    if not isinstance(artifact, dict):
        raise InvalidArtifact(f"an artefact is a JSON object with a 'program' ({entry}), got "
                              f"{type(artifact).__name__}")
    program, seed = artifact.get("program"), artifact.get("seed", 0)
    if not isinstance(program, str) or not program.strip():
        raise InvalidArtifact(f"the artefact has no 'program', or an empty one ({entry})")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArtifact(f"the artefact's 'seed' must be an integer, got {seed!r}")
    return program, seed
