"""The summary of scripts/gpu_check.sh: one table printed, one JSON file written.

    python scripts/gpu_check_summary.py facts FILE.json      # nvidia-smi facts -> JSON
    python scripts/gpu_check_summary.py summarize WORK OUT   # WORK's parts -> OUT/summary.json
    python scripts/gpu_check_summary.py selftest             # the above on fake part results

WORK is the check's work folder: parts.tsv (one line a part, written by the part runner:
name, status, exit code, seconds, cap, reason), logs/NAME.log, figures/NAME.json where a part
writes figures (facts, TriMul times) and runs/NAME/ where a part is a `discover run`.
Standard library only: it must run with any python3, before or after the set-up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAIL_LINES = 15
STATUSES = ("ok", "failed", "timeout", "missing", "not_run")
PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def facts(out: Path) -> int:
    """GPU name, driver, CUDA version and memory from nvidia-smi, plus the host's CPUs."""
    q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used",
                        "--format=csv,noheader,nounits"], capture_output=True, text=True,
                       timeout=20)
    head = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    if q.returncode != 0:
        print(f"nvidia-smi failed ({q.returncode}): {q.stderr.strip()}", file=sys.stderr)
        return 1
    found = parse_facts(q.stdout, head)
    found["cpus"] = os.cpu_count()
    out.write_text(json.dumps(found, indent=1))
    print(headline("facts", found))
    return 0


def parse_facts(query_csv: str, header: str) -> dict:
    """nvidia-smi's --query-gpu CSV (name, driver, total MiB, used MiB) and its banner (the
    only place that names the CUDA version the driver supports)."""
    gpus = []
    for line in query_csv.strip().splitlines():
        name, driver, total, used = (x.strip() for x in line.split(","))
        gpus.append({"name": name, "driver": driver, "memory_total_mib": int(float(total)),
                     "memory_used_mib": int(float(used))})
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return {"gpus": gpus, "cuda": cuda.group(1) if cuda else None}


def read_parts(work: Path) -> list[dict]:
    parts = []
    tsv = work / "parts.tsv"
    for line in (tsv.read_text().splitlines() if tsv.exists() else []):
        name, status, rc, seconds, cap, reason = (line.split("\t") + [""] * 6)[:6]
        if status not in STATUSES:
            raise ValueError(f"{tsv}: part {name!r} has unknown status {status!r}")
        part = {"name": name, "status": status, "rc": int(rc) if rc.lstrip("-").isdigit()
                else None, "seconds": float(seconds or 0), "cap_s": float(cap or 0),
                "reason": reason, "tail": _tail(work / "logs" / f"{name}.log")}
        part["figures"] = figures_of(work, name, part)
        parts.append(part)
    return parts


def _tail(log: Path, n: int = TAIL_LINES) -> list[str]:
    if not log.exists():
        return []
    return log.read_text(errors="replace").rstrip("\n").splitlines()[-n:]


def figures_of(work: Path, name: str, part: dict) -> dict:
    """What a part measured: its figures file, a pytest tally, or a run's archive."""
    fig: dict = {}
    path = work / "figures" / f"{name}.json"
    if path.exists():
        try:
            fig.update(json.loads(path.read_text()))
        except ValueError as e:
            fig["error"] = f"{path.name} is not JSON: {e}"
    log = work / "logs" / f"{name}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    tally = pytest_tally(text)
    if tally:
        fig["pytest"] = tally
    run = work / "runs" / name
    if run.is_dir():
        fig["run"] = run_figures(run)
        best = best_line(text)
        if best:
            fig["run"]["best"] = best
    return fig


def pytest_tally(text: str) -> dict:
    """Counts from pytest's last summary line ('3 passed, 1 skipped in 12.3s')."""
    for line in reversed(text.splitlines()):
        if re.search(r"\bin [\d.]+s\b", line) and PYTEST_COUNTS.search(line):
            return {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
                    for n, kind in PYTEST_COUNTS.findall(line)}
    return {}


def run_figures(run: Path) -> dict:
    """Steps, candidates and adapter versions of a `discover run` directory (read-only)."""
    out: dict = {"dir": str(run)}
    metrics = run / "metrics.jsonl"
    steps = []
    for line in (metrics.read_text().splitlines() if metrics.exists() else []):
        try:
            m = json.loads(line)
        except ValueError:
            continue
        steps.append({k: m.get(k) for k in ("step", "total", "valid", "version", "seconds",
                                            "best_score")})
    out["steps"] = steps
    db = run / "archive.sqlite"
    if db.exists():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            out["policy_version_by_step"] = {str(s): v for s, v in con.execute(
                "SELECT step, MAX(policy_version) FROM candidates WHERE step >= 0 "
                "GROUP BY step ORDER BY step")}
    adapters = run / "adapters"
    out["adapters"] = sorted(p.name for p in adapters.iterdir()) if adapters.is_dir() else []
    return out


def best_line(text: str) -> dict:
    """The top row of `discover best` in a log: id, step, score."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*rank\s+id\s+step\s+score", line) and i + 1 < len(lines):
            cols = lines[i + 1].split()
            if len(cols) >= 4:
                try:
                    return {"id": int(cols[1]), "step": int(cols[2]), "score": float(cols[3])}
                except ValueError:
                    return {}
    return {}


def headline(name: str, fig: dict) -> str:
    """One line of figures for the printed table."""
    if "gpus" in fig:
        g = fig["gpus"]
        return (f"{len(g)} GPU(s): {g[0]['name']}, driver {g[0]['driver']}, CUDA {fig['cuda']}, "
                f"{g[0]['memory_total_mib']} MiB; {fig.get('cpus', '?')} CPUs" if g else "no GPU")
    if "not_importable" in fig:
        return f"{fig['mode']}; not importable: {fig['not_importable'] or 'nothing'}"
    if "programs" in fig:
        bits = []
        for prog, p in fig["programs"].items():
            bits.append(f"{prog} {min(p['score_us']):.1f} µs (timings {p['min']:.1f}.."
                        f"{p['max']:.1f}) on {fig.get('gpu', '?')}")
        return "; ".join(bits)
    if "pytest" in fig:
        return ", ".join(f"{n} {k}" for k, n in fig["pytest"].items())
    if "run" in fig:
        r = fig["run"]
        best = r.get("best", {}).get("score")
        return (f"{len(r['steps'])} steps, versions by step {r.get('policy_version_by_step')}, "
                f"best {best if best is not None else 'none'}")
    return ""


def summarize(work: Path, out_dir: Path, extra: dict | None = None) -> dict:
    parts = read_parts(work)
    meta = json.loads((work / "meta.json").read_text()) if (work / "meta.json").exists() else {}
    summary = {**meta, **(extra or {}), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "parts": parts,
               "outcome": {s: [p["name"] for p in parts if p["status"] == s] for s in STATUSES}}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(table(summary))
    return summary


def table(summary: dict) -> str:
    rows = [f"gpu_check summary (set-up: {summary.get('setup_mode', '?')}; "
            f"{summary.get('total_s', '?')} s of a {summary.get('budget_s', '?')} s budget)",
            f"{'part':<18} {'status':<8} {'s/cap':>9}  figures or reason"]
    for p in summary["parts"]:
        what = headline(p["name"], p["figures"]) if p["status"] == "ok" else p["reason"]
        rows.append(f"{p['name']:<18} {p['status']:<8} {p['seconds']:>4.0f}/{p['cap_s']:<4.0f}  "
                    f"{what}")
    for p in summary["parts"]:
        if p["status"] in ("failed", "timeout") and p["tail"]:
            rows.append(f"--- {p['name']}: last lines ---")
            rows += [f"    {line}" for line in p["tail"][-8:]]
    return "\n".join(rows)


def selftest() -> int:
    """Summarize fake part results (one of each status, a pytest log, a run directory with a
    real SQLite archive) and check that the JSON written holds them."""
    work = Path(tempfile.mkdtemp(prefix="gpu_check_selftest."))
    try:
        for d in ("logs", "figures", "runs/run_fake"):
            (work / d).mkdir(parents=True)
        rows = [("facts", "ok", 0, 1.0, 15, ""), ("tests_fake", "failed", 1, 3.5, 60,
                 "exit code 1"), ("hang", "timeout", 124, 2.0, 2, "killed at its 2 s cap"),
                ("needs_x", "missing", "", 0, 60, "needs module x"),
                ("run_fake", "ok", 0, 9.0, 90, ""), ("late", "not_run", "", 0, 60, "budget")]
        (work / "parts.tsv").write_text(
            "".join("\t".join(map(str, r)) + "\n" for r in rows))
        (work / "figures" / "facts.json").write_text(json.dumps(parse_facts(
            "Fake GPU, 1.2.3, 1024, 0", "| CUDA Version: 9.9 |")))
        (work / "logs" / "tests_fake.log").write_text("E boom\n1 failed, 2 passed in 0.5s\n")
        (work / "logs" / "run_fake.log").write_text(
            "rank      id  step             score        reward  artefact\n"
            "   1       7     1      0.5000000000          0.5  x.json\n")
        run = work / "runs" / "run_fake"
        (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "total": 2, "version": 0})
                                           + "\n")
        with sqlite3.connect(run / "archive.sqlite") as con:
            con.execute("CREATE TABLE candidates (step INTEGER, policy_version INTEGER)")
            con.executemany("INSERT INTO candidates VALUES (?, ?)", [(0, 0), (1, 1), (1, 1)])
        out = work / "out"
        summarize(work, out)
        got = json.loads((out / "summary.json").read_text())
        parts = {p["name"]: p for p in got["parts"]}
        checks = [
            [p["status"] for p in got["parts"]] == [r[1] for r in rows],
            parts["facts"]["figures"]["gpus"][0]["name"] == "Fake GPU",
            parts["facts"]["figures"]["cuda"] == "9.9",
            parts["tests_fake"]["figures"]["pytest"] == {"failed": 1, "passed": 2},
            parts["tests_fake"]["tail"][0] == "E boom",
            parts["run_fake"]["figures"]["run"]["policy_version_by_step"] == {"0": 0, "1": 1},
            parts["run_fake"]["figures"]["run"]["best"]["score"] == 0.5,
            got["outcome"]["timeout"] == ["hang"],
        ]
        if not all(checks):
            print(f"gpu_check_summary selftest: check {checks.index(False)} failed",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["facts"] and len(argv) == 2:
        return facts(Path(argv[1]))
    if argv[:1] == ["summarize"] and len(argv) in (3, 4):
        extra = json.loads(argv[3]) if len(argv) == 4 else None
        summarize(Path(argv[1]), Path(argv[2]), extra)
        return 0
    if argv == ["selftest"]:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the table is not the point here
            return selftest()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
