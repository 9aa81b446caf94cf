"""The run directory: the one place that names its files, creates, locks, repairs and writes it.

    RUN/archive.sqlite   every candidate, the PUCT statistics, the steps (the truth)
    RUN/config.toml      the resolved config, checked on resume
    RUN/metrics.jsonl    one line per step (mirrors the archive)
    RUN/artifacts/ID.json  each valid candidate's artefact (mirrors the archive)
    RUN/adapters/vNNNNN  LoRA versions, when learning
    RUN/report/          `discover report`'s output
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from datetime import datetime
from pathlib import Path

from discover import config as config_mod
from discover.archive import Archive, check_archive
from discover.config import Config, ConfigError


class RunDir:
    """Paths inside one run directory, and the lock that keeps it to a single writer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.archive = self.path / "archive.sqlite"
        self.config = self.path / "config.toml"
        self.metrics = self.path / "metrics.jsonl"
        self.artifacts = self.path / "artifacts"
        self.adapters = self.path / "adapters"
        self.report = self.path / "report"
        self.lock_file = self.path / ".lock"  # held by the one `discover run` writing here

    def lock(self) -> None:
        self._lock = open(self.lock_file, "w")  # held for the run's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise ConfigError(f"{self.path} is in use by another discover run") from e

    def adapter(self, version: int) -> Path:
        return self.adapters / f"v{version:05d}"

    def artifact(self, cand_id: int) -> Path:
        return self.artifacts / f"{cand_id}.json"

    def holds_run(self) -> bool:
        return self.archive.is_file()


def default_run_dir(env: str) -> Path:
    name = Path(env).name if "/" in env else env  # a problem folder: its own name
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(cfg: Config, resume: bool) -> tuple[RunDir, Config]:
    """Create a new run directory, or reopen one for --resume after checking its config."""
    rd = RunDir(cfg.run.run_dir or default_run_dir(cfg.run.env))
    if resume:
        if not rd.config.exists():  # (a config with no archive yet: killed before it stored any)
            raise ConfigError(f"cannot resume: {rd.path} holds no run (no config.toml)")
        saved = config_mod.from_dict(config_mod.load_toml(rd.config))
        config_mod.check_resume(saved, cfg)
    elif rd.archive.exists():
        raise ConfigError(
            f"{rd.path} already holds a run; pass --resume or choose another --run-dir")
    try:
        rd.path.mkdir(parents=True, exist_ok=True)
        write_atomic(rd.path / ".write-test", "")  # a read-only directory fails here, not later
        (rd.path / ".write-test").unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to run directory {rd.path}: {e.strerror or e}") from e
    check_archive(rd.archive)  # refuse a corrupt or foreign archive before writing anything
    try:
        rd.artifacts.mkdir(exist_ok=True)
        rd.lock()
        cfg.run.run_dir = str(rd.path)
        write_atomic(rd.config, config_mod.dumps(cfg))
    except OSError as e:
        raise ConfigError(f"cannot write to run directory {rd.path}: {e.strerror or e}") from e
    return rd, cfg


def record_sandbox(rd: RunDir, cfg: Config, archive: Archive, modes: list[str]) -> None:
    """The scorers' sandbox level, where a user looks: atop config.toml, and in the archive."""
    archive.set_meta("sandbox", modes)
    write_atomic(rd.config, f"# sandbox (the scorers' at the latest start): {'; '.join(modes)}\n"
                 + config_mod.dumps(cfg))


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or none of it: a kill leaves the old file (or no file), never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_adapter(learner, rd: RunDir, version: int) -> None:
    """Write to a temporary folder, then rename: a kill never leaves a half-written adapter.

    Only versions not yet recorded are saved, so a recorded adapter is never touched."""
    final = rd.adapter(version)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    learner.save(tmp)
    shutil.rmtree(final, ignore_errors=True)  # a stale one from a step that was not committed
    tmp.rename(final)


def repair_run_dir(rd: RunDir, archive: Archive) -> None:
    """Make the files mirror the archive again after a kill: the archive is the truth.

    Writes missing artefact files, rewrites metrics.jsonl, and removes what only an uncommitted
    step wrote (temporary files, adapters of versions the archive does not hold)."""
    for tmp in rd.artifacts.glob("*.tmp"):
        tmp.unlink(missing_ok=True)
    have = {p.name for p in rd.artifacts.glob("*.json")}
    for (cid,) in archive.db.execute(
            "SELECT id FROM candidates WHERE ok = 1 AND initial = 0 ORDER BY id").fetchall():
        if f"{cid}.json" not in have:
            write_atomic(rd.artifact(cid), json.dumps(archive.get(cid).artifact))
    write_atomic(rd.metrics, "".join(json.dumps(m) + "\n" for m in archive.step_metrics()))
    if rd.adapters.is_dir():
        metrics = archive.step_metrics()
        last = max([a["version"] for a in archive.adapters()] +
                   [m.get("version", 0) for m in metrics[-1:]], default=0)
        for path in rd.adapters.iterdir():
            version = path.name[1:]
            if not (path.name.startswith("v") and version.isdigit() and int(version) <= last):
                shutil.rmtree(path, ignore_errors=True)  # *.partial, or a later version


