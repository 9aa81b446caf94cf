"""The archive: every candidate of a run, the PUCT statistics, step metrics and adapter versions.

One SQLite file (standard library, WAL mode) in the run directory. The driver is the single
writer; readers in other processes (CLI, reports, notebooks) open it with `readonly=True` while a
run writes. Each step is one transaction, so a killed run holds only whole steps.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discover.puct import Node, Puct, copy_state, restore_state

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    group_idx INTEGER,
    parent_id INTEGER REFERENCES candidates(id),
    code TEXT,
    artifact TEXT,            -- JSON, NULL for failures
    score REAL,
    reward REAL NOT NULL,
    ok INTEGER NOT NULL,
    failure TEXT,
    log TEXT NOT NULL DEFAULT '',
    stdout TEXT NOT NULL DEFAULT '',
    completion TEXT NOT NULL DEFAULT '',
    policy_version INTEGER NOT NULL DEFAULT 0,
    gen_s REAL NOT NULL DEFAULT 0,
    eval_s REAL NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',   -- JSON
    initial INTEGER NOT NULL DEFAULT 0,
    key TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
-- "best so far" is one walk down this index: WHERE ok = 1 ORDER BY reward DESC, id
CREATE INDEX IF NOT EXISTS candidates_best ON candidates (ok, reward DESC, id);
CREATE INDEX IF NOT EXISTS candidates_parent ON candidates (parent_id);
CREATE INDEX IF NOT EXISTS candidates_step ON candidates (step);
-- the UI's candidate table: its default order (reward) is a walk down an index, and the lists of
-- failure kinds and policy versions are a few index probes (Archive.distinct), not table scans
CREATE INDEX IF NOT EXISTS candidates_reward ON candidates (reward, id);
CREATE INDEX IF NOT EXISTS candidates_failure ON candidates (failure);
CREATE INDEX IF NOT EXISTS candidates_version ON candidates (policy_version);
CREATE TABLE IF NOT EXISTS puct_nodes (      -- the selectable set and its statistics
    id INTEGER PRIMARY KEY REFERENCES candidates(id),
    n INTEGER NOT NULL,
    m REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- JSON values
CREATE TABLE IF NOT EXISTS steps (
    step INTEGER PRIMARY KEY,
    metrics TEXT NOT NULL,     -- JSON
    finished_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS adapters (
    version INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    path TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

_SUMMARY = ("id, step, parent_id, score, reward, ok, failure, initial, created_at, "
            "policy_version")
SUMMARY_SORT = {"id": False, "step": False, "score": True, "reward": False,
                "policy_version": False, "failure": True}  # sortable column: may it be NULL?
_DISTINCT = ("step", "failure", "policy_version")  # each has an index: Archive.distinct
_COLUMNS = ("id, step, group_idx, parent_id, code, artifact, score, reward, ok, failure, log, "
            "stdout, completion, policy_version, gen_s, eval_s, metrics, initial, key")


class ArchiveError(RuntimeError):
    """The archive file is missing, not an archive, or asked to do something inconsistent."""


class EmptyArchive(ArchiveError):
    """An SQLite file with no tables yet: a run killed before its first commit leaves one."""


def check_archive(path: str | Path) -> None:
    """Raise ArchiveError if `path` holds anything but an archive this discover reads, without
    writing to it. No file, or an empty one (nothing was stored yet), is fine."""
    if Path(path).exists():
        try:
            Archive(path, readonly=True).close()
        except EmptyArchive:
            pass


class CandidateNotFound(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


@dataclass
class Candidate:
    id: int | None
    step: int
    parent_id: int | None
    code: str | None
    artifact: Any
    score: float | None
    reward: float
    ok: bool
    failure: str | None = None
    log: str = ""
    stdout: str = ""
    completion: str = ""
    group_idx: int | None = None
    policy_version: int = 0
    gen_s: float = 0.0
    eval_s: float = 0.0
    metrics: dict = field(default_factory=dict)
    initial: bool = False
    key: str = ""


def dedup_key(artifact: Any, code: str | None) -> str:
    """sha256 of the canonical JSON of the artefact, or of the code when there is no artefact.

    "" when there is neither (such a candidate is never treated as a duplicate)."""
    if artifact is not None:
        text = "artifact:" + _artifact_json(artifact, sort_keys=True)
    elif code is not None:
        text = "code:" + code
    else:
        return ""
    return hashlib.sha256(text.encode()).hexdigest()


def _artifact_json(artifact: Any, sort_keys: bool = False) -> str:
    try:
        return json.dumps(artifact, allow_nan=False, sort_keys=sort_keys, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"artefact is not storable as JSON ({e}); artefacts must be JSON values (lists, "
            f"dicts, finite numbers, strings), with no NaN or infinity") from e


def _finite(x: Any) -> Any:
    """Metrics are for reading, not for failing a run: non-finite floats become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if hasattr(x, "tolist"):  # numpy scalars and arrays
        return _finite(x.tolist())
    return x


def _metrics_json(metrics: dict) -> str:
    return json.dumps(_finite(metrics), allow_nan=False, default=str)


def _check_file(path: Path) -> None:
    """Refuse a file that is not SQLite before SQLite touches it (it is never overwritten)."""
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if head != _SQLITE_MAGIC:
            raise ArchiveError(f"{path} is not a discover archive (not an SQLite file: corrupt or "
                               f"another kind of file); it was left untouched")


class Archive:
    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.is_file():
            raise ArchiveError(f"no archive at {self.path}")
        _check_file(self.path)
        self.db: sqlite3.Connection | None = None
        try:
            if readonly:
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                          timeout=BUSY_TIMEOUT_S, isolation_level=None)
            else:
                self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                          isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            tables = {r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            if self.db is not None:
                self.db.close()
            raise ArchiveError(f"cannot open {self.path} as a discover archive ({e}); "
                               f"it was left untouched") from e
        if tables and "candidates" not in tables:
            self.db.close()
            raise ArchiveError(f"{self.path} is an SQLite file but not a discover archive "
                               f"(tables: {', '.join(sorted(tables))}); it was left untouched")
        # Check the schema before writing anything: another version's archive stays as it was.
        found = self.get_meta("archive_schema") if "meta" in tables else None
        if tables and found != SCHEMA_VERSION:
            self.db.close()
            raise ArchiveError(f"{self.path} has archive schema {found}, this discover reads "
                               f"{SCHEMA_VERSION}: use the discover version that wrote it; "
                               f"it was left untouched")
        if readonly:
            if not tables:
                self.db.close()
                raise EmptyArchive(f"{self.path} is empty: not a discover archive")
            return
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")  # a finished step survives a power cut
        self.db.execute("PRAGMA foreign_keys = ON")
        with self._tx():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self.db.execute(stmt)
            if self.get_meta("archive_schema") is None:
                self._set_meta("archive_schema", SCHEMA_VERSION)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction: all of it is stored, or none of it."""
        if self.readonly:
            raise ArchiveError(f"{self.path} was opened read-only")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite may already have rolled back (disk full)
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:  # disk full, read-only file system, locked ...
            raise ArchiveError(f"cannot write to {self.path}: {e}; nothing of this write was "
                               f"stored, everything stored before is intact") from e

    # --- meta --------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self._set_meta(key, value)

    def _set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (key, json.dumps(value, allow_nan=False)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # --- writing -----------------------------------------------------------------------
    def add_initial(self, candidates: list[Candidate], puct: Puct) -> list[int]:
        """Store the initial states (step -1) and make them selectable, in one transaction."""
        for i, c in enumerate(candidates):
            if not c.ok:
                raise ArchiveError(f"initial state {i} is not valid (failure {c.failure!r}); "
                                   f"only verified constructions can start a search")
        rows = [self._row(c, step=-1, parent_id=None, initial=True, where=f"initial state {i}")
                for i, c in enumerate(candidates)]
        saved = copy_state(puct)
        try:
            with self._tx():
                ids = [self._insert(r) for r in rows]
                for cid, c, r in zip(ids, candidates, rows, strict=True):
                    puct.add_initial(cid, c.reward, r["key"])
                self._save_puct(puct)
                self._set_meta("initialised", True)  # with the states: a kill cannot split them
        except BaseException:
            restore_state(puct, saved)
            raise
        for cid, c in zip(ids, candidates, strict=True):
            c.id, c.step, c.initial = cid, -1, True
        return ids

    def commit_step(self, step: int, groups: list[tuple[int, list[Candidate]]], puct: Puct,
                    metrics: dict, adapter: tuple[int, str] | None = None) -> list[list[int]]:
        """Store a whole step in ONE transaction: every child of every group, the PUCT update
        (puct.observe_group per group), the steps row and the step's new adapter version
        (version, path), if any. On any error nothing of the step is stored and `puct` is put
        back as it was. Returns the new ids per group."""
        last = self.last_step()
        if step <= last:
            raise ArchiveError(f"step {step} is already stored in {self.path} (last finished "
                               f"step: {last}); a step is committed once")
        if step != last + 1:
            raise ArchiveError(f"step {step} does not follow the last finished step {last}; "
                               f"steps are committed in order")
        saved = copy_state(puct)
        try:
            with self._tx():
                ids: list[list[int]] = []
                for g, (parent_id, children) in enumerate(groups):
                    if self.db.execute("SELECT 1 FROM candidates WHERE id = ?",
                                       (parent_id,)).fetchone() is None:
                        raise ArchiveError(f"group {g} names parent {parent_id}, which is not "
                                           f"in the archive")
                    rows = [self._row(c, step=step, parent_id=parent_id, initial=False,
                                      group_idx=g, where=f"step {step} group {g} child {i}")
                            for i, c in enumerate(children)]
                    ids.append([self._insert(r) for r in rows])
                    puct.observe_group(parent_id, [(cid, r["reward"], bool(r["ok"]), r["key"])
                                                   for cid, r in zip(ids[-1], rows, strict=True)])
                self._save_puct(puct)
                self.db.execute("INSERT INTO steps (step, metrics, finished_at) VALUES (?, ?, ?)",
                                (step, _metrics_json(metrics), time.time()))
                if adapter is not None:
                    self._add_adapter(adapter[0], step, adapter[1])
        except BaseException:
            restore_state(puct, saved)
            raise
        for (_, children), gids in zip(groups, ids, strict=True):
            for c, cid in zip(children, gids, strict=True):
                c.id, c.step = cid, step
        return ids

    def add_adapter(self, version: int, step: int, path: str) -> None:
        """Record an adapter version (re-recording a version replaces it: a resumed step)."""
        with self._tx():
            self._add_adapter(version, step, path)

    def _add_adapter(self, version: int, step: int, path: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO adapters (version, step, path, created_at) "
                        "VALUES (?, ?, ?, ?)", (version, step, str(path), time.time()))

    def _row(self, c: Candidate, step: int, parent_id: int | None, initial: bool, where: str,
             group_idx: int | None = None) -> dict:
        if not isinstance(c.reward, numbers.Real) or math.isnan(c.reward):
            raise ArchiveError(f"{where}: reward {c.reward!r} is not a number")
        if c.ok and c.artifact is None and c.code is None:
            raise ArchiveError(f"{where}: a valid candidate needs an artefact or code")
        score = c.score
        if score is not None:
            if not isinstance(score, numbers.Real) or math.isnan(score):
                raise ArchiveError(f"{where}: score {score!r} is not a number")
            score = float(score)
        try:
            artifact = None if c.artifact is None else _artifact_json(c.artifact)
        except ValueError as e:
            raise ArchiveError(f"{where}: {e}") from e
        key = c.key or (dedup_key(c.artifact, c.code) if c.ok else "")
        return dict(step=step, group_idx=c.group_idx if group_idx is None else group_idx,
                    parent_id=parent_id, code=c.code, artifact=artifact, score=score,
                    reward=float(c.reward), ok=int(bool(c.ok)), failure=c.failure, log=c.log,
                    stdout=c.stdout, completion=c.completion, policy_version=c.policy_version,
                    gen_s=c.gen_s, eval_s=c.eval_s, metrics=_metrics_json(c.metrics),
                    initial=int(initial), key=key, created_at=time.time())

    def _insert(self, row: dict) -> int:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = self.db.execute(f"INSERT INTO candidates ({cols}) VALUES ({marks})",
                              tuple(row.values()))
        return int(cur.lastrowid)

    def _save_puct(self, puct: Puct) -> None:
        self.db.execute("DELETE FROM puct_nodes")
        self.db.executemany("INSERT INTO puct_nodes (id, n, m) VALUES (?, ?, ?)",
                            [(nd.id, nd.n, nd.m) for nd in puct.nodes.values()])
        self._set_meta("puct_T", puct.T)

    # --- reading -----------------------------------------------------------------------
    def load_puct(self, **puct_kwargs: Any) -> Puct:
        """Rebuild the Puct from the stored tables: it selects exactly as the saved one did."""
        puct = Puct(**puct_kwargs)
        puct.parents = dict(self.db.execute("SELECT id, parent_id FROM candidates ORDER BY id"))
        for id_, n, m, reward, parent_id, initial, key in self.db.execute(
                "SELECT p.id, p.n, p.m, c.reward, c.parent_id, c.initial, c.key "
                "FROM puct_nodes p JOIN candidates c ON c.id = p.id ORDER BY p.id"):
            puct.nodes[id_] = Node(id=id_, reward=reward, parent_id=parent_id,
                                   initial=bool(initial), key=key, n=n, m=m)
        puct.T = int(self.get_meta("puct_T", 0))
        return puct

    def get(self, id: int) -> Candidate:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM candidates WHERE id = ?",
                              (id,)).fetchone()
        if row is None:
            raise CandidateNotFound(f"no candidate {id} in {self.path}")
        return _candidate(row)

    def initial_states(self) -> list[Candidate]:
        """The initial states (step -1), in the order they were stored."""
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM candidates WHERE initial = 1 ORDER BY id")
        return [_candidate(r) for r in rows]

    def best(self, k: int = 1) -> list[Candidate]:
        """The k best valid candidates by reward (ties: the earlier one first)."""
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM candidates WHERE ok = 1 "
                               "ORDER BY reward DESC, id LIMIT ?", (k,))
        return [_candidate(r) for r in rows]

    def lineage(self, id: int) -> list[Candidate]:
        """The candidates from the root down to `id`."""
        chain = [self.get(id)]
        while chain[-1].parent_id is not None:
            chain.append(self.get(chain[-1].parent_id))
        return chain[::-1]

    def children(self, id: int) -> list[Candidate]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM candidates WHERE parent_id = ? "
                               "ORDER BY id", (id,))
        return [_candidate(r) for r in rows]

    def count(self, ok: bool | None = None) -> int:
        if ok is None:
            return self.db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM candidates WHERE ok = ?",
                               (int(ok),)).fetchone()[0]

    def generated(self, valid: bool = False, upto: int | None = None) -> int:
        """How many candidates the steps generated (the initial states, step -1, not counted);
        `valid`: only the valid ones; `upto`: only those with id <= upto. Counted on indexes."""
        cond = ("ok = 1" if valid else "step >= -1") + ("" if upto is None else " AND id <= ?")
        args = () if upto is None else (upto,)
        return (self.db.execute(f"SELECT COUNT(*) FROM candidates WHERE {cond}",
                                args).fetchone()[0]
                - self.db.execute(f"SELECT COUNT(*) FROM candidates WHERE step = -1 AND {cond}",
                                  args).fetchone()[0])

    def created_at(self, id: int | None = None) -> float | None:
        """When candidate `id` was stored; None: the first stored candidate (None if none)."""
        if id is None:
            row = self.db.execute("SELECT created_at FROM candidates ORDER BY id LIMIT 1")
        else:
            row = self.db.execute("SELECT created_at FROM candidates WHERE id = ?", (id,))
        row = row.fetchone()
        return None if row is None else row[0]

    def last_step(self) -> int:
        """The last finished step, -1 when none."""
        row = self.db.execute("SELECT MAX(step) FROM steps").fetchone()
        return -1 if row[0] is None else int(row[0])

    def summary(self) -> list[dict]:
        """One light row per candidate, in id order (no code, artefact or logs): what plots and
        comparisons need, cheap to read even for a large run."""
        rows = self.db.execute(f"SELECT {_SUMMARY} FROM candidates ORDER BY id")
        return [_summary_row(r) for r in rows]

    def summary_page(self, sort: str = "reward", desc: bool = True, limit: int = 200,
                     offset: int = 0, failure: str | None = None, step: int | None = None,
                     version: int | None = None, min_score: float | None = None,
                     max_score: float | None = None) -> tuple[int, list[dict]]:
        """How many summary rows match, and one page of them, filtered, sorted and paged in
        SQL (failure: 'valid', 'failed' or a failure kind; a score bound leaves out what has no
        score). Order: by `sort`, ties by id, both in the direction asked; rows with no value
        of `sort` last either way, by id."""
        if sort not in SUMMARY_SORT:
            raise ValueError(f"sort must be one of {', '.join(SUMMARY_SORT)}, got {sort!r}")
        where, args = [], []
        if failure == "valid":
            where.append("ok = 1")
        elif failure == "failed":
            where.append("ok = 0")
        elif failure is not None:
            where.append("failure = ?")
            args.append(failure)
        for col, op, value in (("step", "=", step), ("policy_version", "=", version),
                               ("score", ">=", min_score), ("score", "<=", max_score)):
            if value is not None:
                where.append(f"{col} {op} ?")
                args.append(value)
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        d = "DESC" if desc else "ASC"
        order = f"{sort} {d}, id {d}"
        if SUMMARY_SORT[sort]:  # NULLs last, and among themselves by id
            order = f"{sort} IS NULL, {sort} {d}, CASE WHEN {sort} IS NULL THEN id END, id {d}"
        total = self.db.execute(f"SELECT COUNT(*) FROM candidates{cond}", args).fetchone()[0]
        rows = self.db.execute(f"SELECT {_SUMMARY} FROM candidates{cond} ORDER BY {order} "
                               f"LIMIT ? OFFSET ?", (*args, limit, offset))
        return total, [_summary_row(r) for r in rows]

    def distinct(self, column: str) -> list:
        """The distinct non-NULL values of an indexed column ('step', 'failure' or
        'policy_version'), ascending: one index probe per value, not a scan of every row."""
        if column not in _DISTINCT:
            raise ValueError(f"distinct reads only {', '.join(_DISTINCT)}, not {column!r}")
        out, row = [], self.db.execute(f"SELECT MIN({column}) FROM candidates").fetchone()
        while row[0] is not None:
            out.append(row[0])
            row = self.db.execute(f"SELECT MIN({column}) FROM candidates WHERE {column} > ?",
                                  (row[0],)).fetchone()
        return out

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one consistent state of the archive, even while a run commits steps
        (a read transaction: WAL readers keep their snapshot until it ends)."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def step_metrics(self) -> list[dict]:
        rows = self.db.execute("SELECT step, metrics FROM steps ORDER BY step")
        return [{"step": step, **json.loads(m)} for step, m in rows]

    def adapters(self) -> list[dict]:
        rows = self.db.execute("SELECT version, step, path, created_at FROM adapters "
                               "ORDER BY version")
        return [dict(version=v, step=s, path=p, created_at=t) for v, s, p, t in rows]

    def integrity_check(self) -> list[str]:
        """Problems found (empty: the archive is sound)."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        steps = [r[0] for r in self.db.execute("SELECT step FROM steps ORDER BY step")]
        if steps != list(range(len(steps))):
            problems.append(f"steps are not contiguous from 0: {_brief(steps)}")
        orphan = [r[0] for r in self.db.execute(
            "SELECT DISTINCT step FROM candidates WHERE step >= 0 "
            "AND step NOT IN (SELECT step FROM steps) ORDER BY step")]
        if orphan:
            problems.append(f"candidates of steps with no steps row: {_brief(orphan)}")
        dup = self.db.execute("SELECT COUNT(*) - COUNT(DISTINCT id) FROM candidates").fetchone()[0]
        if dup:
            problems.append(f"{dup} duplicate candidate ids")
        lost = [r[0] for r in self.db.execute(
            "SELECT c.id FROM candidates c WHERE c.parent_id IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM candidates p WHERE p.id = c.parent_id) ORDER BY c.id")]
        if lost:
            problems.append(f"candidates whose parent is missing: {_brief(lost)}")
        unknown = [r[0] for r in self.db.execute(
            "SELECT id FROM puct_nodes WHERE id NOT IN (SELECT id FROM candidates) "
            "OR id IN (SELECT id FROM candidates WHERE ok = 0) ORDER BY id")]
        if unknown:
            problems.append(f"PUCT nodes that are not valid candidates: {_brief(unknown)}")
        initial = self.db.execute("SELECT COUNT(*) FROM candidates WHERE initial = 1").fetchone()[0]
        if bool(initial) != bool(self.get_meta("initialised")):
            problems.append(f"{initial} initial states but initialised = "
                            f"{self.get_meta('initialised')!r}")
        return problems + self._step_problems() + self._adapter_problems()

    def _step_problems(self) -> list[str]:
        """Every finished step holds exactly the children its metrics counted."""
        problems = []
        counts = dict(self.db.execute(
            "SELECT step, COUNT(*) FROM candidates WHERE step >= 0 GROUP BY step"))
        for m in self.step_metrics():
            if "total" in m and counts.get(m["step"], 0) != m["total"]:
                problems.append(f"step {m['step']} holds {counts.get(m['step'], 0)} candidates, "
                                f"its metrics count {m['total']}")
        return problems

    def _adapter_problems(self) -> list[str]:
        """Adapter rows agree with the candidates' policy versions and the learner's version."""
        problems = []
        versions = {a["version"]: a for a in self.adapters()}
        unknown = [r[0] for r in self.db.execute(
            "SELECT DISTINCT policy_version FROM candidates WHERE policy_version != 0 "
            "ORDER BY policy_version") if r[0] not in versions]
        if unknown:
            problems.append(f"candidates sampled with policy versions that have no adapter "
                            f"row: {_brief(unknown)}")
        steps = set(r[0] for r in self.db.execute("SELECT step FROM steps"))
        stray = [v for v, a in versions.items() if a["step"] not in steps]
        if stray:
            problems.append(f"adapter versions recorded for steps that are not stored: "
                            f"{_brief(stray)}")
        metrics = self.step_metrics()
        last = metrics[-1].get("version") if metrics else None
        if last and last not in versions:
            problems.append(f"the last step's policy version {last} has no adapter row")
        elif versions and last is not None and max(versions) != last:
            problems.append(f"the latest adapter is version {max(versions)}, the last step's "
                            f"policy version is {last}")
        return problems


def _candidate(row: tuple) -> Candidate:
    (id_, step, group_idx, parent_id, code, artifact, score, reward, ok, failure, log, stdout,
     completion, policy_version, gen_s, eval_s, metrics, initial, key) = row
    return Candidate(id=id_, step=step, parent_id=parent_id, code=code,
                     artifact=None if artifact is None else json.loads(artifact), score=score,
                     reward=reward, ok=bool(ok), failure=failure, log=log, stdout=stdout,
                     completion=completion, group_idx=group_idx, policy_version=policy_version,
                     gen_s=gen_s, eval_s=eval_s, metrics=json.loads(metrics),
                     initial=bool(initial), key=key)


def _summary_row(row: tuple) -> dict:
    i, s, p, sc, r, ok, f, ini, t, v = row
    return dict(id=i, step=s, parent_id=p, score=sc, reward=r, ok=bool(ok), failure=f,
                initial=bool(ini), created_at=t, policy_version=v)


def _brief(xs: list) -> str:
    return ", ".join(map(str, xs[:10])) + (f" ... ({len(xs)} in all)" if len(xs) > 10 else "")
