"""The archive: a real SQLite file per test, a real second process reading while one writes."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from discover.archive import Archive, ArchiveError, Candidate, CandidateNotFound, dedup_key
from discover.puct import Puct

ROOT = Path(__file__).resolve().parents[1]


def child(reward: float, art=None, ok: bool = True, code: str = "print(1)", **kw) -> Candidate:
    art = [reward, 1.0] if art is None and ok else art
    return Candidate(id=None, step=0, parent_id=None, code=code, artifact=art,
                     score=-reward if ok else None, reward=reward if ok else -1e9, ok=ok,
                     failure=None if ok else "crash", **kw)


def initial(reward: float) -> Candidate:
    return Candidate(id=None, step=-1, parent_id=None, code=None, artifact=[reward, 0.0],
                     score=-reward, reward=reward, ok=True)


def fresh(path: Path, **puct_kw) -> tuple[Archive, Puct, list[int]]:
    a = Archive(path)
    p = Puct(**puct_kw)
    ids = a.add_initial([initial(0.0), initial(-1.0)], p)
    return a, p, ids


def grow(a: Archive, p: Puct, steps: int, B: int = 2, G: int = 3, start: int = 0) -> None:
    """Deterministic pseudo-random steps: some failures, some duplicates."""
    for step in range(start, start + steps):
        groups = []
        for g, parent in enumerate(p.select(B)):
            kids = []
            for i in range(G):
                r = ((step * 31 + g * 7 + i * 13) % 11) - 5.0
                if i == G - 1 and g == 0:
                    kids.append(child(0, ok=False, code=None, log="Traceback"))
                else:
                    kids.append(child(r, art=[r, float(i % 2)]))
            groups.append((parent, kids))
        a.commit_step(step, groups, p, {"step": step, "valid": G * B - 1})


def test_round_trip(tmp_path: Path) -> None:
    a, p, (i0, i1) = fresh(tmp_path / "a.sqlite")
    c = child(3.5, art={"x": [[1.0, 2.5], [3.0]], "n": 2}, code="def f():\n    return 1\n",
              log="ok", stdout="hello", completion="```python\n...\n```", policy_version=4,
              gen_s=1.5, eval_s=0.25, metrics={"iters": 7, "loss": float("nan")})
    bad = child(0, ok=False, code=None, log="no code block")
    ids = a.commit_step(0, [(i0, [c, bad])], p, {"mean": 1.0, "inf": float("inf")})
    got = a.get(ids[0][0])
    assert got.id == c.id == ids[0][0] and got.step == 0 and got.parent_id == i0
    assert got.artifact == {"x": [[1.0, 2.5], [3.0]], "n": 2}
    assert (got.code, got.score, got.reward, got.ok, got.log, got.stdout, got.completion) == \
        (c.code, -3.5, 3.5, True, "ok", "hello", c.completion)
    assert (got.policy_version, got.gen_s, got.eval_s, got.group_idx) == (4, 1.5, 0.25, 0)
    assert got.metrics == {"iters": 7, "loss": None}  # non-finite metrics are stored as null
    assert got.key == dedup_key(c.artifact, c.code) and not got.initial
    f = a.get(ids[0][1])
    assert (f.ok, f.failure, f.artifact, f.reward, f.key) == (False, "crash", None, -1e9, "")
    assert a.get(i0).initial and a.get(i0).step == -1
    assert a.step_metrics() == [{"step": 0, "mean": 1.0, "inf": None}]
    assert a.count() == 4 and a.count(ok=True) == 3 and a.count(ok=False) == 1
    a.set_meta("config", {"run": {"steps": 3}})
    assert a.get_meta("config") == {"run": {"steps": 3}} and a.get_meta("nope", 5) == 5
    a.add_adapter(1, 0, "adapters/v00001")
    assert [(d["version"], d["step"], d["path"]) for d in a.adapters()] == \
        [(1, 0, "adapters/v00001")]
    with pytest.raises(CandidateNotFound, match="no candidate 999") as e:
        a.get(999)
    assert isinstance(e.value, KeyError)
    a.close()


def test_dedup_key() -> None:
    assert dedup_key({"a": 1, "b": [2.0]}, "x") == dedup_key({"b": [2.0], "a": 1}, "y")
    assert dedup_key([1.0], None) != dedup_key([1.5], None)
    assert dedup_key(None, "print(1)") == dedup_key(None, "print(1)") != dedup_key(None, "p")
    assert dedup_key(None, None) == ""
    with pytest.raises(ValueError, match="NaN"):
        dedup_key([float("nan")], None)


def test_commit_step_is_atomic(tmp_path: Path) -> None:
    a, p, (i0, i1) = fresh(tmp_path / "a.sqlite")
    grow(a, p, 1)
    count, nodes, T = a.count(), {k: (v.n, v.m) for k, v in p.nodes.items()}, p.T
    stored = a.db.execute("SELECT * FROM puct_nodes ORDER BY id").fetchall()
    groups = [(i0, [child(1.0), child(2.0)]),
              (i1, [child(3.0), child(4.0, art=[1.0, float("nan")]), child(5.0)])]
    with pytest.raises(ArchiveError, match="step 1 group 1 child 1.*NaN"):
        a.commit_step(1, groups, p, {})
    # nothing of step 1 is stored, and the in-memory PUCT state is as it was
    assert a.count() == count and a.last_step() == 0
    assert a.db.execute("SELECT COUNT(*) FROM candidates WHERE step = 1").fetchone()[0] == 0
    assert a.db.execute("SELECT * FROM puct_nodes ORDER BY id").fetchall() == stored
    assert {k: (v.n, v.m) for k, v in p.nodes.items()} == nodes and p.T == T
    assert set(p.parents) == {r[0] for r in a.db.execute("SELECT id FROM candidates")}
    # an unknown parent is refused the same way
    with pytest.raises(ArchiveError, match="parent 12345"):
        a.commit_step(1, [(i0, [child(1.0)]), (12345, [child(2.0)])], p, {})
    assert a.count() == count and p.T == T
    groups[1][1][1].artifact = [1.0, 4.0]
    ids = a.commit_step(1, groups, p, {})
    assert [len(g) for g in ids] == [2, 3] and a.last_step() == 1 and p.T == T + 2
    assert a.integrity_check() == []


def test_duplicate_or_skipped_step_refused(tmp_path: Path) -> None:
    a, p, (i0, _) = fresh(tmp_path / "a.sqlite")
    a.commit_step(0, [(i0, [child(1.0)])], p, {})
    n = a.count()
    with pytest.raises(ArchiveError, match="step 0 is already stored"):
        a.commit_step(0, [(i0, [child(2.0)])], p, {})
    with pytest.raises(ArchiveError, match="does not follow"):
        a.commit_step(2, [(i0, [child(2.0)])], p, {})
    assert a.count() == n and a.last_step() == 0


def test_best_is_by_reward_among_valid_only(tmp_path: Path) -> None:
    a, p, (i0, i1) = fresh(tmp_path / "a.sqlite")
    hacked = child(0, ok=False, code="x")
    hacked.reward = 1e6  # a failure is never "best", whatever its reward says
    a.commit_step(0, [(i0, [child(2.0), hacked, child(7.0)]), (i1, [child(-3.0)])], p, {})
    assert [c.reward for c in a.best(3)] == [7.0, 2.0, 0.0]
    assert all(c.ok for c in a.best(100)) and len(a.best(100)) == 5
    plan = " ".join(r[-1] for r in a.db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM candidates WHERE ok = 1 ORDER BY reward DESC, id "
        "LIMIT 1"))
    assert "candidates_best" in plan and "TEMP B-TREE" not in plan  # one indexed walk


def test_lineage_and_children(tmp_path: Path) -> None:
    a, p, (i0, _) = fresh(tmp_path / "a.sqlite")
    [[c1, c2]] = a.commit_step(0, [(i0, [child(1.0), child(2.0)])], p, {})
    [[c3]] = a.commit_step(1, [(c2, [child(3.0)])], p, {})
    assert [c.id for c in a.lineage(c3)] == [i0, c2, c3]
    assert [c.id for c in a.lineage(i0)] == [i0]
    assert [c.id for c in a.children(i0)] == [c1, c2]
    assert a.children(c3) == []
    assert p.ancestors(c3) == [c2, i0]


READER = r"""
import json, sys, time
from discover.archive import Archive
path, want = sys.argv[1], int(sys.argv[2])
seen, deadline = [], time.monotonic() + 60
while time.monotonic() < deadline:
    a = Archive(path, readonly=True)
    a.db.execute("BEGIN")  # one snapshot for the three reads
    best = a.best(1)
    seen.append((a.last_step(), best[0].reward if best else None, a.count()))
    a.db.execute("COMMIT")
    a.close()
    if seen[-1][0] >= want:
        break
    time.sleep(0.01)
print(json.dumps(seen))
"""


def test_reader_in_another_process_while_writing(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    a, p, (i0, _) = fresh(path)
    steps = 8
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), str(steps - 1)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for step in range(steps):  # the writer keeps its connection open and keeps committing
        parent = p.select(1)[0]
        a.commit_step(step, [(parent, [child(float(step)), child(step - 0.5)])], p, {})
        time.sleep(0.15)
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    seen = json.loads(out)
    assert seen[-1] == [steps - 1, float(steps - 1), a.count()]
    assert len({s[0] for s in seen}) > 2  # it saw the run progress, not just the end
    for (s0, b0, n0), (s1, b1, n1) in pairwise(seen):  # only whole steps, in order
        assert s0 <= s1 and b0 <= b1 and n0 <= n1
    assert all(n == 2 + 2 * (s + 1) for s, _, n in seen)
    a.close()
    r = Archive(path, readonly=True)  # after the writer closed, too
    assert r.best(1)[0].reward == steps - 1
    with pytest.raises(ArchiveError, match="read-only"):
        r.set_meta("x", 1)
    r.close()


def test_load_puct_reproduces_selection(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    a, p, _ = fresh(path, cap=6)
    grow(a, p, 5, B=3)
    want = (p.select(3), p.select(7), p.scores(), p.T)
    a.close()
    b = Archive(path)
    q = b.load_puct(cap=6)
    assert (q.select(3), q.select(7), q.scores(), q.T) == want
    assert q.nodes == p.nodes and q.parents == p.parents
    # and they stay identical through further steps
    grow(b, q, 2, B=3, start=5)
    b.close()
    c = Archive(path)
    r = c.load_puct(cap=6)
    assert r.nodes == q.nodes and r.select(3) == q.select(3)
    g = c.load_puct(cap=6, strategy="greedy", epsilon=0.5, seed=3)
    g2 = c.load_puct(cap=6, strategy="greedy", epsilon=0.5, seed=3)
    assert g.select(10) == g2.select(10)
    assert c.integrity_check() == []
    c.close()


def test_corrupt_or_missing_file_is_refused_and_untouched(tmp_path: Path) -> None:
    bad = tmp_path / "archive.sqlite"
    data = os.urandom(8192)
    bad.write_bytes(data)
    for ro in (True, False):
        with pytest.raises(ArchiveError, match=r"archive\.sqlite is not a discover archive"):
            Archive(bad, readonly=ro)
    assert bad.read_bytes() == data
    assert sorted(x.name for x in tmp_path.iterdir()) == ["archive.sqlite"]  # no -wal/-shm
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(ArchiveError, match="not a discover archive"):
        Archive(other)
    assert other.read_bytes() == before
    with pytest.raises(ArchiveError, match="no archive at"):
        Archive(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_integrity_check(tmp_path: Path) -> None:
    a, p, _ = fresh(tmp_path / "a.sqlite")
    grow(a, p, 3)
    assert a.integrity_check() == []
    # a candidate of a step with no steps row (written behind the archive's back) is found
    a.db.execute("INSERT INTO candidates (step, reward, ok, created_at) VALUES (7, 0, 1, 0)")
    problems = a.integrity_check()
    assert len(problems) == 1 and "no steps row: 7" in problems[0]
    a.close()


def test_bad_candidates_refused(tmp_path: Path) -> None:
    a, p, (i0, _) = fresh(tmp_path / "a.sqlite")
    with pytest.raises(ArchiveError, match="reward nan"):
        a.commit_step(0, [(i0, [child(1.0), Candidate(None, 0, None, "x", None, None,
                                                       float("nan"), False, "crash")])], p, {})
    with pytest.raises(ArchiveError, match="not storable as JSON"):
        a.commit_step(0, [(i0, [child(1.0, art={"a": object()})])], p, {})
    with pytest.raises(ArchiveError, match="initial state 0 is not valid"):
        a.add_initial([child(0, ok=False)], p)
    assert a.last_step() == -1 and a.count() == 2


def _page_in_python(rows: list[dict], sort: str, desc: bool, limit: int, offset: int,
                    failure=None, step=None, version=None, min_score=None,
                    max_score=None) -> tuple[int, list[dict]]:
    """What the UI's candidate table did before it paged in SQL: every row, sorted in Python."""
    picked = [r for r in rows
              if (failure is None or (failure == "valid" and r["ok"])
                  or (failure == "failed" and not r["ok"]) or r["failure"] == failure)
              and (step is None or r["step"] == step)
              and (version is None or r["policy_version"] == version)
              and (min_score is None or (r["score"] is not None and r["score"] >= min_score))
              and (max_score is None or (r["score"] is not None and r["score"] <= max_score))]
    have = sorted((r for r in picked if r[sort] is not None), key=lambda r: (r[sort], r["id"]),
                  reverse=desc)
    ordered = have + [r for r in picked if r[sort] is None]
    return len(picked), ordered[offset:offset + limit]


def test_summary_page_matches_sorting_every_row(tmp_path: Path) -> None:
    """summary_page (filtered, sorted, paged in SQL) returns what sorting all rows in Python
    did, for every sort key, direction and filter; distinct reads the indexed columns."""
    from discover.archive import SUMMARY_SORT

    a, p, _ = fresh(tmp_path / "a.sqlite")
    kinds = ["crash", "timeout", "invalid"]
    for step in range(6):
        groups = []
        for g, parent in enumerate(p.select(2)):
            kids = []
            for i in range(5):
                r = float(((step * 31 + g * 7 + i * 13) % 5) - 2)  # many equal rewards
                if (step + g + i) % 3 == 0:
                    c = child(0, ok=False, code="x", policy_version=step // 2)
                    c.failure = kinds[i % 3]
                else:
                    c = child(r, art=[r, step, g, i], policy_version=step // 2)
                kids.append(c)
            groups.append((parent, kids))
        a.commit_step(step, groups, p, {"step": step})
    rows = a.summary()
    assert a.distinct("failure") == sorted(kinds)
    assert a.distinct("policy_version") == [0, 1, 2]
    assert a.distinct("step") == sorted({r["step"] for r in rows})
    filters = [{}, {"failure": "valid"}, {"failure": "failed"}, {"failure": "timeout"},
               {"step": 3}, {"version": 1}, {"min_score": -1.0, "max_score": 1.0}]
    for sort in SUMMARY_SORT:
        for desc in (True, False):
            for f in filters:
                for limit, offset in ((500, 0), (4, 0), (4, 9), (7, 50)):
                    got = a.summary_page(sort, desc, limit, offset, **f)
                    assert got == _page_in_python(rows, sort, desc, limit, offset, **f), \
                        (sort, desc, f, limit, offset)
    plan = " ".join(r[-1] for r in a.db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM candidates ORDER BY reward DESC, id DESC LIMIT 200"))
    assert "candidates_reward" in plan and "TEMP B-TREE" not in plan, plan  # no sort of all rows
    with pytest.raises(ValueError):
        a.summary_page("code")
    with pytest.raises(ValueError):
        a.distinct("code")


def test_generated_counts_and_created_at(tmp_path: Path) -> None:
    """The counts run stats read from the indexes equal those of every row."""
    a, p, _ = fresh(tmp_path / "a.sqlite")
    assert a.generated() == 0 and a.generated(valid=True) == 0
    grow(a, p, 5)
    rows = a.summary()
    gen = [r for r in rows if not r["initial"]]
    assert a.generated() == len(gen)
    assert a.generated(valid=True) == sum(r["ok"] for r in gen)
    for upto in (1, 2, 5, 17, rows[-1]["id"]):
        assert a.generated(upto=upto) == sum(r["id"] <= upto for r in gen)
    assert a.created_at() == min(r["created_at"] for r in rows)
    assert a.created_at(rows[7]["id"]) == rows[7]["created_at"]
    assert Archive(tmp_path / "empty.sqlite").created_at() is None
