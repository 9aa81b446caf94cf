"""The environment shared by the AtCoder Heuristic Contest problems.

A candidate is a complete C++ program; its artefact is {"program": source, "seed": seed}, the
seed its first command-line argument (for its random number generator: a randomised search
re-scores the same from its artefact, and a re-run with another seed is another candidate). It
is compiled once in the sandbox, then run on a fixed set of generated cases, a few at a time on
a thread pool (each run is its own sandbox call), and every output is scored by the contest's
rules in Python. A plain source string is read as seed 0.

score  = the total of the case scores over the case set (what `discover verify` prints; with
         cases=150 it is on the scale of the contest's published totals);
reward = the mean case score (score / cases), so rewards read the same whatever the case count.
Any failed case (compile error, time limit, runtime error, wrong answer) fails the candidate,
as a single failing case zeroes a submission in the contest; the log and metrics name the case.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from discover.environment import (
    Environment,
    Evaluation,
    InvalidArtifact,
    program_and_seed,
    refuse_unknown,
)
from environments.ahc_common.cpp import CaseRun, compile_cpp, run_binary

CONTEST_CASES = 150  # the published totals are sums over this many hidden cases
STDERR_CHARS = 300
SOURCE_KEYS = ("program", "code", "source", "artifact")  # accepted wrappers in a JSON file
OPTIONS = ("cases", "case_seed", "workers", "cpu_s", "memory_mb", "compile_timeout_s")


class ContestEnvironment(Environment):
    """Subclasses set name, problem (a module with generate, format_input, score_output),
    prompt_file, baseline_file (the contest-style baseline, scored in the README), starter_file
    (the starter program: the baseline with a seeded random search, so that a re-run with
    another seed can score higher) and published (totals over 150 cases by who reached them)."""

    direction = "max"
    language = "cpp"
    # g++, its headers and libstdc++ are the OS's (/usr, always readable when sealed); a C++
    # program and its compiler need nothing else of the host.
    sandbox_packages = ()
    time_budget_s = 2.0  # CPU seconds per case, as in the contest
    cpu_slots = 2  # = workers: the cases of one candidate run this many at a time
    max_code_chars = 6000  # of the parent's program shown in a prompt (head and tail kept)
    problem: ClassVar[ModuleType]
    prompt_file: ClassVar[Path]
    baseline_file: ClassVar[Path]
    starter_file: ClassVar[Path]
    published: ClassVar[dict[str, int]] = {}

    def __init__(self, cases: int = 4, case_seed: int = 0, workers: int = 2, cpu_s: float = 2.0,
                 memory_mb: int = 1024, compile_timeout_s: float = 60.0, **options: Any) -> None:
        refuse_unknown(self.name, options, OPTIONS)
        super().__init__(cases=cases, case_seed=case_seed, workers=workers, cpu_s=cpu_s,
                         memory_mb=memory_mb, compile_timeout_s=compile_timeout_s)
        for key, value in {"cases": cases, "workers": workers, "memory_mb": memory_mb}.items():
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{self.name}: option {key} must be a positive integer, "
                                 f"got {value!r}")
        for key, value in {"cpu_s": cpu_s, "compile_timeout_s": compile_timeout_s}.items():
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{self.name}: option {key} must be a positive number, "
                                 f"got {value!r}")
        if not (isinstance(case_seed, int) and not isinstance(case_seed, bool)):
            raise ValueError(f"{self.name}: option case_seed must be an integer, got {case_seed!r}")
        self.cases, self.case_seed, self.workers = cases, case_seed, workers
        self.cpu_s, self.memory_mb = float(cpu_s), memory_mb
        self.compile_timeout_s = float(compile_timeout_s)
        self.cpu_slots = workers
        self.time_budget_s = self.cpu_s
        best = max(self.published.values()) if self.published else None
        self.target = None if best is None else best * cases / CONTEST_CASES
        self.score_name = f"total over {cases} cases"
        self._case_set: list[tuple[str, Any]] | None = None
        self._stdin: dict[int, bytes] = {}  # id(case) -> its input text, for the case set

    # --- cases ----------------------------------------------------------------------------------
    def case_set(self) -> list[tuple[str, Any]]:
        """(label, case) for the environment's cases: seeds case_seed .. case_seed + cases - 1."""
        if self._case_set is None:
            seeds = range(self.case_seed, self.case_seed + self.cases)
            self._case_set = [(f"seed {s}", self.problem.generate(s)) for s in seeds]
            self._stdin = {id(c): self.problem.format_input(c).encode() for _, c in self._case_set}
        return self._case_set

    # --- what the model sees --------------------------------------------------------------------
    def statement(self) -> str:
        return (self.prompt_file.read_text().strip() + "\n\n" +
                "Write one complete C++ program (compiled with g++ -std=gnu++20 -O2). It reads\n"
                "one test case from standard input and writes its answer to standard output;\n"
                "argv[1] is a seed for its random number generator.\n"
                f"Limits per test case: {self.cpu_s:g} s CPU time, {self.memory_mb} MiB memory. "
                f"It is run on {self.cases}\ngenerated test cases; a compile error, time limit, "
                "runtime error or invalid answer\non any case scores the program as failed.")

    def target_text(self) -> str:
        if self.target is None:
            return ""
        named = ", ".join(f"{who} {total:,}" for who, total in self.published.items())
        return (f"a total above {self.target:,.0f} over these {self.cases} cases, i.e. a mean "
                f"above {self.target / self.cases:,.0f} per case (published totals over "
                f"{CONTEST_CASES} cases: {named})")

    def format_score(self, score: float | None) -> str:
        return "none" if score is None else f"{score:,.0f}"

    def starter_program(self) -> str:
        """The shipped starter.cpp; its editable block holds its few tuning constants."""
        return self.starter_file.read_text()

    def program_of(self, artifact: Any) -> str | None:
        """A candidate's artefact holds its source: each initial state is its own starter."""
        try:
            return unpack(artifact)[0]
        except InvalidArtifact:
            return None

    # --- the search's starting points -----------------------------------------------------------
    def initial_artifacts(self, count: int, seed: int, init_file: str | None = None) -> list:
        """The starter program with the run's seed (one start whatever `count`), or the
        program in `init_file`."""
        if init_file:
            return [self.load_artifact(init_file)]
        return [{"program": self.starter_program(), "seed": int(seed)}]

    def load_artifact(self, path: str | Path) -> dict:
        """A C++ source file (seed 0), or a JSON file holding the source (a string, or an
        object with one of the keys program / code / source / artifact, and optionally seed)."""
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidArtifact(f"cannot read program {path}: {e}") from e
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except ValueError as e:
                raise InvalidArtifact(f"cannot read {path} as JSON: {e}") from e
            if isinstance(data, dict):
                key = next((k for k in SOURCE_KEYS if k in data), None)
                data = {"program": data[key], "seed": data.get("seed", 0)} if key else data
            text = data
        try:
            source, seed = unpack(text)
        except InvalidArtifact as e:
            raise InvalidArtifact(f"{path}: {e}") from e
        return {"program": source, "seed": seed}

    # --- scoring --------------------------------------------------------------------------------
    def evaluate(self, program: str, parent_artifact: Any, seed: int) -> Evaluation:
        """Compile and run `program` with `seed` on the case set. The parent is in the prompt
        already, and the cases are fixed (scores stay comparable): parent_artifact is unused."""
        return self.score_program(program, seed=int(seed))

    def verify(self, artifact: Any) -> Evaluation:
        """The artefact is a program: verifying it means compiling and running it (sandboxed)
        with its seed."""
        try:
            source, seed = unpack(artifact)
        except InvalidArtifact as e:
            return self.failed("invalid_artifact", str(e))
        return self.score_program(source, seed=seed)

    def score_artifact(self, artifact: Any) -> float:
        ev = self.verify(artifact)
        if not ev.ok:
            raise InvalidArtifact(f"{ev.failure}: {ev.log}")
        return ev.score

    def score_program(self, source: str, cases: list[tuple[str, Any]] | None = None,
                      seed: int = 0) -> Evaluation:
        """Compile `source`, run it with `seed` on `cases` (default: the case set) and score
        every output."""
        cases = self.case_set() if cases is None else cases
        comp = compile_cpp(source, self.compile_timeout_s, self.sandbox_paths)
        if comp.binary is None:
            return self.failed(comp.failure, comp.log, stage="compile", compile_s=comp.wall_s)
        results = self._run_cases(comp.binary, cases, seed)
        failed = sorted(i for i, r in results.items() if r[0] != "ok")
        if failed:
            i = failed[0]
            kind, reason, run = results[i]
            log = f"case {i} ({cases[i][0]}): {reason}"
            if run is not None and run.stderr.strip():
                log += f"\nstderr: {run.stderr.strip()[-STDERR_CHARS:]}"
            return self.failed(kind, log, stage="run", case=i, case_label=cases[i][0],
                               reason=reason, failed_cases=failed)
        scores = [results[i][1] for i in range(len(cases))]
        total = sum(scores)
        first_err = results[0][2].stderr.strip()[-STDERR_CHARS:]
        log = (f"{len(cases)} cases: total {total}, mean {total / len(cases):.1f}, "
               f"min {min(scores)}, max {max(scores)}")
        if first_err:
            log += f"\nstderr of case 0: {first_err}"
        walls = [results[i][2].wall_s for i in range(len(cases))]
        return Evaluation(ok=True, score=float(total), reward=total / len(cases),
                          artifact={"program": source, "seed": seed},
                          metrics={"case_scores": scores, "mean": total / len(cases),
                                   "max_wall_s": max(walls), "compile_s": comp.wall_s},
                          log=log)

    def _run_cases(self, binary: bytes, cases: list[tuple[str, Any]], seed: int = 0
                   ) -> dict[int, tuple[str, Any, CaseRun | None]]:
        """case index -> ("ok", score, run) or (failure kind, reason, run). After the first
        failure the cases not yet started are dropped: one failure decides the candidate."""
        def one(case: Any) -> tuple[str, Any, CaseRun | None]:
            stdin = self._stdin.get(id(case)) or self.problem.format_input(case).encode()
            run = run_binary(binary, stdin, self.cpu_s, self.memory_mb, paths=self.sandbox_paths,
                             args=(str(seed),))
            if run.status != "ok":
                return run.status, run.reason, run
            try:
                return "ok", self.problem.score_output(case, run.output), run
            except InvalidArtifact as e:
                return "invalid_artifact", f"wrong answer: {e}", run

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(one, case): i for i, (_, case) in enumerate(cases)}
            for fut in as_completed(futures):
                if fut.result()[0] != "ok":
                    pool.shutdown(wait=True, cancel_futures=True)
                    break
        # Every case that ran (those running at the first failure finished in shutdown).
        return {i: fut.result() for fut, i in futures.items() if not fut.cancelled()}

    # --- rewards --------------------------------------------------------------------------------
    def reward(self, score: float) -> float:
        return score / self.cases  # the mean case score

    @property
    def failure_reward(self) -> float:
        return -1.0  # case scores are >= 0, so every valid mean is >= 0


def unpack(artifact: Any) -> tuple[str, int]:
    """(source, seed) of an artefact: {"program": source, "seed": seed}, or a bare source
    (seed 0, as stored before programs had seeds)."""
    if isinstance(artifact, str):
        artifact = {"program": artifact}
    return program_and_seed(artifact, "a C++ program's source text")
