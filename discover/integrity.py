"""Is a run directory sound? The archive's own check, plus the files that mirror it.

The archive is the truth; config.toml, artifacts/ID.json, metrics.jsonl and adapters/vN mirror
it. A kill between a step's commit and its file writes leaves some files missing or behind
(`discover run --resume` writes them again: rundir.repair_run_dir); with `repairable_ok` those
are not counted as problems, so the check can run right after a crash or while a run writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from discover import config as config_mod
from discover.archive import Archive, ArchiveError
from discover.config import ConfigError
from discover.rundir import RunDir


def check_run_dir(path: str | Path, repairable_ok: bool = False) -> list[str]:
    """Problems found in the run directory (empty: sound)."""
    rd = RunDir(path)
    try:
        cfg = config_mod.from_dict(config_mod.load_toml(rd.config))
    except ConfigError as e:
        return [f"{rd.config.name}: {e}"]
    try:
        archive = Archive(rd.archive, readonly=True)
    except ArchiveError as e:
        return [str(e)]
    try:
        problems = archive.integrity_check()
        problems += _group_problems(archive, cfg.run.group_size)
        problems += _artifact_problems(rd.artifacts, archive, repairable_ok)
        problems += _metrics_problems(rd.metrics, archive, repairable_ok)
        problems += _adapter_problems(rd.adapters, archive, cfg.learner.method,
                                      repairable_ok)
    finally:
        archive.close()
    return problems


def _group_problems(archive: Archive, group_size: int) -> list[str]:
    """Every group of every finished step holds exactly group_size children."""
    bad = archive.db.execute(
        "SELECT step, group_idx, COUNT(*) FROM candidates WHERE step >= 0 "
        "GROUP BY step, group_idx HAVING COUNT(*) != ? ORDER BY step", (group_size,)).fetchall()
    return [f"step {s} group {g} holds {n} children, not group_size = {group_size}"
            for s, g, n in bad[:10]]


def _artifact_problems(folder: Path, archive: Archive, repairable_ok: bool) -> list[str]:
    problems = []
    want = {cid: art for cid, art in archive.db.execute(
        "SELECT id, artifact FROM candidates WHERE ok = 1 AND initial = 0")}
    have = {p.stem: p for p in folder.glob("*.json")} if folder.is_dir() else {}
    missing = [cid for cid in want if str(cid) not in have]
    if missing and not repairable_ok:
        problems.append(f"{len(missing)} valid candidates have no artefact file, e.g. "
                        f"{sorted(missing)[:5]}")
    for name, p in have.items():
        if not (name.isdigit() and int(name) in want):
            # cli `best` writes files for initial states too: those are fine
            if not (name.isdigit() and _is_initial(archive, int(name))):
                problems.append(f"artefact file {p.name} belongs to no valid candidate")
            continue
        try:
            same = json.loads(p.read_text()) == json.loads(want[int(name)])
        except ValueError:
            same = False
        if not same:
            problems.append(f"artefact file {p.name} differs from the archive")
    stray = [p.name for p in folder.glob("*.tmp")] if folder.is_dir() else []
    if stray and not repairable_ok:
        problems.append(f"temporary files left in artifacts/: {stray[:5]}")
    return problems


def _is_initial(archive: Archive, cid: int) -> bool:
    row = archive.db.execute("SELECT initial FROM candidates WHERE id = ?", (cid,)).fetchone()
    return bool(row and row[0])


def _metrics_problems(path: Path, archive: Archive, repairable_ok: bool) -> list[str]:
    want = archive.step_metrics()
    try:
        lines = path.read_text().splitlines() if path.exists() else []
    except OSError as e:
        return [f"{path.name}: {e}"]
    got = []
    for i, line in enumerate(lines):
        try:
            got.append(json.loads(line))
        except ValueError:
            if not (repairable_ok and i == len(lines) - 1):  # a kill mid-append
                return [f"{path.name} line {i + 1} is not JSON"]
    if got == want or (repairable_ok and got == want[:len(got)]):
        return []
    return [f"{path.name} holds {len(got)} steps that do not match the archive's {len(want)}"]


def _adapter_problems(folder: Path, archive: Archive, method: str,
                      repairable_ok: bool) -> list[str]:
    rows = archive.adapters()
    if method == "none":
        return [f"{len(rows)} adapter rows in a run without a learner"] if rows else []
    if not rows:
        return []
    from discover.learners.peft import ADAPTER_FILE, OPTIMIZER_FILE, STATE_FILE  # (imports torch)

    problems = []
    for a in rows:
        path = folder / f"v{a['version']:05d}"
        missing = [f for f in (ADAPTER_FILE, "adapter_config.json", OPTIMIZER_FILE, STATE_FILE)
                   if not (path / f).is_file()]
        if missing:
            problems.append(f"adapter version {a['version']}: {path} lacks {missing}")
            continue
        try:
            saved = json.loads((path / STATE_FILE).read_text()).get("version")
        except (OSError, ValueError, AttributeError):
            saved = None
        if saved != a["version"]:
            problems.append(f"adapter version {a['version']}: {path / STATE_FILE} says {saved}")
    recorded = {f"v{a['version']:05d}" for a in rows}
    extra = sorted(p.name for p in folder.iterdir() if p.name not in recorded) \
        if folder.is_dir() else []
    if extra and not repairable_ok:
        problems.append(f"adapter folders with no adapter row: {extra[:5]}")
    return problems
