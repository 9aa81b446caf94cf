"""A problem brought as it is: an OpenEvolve or ShinkaEvolve problem folder as an environment.

OpenEvolve's shape: `initial_program.py`, whose evolvable part lies between EVOLVE-BLOCK-START and
EVOLVE-BLOCK-END; `evaluator.py` with `evaluate(program_path)` returning a dict (or an
`EvaluationResult`) that holds `combined_score`, optionally `evaluate_stage1..3` for a cascade;
`config.yaml` (prompt.system_message; evaluator.timeout, cascade_evaluation, cascade_thresholds,
parallel_evaluations). ShinkaEvolve's: `initial.py`, and `evaluate.py` whose
`main(program_path, results_dir)` writes `metrics.json` (combined_score) and `correct.json`.

Here the evaluator is the judge: a candidate's score is what the folder's evaluator returns for
its program (the artefact is the program itself), not a re-verification of a construction. The
evaluator and the program run only inside the sandbox, in a fresh copy of the folder each time
(discover/_folder_harness.py), never in the discover process.
"""

from __future__ import annotations

import ast
import json
import math
import secrets
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml  # both tools keep their problem's settings in YAML

from discover import evolve_block
from discover.environment import Environment, Evaluation, InvalidArtifact, refuse_unknown
from discover.sandbox import Limits, run_program

SHAPES = {  # shape: (evaluator, initial program)
    "openevolve": ("evaluator.py", "initial_program.py"),
    "shinka": ("evaluate.py", "initial.py"),
}
SKIPPED = {".git", "__pycache__", "openevolve_output", "results", ".ipynb_checkpoints"}
MAX_FOLDER_BYTES = 32 << 20  # copied into the sandbox for every evaluation
HARNESS = Path(__file__).with_name("_folder_harness.py")
SHIMS = Path(__file__).with_name("folder_shims")
DEFAULT_TIMEOUT_S = 60.0


class FolderError(ValueError):
    """A folder that cannot be run; the message names the problem."""


class FolderWarning(UserWarning):
    """Something a folder lacks that the run can do without (the CLI prints it plainly)."""


@dataclass(frozen=True)
class Folder:
    """What a problem folder says, read once on the host (nothing of it is run here)."""

    root: Path
    shape: str  # "openevolve" | "shinka"
    evaluator: str  # file names inside root
    initial: str
    statement: str
    timeout_s: float | None  # the folder's own per-evaluation timeout, if it gives one
    cascade: bool
    thresholds: tuple[float, ...]
    parallel: int  # evaluations at once the folder asks for (0: no limit)
    packages: tuple[str, ...]  # installed distributions the evaluator may import
    notes: tuple[str, ...]  # warnings to show the user


def is_folder_name(name: str) -> bool:
    """Whether an environment name is a path to a problem folder rather than an installed name."""
    return "/" in name or name.startswith(".") or Path(name).is_dir()


def read_folder(path: str | Path) -> Folder:
    """Detect the folder's shape and read its evaluator, initial program and settings; raises
    FolderError naming what is missing or broken, before anything runs."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FolderError(f"{path} is not a folder (an environment name, or a path to an "
                          "OpenEvolve or ShinkaEvolve problem folder)")
    complete = [s for s, (ev, ini) in SHAPES.items() if (root / ev).is_file() and
                (root / ini).is_file()]  # both pairs: a folder `discover export` converted
    shape = next(iter(complete), None) or next(
        (s for s, (ev, _) in SHAPES.items() if (root / ev).is_file()), None)
    if shape is None:
        raise FolderError(f"{root} has no evaluator: evaluator.py (OpenEvolve) or evaluate.py "
                          "(ShinkaEvolve)")
    evaluator, initial = SHAPES[shape]
    if not (root / initial).is_file():
        other = next((i for _, i in SHAPES.values() if (root / i).is_file()), None)
        if other is None:
            raise FolderError(f"{root} has no initial program: {initial} (beside {evaluator})")
        initial = other
    for name in (evaluator, initial):
        _check_syntax(root / name)
    notes = []
    code = (root / initial).read_text()
    if evolve_block.find(code) is None:
        notes.append(f"{initial} has no EVOLVE-BLOCK-START / EVOLVE-BLOCK-END block: the whole "
                     "program is the editable region")
    settings = _settings(root, shape)
    ev = settings.get("evaluator") or {}
    packages, missing = _packages(root)
    if missing:
        notes.append(f"requirements.txt names packages not installed here, which the evaluator "
                     f"cannot import: {', '.join(missing)}")
    timeout = ev.get("timeout")
    return Folder(
        root=root, shape=shape, evaluator=evaluator, initial=initial,
        statement=_statement(root, shape, settings, code),
        timeout_s=float(timeout) if timeout else None,
        cascade=bool(ev.get("cascade_evaluation", True)),
        thresholds=tuple(float(t) for t in ev.get("cascade_thresholds", (0.5, 0.75, 0.9))),
        parallel=int(ev.get("parallel_evaluations") or settings.get("max_evaluation_jobs") or 0),
        packages=packages, notes=tuple(notes))


def _check_syntax(path: Path) -> None:
    try:
        compile(path.read_text(), str(path), "exec")  # compiles, runs nothing
    except SyntaxError as e:
        raise FolderError(f"{path} has a syntax error at line {e.lineno}: {e.msg}") from e


def _settings(root: Path, shape: str) -> dict:
    """The folder's YAML settings: config.yaml, or its only .yaml file (OpenEvolve keeps one per
    experiment phase; then config.yaml decides)."""
    files = [root / "config.yaml"] if (root / "config.yaml").is_file() else \
        sorted(root.glob("*.yaml"))
    merged: dict = {}
    for f in files if len(files) == 1 or shape == "shinka" else []:
        try:
            data = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError as e:
            raise FolderError(f"{f} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise FolderError(f"{f} must hold a mapping of settings")
        merged = {**data, **merged}
    return merged


def _statement(root: Path, shape: str, settings: dict, code: str) -> str:
    """The system message or task text of the folder's config; else its README; else the
    initial program's docstring."""
    text = (settings.get("prompt") or {}).get("system_message") if shape == "openevolve" else \
        (settings.get("evo_config") or {}).get("task_sys_msg")
    if not text and (root / "README.md").is_file():
        text = (root / "README.md").read_text()[:3000]
    if not text:
        try:
            text = ast.get_docstring(ast.parse(code)) or ""
        except SyntaxError:
            text = ""
    return (text.strip() or "Improve the program.") + \
        "\n\nThe problem's evaluator runs the program and returns combined_score."


def _packages(root: Path) -> tuple[tuple[str, ...], list[str]]:
    """numpy, and what requirements.txt names that is installed here (the sandbox shows only
    installed distributions); the names it could not find."""
    names = ["numpy"]
    req = root / "requirements.txt"
    if req.is_file():
        for line in req.read_text().splitlines():
            name = line.split("#")[0].strip()
            for sep in "<>=!~;[ ":
                name = name.split(sep)[0]
            if name:
                names.append(name)
    found, missing = [], []
    for name in dict.fromkeys(names):
        try:
            metadata.distribution(name)
            found.append(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return tuple(found), missing


def folder_files(root: Path) -> dict[str, bytes]:
    """Every file of the folder, by relative path (tool outputs and caches left out)."""
    files, total = {}, 0
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or any(part in SKIPPED or part.startswith(".") for part in rel.parts):
            continue
        total += p.stat().st_size
        if total > MAX_FOLDER_BYTES:
            raise FolderError(f"{root} holds more than {MAX_FOLDER_BYTES >> 20} MB of files; "
                              "they are copied for every evaluation: move large data out")
        files[str(rel)] = p.read_bytes()
    for p in sorted(SHIMS.glob("*/**/*.py")):  # the two tool names evaluators import
        files.setdefault(str(p.relative_to(SHIMS)), p.read_bytes())
    files["_discover/harness.py"] = HARNESS.read_bytes()
    return files


class FolderEnvironment(Environment):
    """A problem folder as an environment: its initial program is the starter (its EVOLVE-BLOCK
    the editable region), its evaluator's combined_score the score (higher is better unless
    env.direction = "min")."""

    language = "python"
    direction = "max"  # the default of the option: what `discover envs` shows of a package
    entry = ""  # a whole program: the evaluator decides what it calls
    score_name = "combined_score"
    max_code_chars = 6000

    def __init__(self, path: str, direction: str = "max", timeout_s: float | None = None,
                 memory_mb: int = 4096, failure_reward: float = -1.0, **options: Any) -> None:
        refuse_unknown("a problem folder", options,
                       ("direction", "timeout_s", "memory_mb", "failure_reward"))
        if direction not in ("max", "min"):
            raise FolderError(f"direction must be 'max' or 'min', got {direction!r}")
        self.folder = read_folder(path)
        timeout = timeout_s if timeout_s is not None else \
            (self.folder.timeout_s or DEFAULT_TIMEOUT_S)
        if not float(timeout) > 0 or not int(memory_mb) > 0:
            raise FolderError(f"timeout_s and memory_mb must be positive, got {timeout!r} and "
                              f"{memory_mb!r}")
        super().__init__(direction=direction, timeout_s=timeout_s, memory_mb=memory_mb,
                         failure_reward=failure_reward)
        self.name = self.folder.root.name
        self.direction = direction
        self.time_budget_s = float(timeout)
        self.memory_mb = int(memory_mb)
        self.max_parallel = self.folder.parallel
        self.sandbox_packages = self.folder.packages
        self._failure_reward = float(failure_reward)
        self._files = folder_files(self.folder.root)
        for note in self.folder.notes:
            warnings.warn(f"{self.folder.root}: {note}", FolderWarning, stacklevel=2)

    @property
    def failure_reward(self) -> float:
        return self._failure_reward

    def statement(self) -> str:
        return self.folder.statement

    def starter_program(self) -> str:
        return (self.folder.root / self.folder.initial).read_text()

    def program_of(self, artifact: Any) -> str | None:
        return artifact.get("program") if isinstance(artifact, dict) else None

    def summarize(self, artifact: Any) -> str:
        return "the initial program"

    def initial_artifacts(self, count: int, seed: int, init_file: str | None = None) -> list:
        path = Path(init_file) if init_file else self.folder.root / self.folder.initial
        return [self.load_artifact(path)]

    def load_artifact(self, path: str | Path) -> Any:
        """A program file (.py), or the artefact JSON `discover export` writes."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise InvalidArtifact(f"cannot read {path}: {e}") from e
        if Path(path).suffix == ".json":
            return super().load_artifact(path)
        return {"program": text}

    def evaluate(self, program: str, parent_artifact: Any, seed: int) -> Evaluation:
        return self.judge(program)

    def verify(self, artifact: Any) -> Evaluation:
        program = self.program_of(artifact)
        if not isinstance(program, str) or not program.strip():
            return self.failed("invalid_artifact", "the artefact holds no 'program'")
        return self.judge(program)

    def score_artifact(self, artifact: Any) -> float:
        ev = self.verify(artifact)
        if not ev.ok:
            raise InvalidArtifact(ev.log)
        return float(ev.score)

    def judge(self, program: str) -> Evaluation:
        """Run the folder's evaluator on `program` in the sandbox; its combined_score is the
        score. A hung evaluator is killed at the timeout; one that raises, or returns no finite
        combined_score, is a failure with its message kept."""
        try:
            compile(program, "program.py", "exec")  # compiles, runs nothing
        except (SyntaxError, ValueError) as e:
            return self.failed("syntax_error", f"{type(e).__name__}: {e}")
        token = secrets.token_hex(16)
        call = {"shape": self.folder.shape, "evaluator": self.folder.evaluator,
                "program": "_discover/program.py", "cascade": self.folder.cascade,
                "thresholds": list(self.folder.thresholds), "token": token}
        files = {**self._files, "_discover/program.py": program.encode("utf-8", "replace"),
                 "_discover/call.json": json.dumps(call).encode()}
        res = run_program([sys.executable, "-s", "-B", "_discover/harness.py"], files,
                          Limits(wall_s=self.time_budget_s, memory_mb=self.memory_mb),
                          outputs=["_discover/result.json"], packages=self.sandbox_packages)
        tail = (res.stdout[-1500:] + ("\n--- stderr ---\n" + res.stderr[-1500:]
                                      if res.stderr.strip() else "")).strip()
        if res.status == "timeout":
            return self.failed("timeout", f"the evaluator ran past its timeout of "
                               f"{self.time_budget_s:g} s and was killed\n{tail}")
        if res.status == "memory":
            return self.failed("memory", f"the evaluation ran out of memory ({self.memory_mb} "
                               f"MB)\n{tail}")
        try:
            out = json.loads(res.outputs["_discover/result.json"])
        except (KeyError, ValueError):
            return self.failed("crash", f"the evaluation ended without a result "
                               f"({res.reason or res.status}, exit {res.returncode})\n{tail}")
        if out.get("token") != token:
            return self.failed("invalid_output", "the result file was not the harness's")
        if out.get("invalid"):
            return self.failed("invalid_artifact", f"the evaluator: {out['invalid']}\n{tail}")
        if out.get("error"):
            return self.failed("crash", f"the evaluator raised:\n{out['error']}\n{tail}")
        return self._scored(program, out, tail)

    def _scored(self, program: str, out: dict, tail: str) -> Evaluation:
        metrics = out.get("metrics") if isinstance(out.get("metrics"), dict) else {}
        score = metrics.get("combined_score")
        shown = _jsonable(metrics)
        if "combined_score" not in metrics:
            return self.failed("invalid_output", f"the evaluator returned no combined_score "
                               f"(metrics: {', '.join(map(str, metrics)) or 'none'})\n{tail}",
                               **shown)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or \
                not math.isfinite(score):
            return self.failed("invalid_output", f"combined_score is {score!r}, not a finite "
                               f"number\n{tail}", **shown)
        log = "".join(f"[{k}] {v}\n" for k, v in _jsonable(out.get("artifacts") or {}).items())
        shown["stages"] = out.get("stages", [])
        return Evaluation(ok=True, score=float(score), reward=self.reward(float(score)),
                          artifact={"program": program}, metrics=shown,
                          log=(log + tail)[-4000:])


def _jsonable(d: dict) -> dict:
    """Metrics and artifacts as the archive can store them: numbers, short strings, the rest
    as text."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, int, float)) or v is None:
            out[str(k)] = v if not isinstance(v, float) or math.isfinite(v) else repr(v)
        else:
            text = v if isinstance(v, str) else json.dumps(v, default=repr)
            out[str(k)] = text[:1000]
    return out
