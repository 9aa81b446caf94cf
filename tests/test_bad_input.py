"""Bad input at every boundary: a clear `discover: error: ...` naming the problem, a non-zero
exit, no traceback, and nothing already stored lost. Real files, a real SQLite archive, real
read-only and full file systems where this machine can mount them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from fake_run import fake_run

from discover import cli
from discover import config as config_mod
from discover.archive import Archive, ArchiveError, Candidate
from discover.config import Config

DISCOVER = [sys.executable, "-m", "discover.cli"]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    return rc, err


def digest(folder: Path) -> dict[str, str]:
    """Every stored file's content hash: 'nothing stored was lost or changed'. (SQLite's side
    files, which a reader may leave empty, and the run lock hold no data.)"""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.endswith(("-wal", "-shm", ".lock"))}


# --- config ------------------------------------------------------------------------------------

def test_malformed_toml(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nsteps = 3\n")
    rc, err = run_cli(capsys, "run", "toy", "--config", str(bad), "--run-dir", str(tmp_path / "r"))
    assert rc == 2 and err.startswith("discover: error: malformed TOML in") and str(bad) in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, message", [
    (["--set", "run.stepz=3"], "unknown config key run.stepz; known keys: env, steps"),
    (["--set", "nope.x=1"], "unknown config section [nope]"),
    (["--set", "steps=3"], "--set expects section.key=value"),
    (["--set", "run.steps=many"], "run.steps: cannot read 'many' as int"),
    (["--set", "env.nope=1"], "environment 'toy': unknown option(s) for toy: nope"),
])
def test_unknown_or_malformed_keys(tmp_path, capsys, argv, message):
    rc, err = run_cli(capsys, "run", "toy", "--run-dir", str(tmp_path / "r"), *argv)
    assert rc == 2 and err.startswith("discover: error: ") and message in err, err
    assert not (tmp_path / "r").exists()


def test_unknown_key_in_a_toml_file(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text("[learner]\nrate = 0.1\n")
    rc, err = run_cli(capsys, "run", "toy", "--config", str(f), "--run-dir", str(tmp_path / "r"))
    assert rc == 2 and "unknown config key learner.rate" in err


def test_unknown_environment(tmp_path, capsys):
    rc, err = run_cli(capsys, "run", "nosuchenv", "--run-dir", str(tmp_path / "r"))
    assert rc == 2 and "unknown environment 'nosuchenv'; installed:" in err and "toy" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, name", [
    (["--steps", "0"], "run.steps"), (["--steps", "-3"], "run.steps"),
    (["--groups", "0"], "run.groups"), (["--group-size", "-1"], "run.group_size"),
    (["--max-new-tokens", "0"], "policy.max_new_tokens"), (["--budget-s", "-5"], "run.budget_s"),
    (["--set", "policy.batch_size=0"], "policy.batch_size"),
    (["--set", "policy.temperature=0"], "policy.temperature"),
    (["--set", "policy.threads=-2"], "policy.threads"),
    (["--set", "run.initial_states=0"], "run.initial_states"),
    (["--set", "learner.lr=-1e-4"], "learner.lr"),
    (["--set", "learner.lora_rank=0"], "learner.lora_rank"),
    (["--set", "learner.micro_batch=0"], "learner.micro_batch"),
    (["--set", "learner.kl_coef=-1"], "learner.kl_coef"),
    (["--set", "ray.scorer_slots=-1"], "ray.scorer_slots"),
    (["--set", "run.budget_s=nan"], "run.budget_s"),
    (["--set", "env.time_budget_s=0"], "time_budget_s must be positive"),
    (["--set", "env.time_budget_s=-1"], "time_budget_s must be positive"),
])
def test_zero_or_negative_sizes(tmp_path, capsys, argv, name):
    rc, err = run_cli(capsys, "run", "toy", "--run-dir", str(tmp_path / "r"), *argv)
    assert rc == 2 and err.startswith("discover: error: ") and name in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("env", ["erdos", "ac1", "circle_packing_26"])
@pytest.mark.parametrize("value", ["0", "many"])
def test_the_work_a_program_is_given_is_a_positive_integer(tmp_path, capsys, env, value):
    rc, err = run_cli(capsys, "run", env, "--run-dir", str(tmp_path / "r"), "--set",
                      f"env.iterations={value}")
    assert rc == 2 and f"environment '{env}': iterations must be an integer >= 1, got " in err
    assert not (tmp_path / "r").exists()


def test_missing_model(tmp_path, capsys):
    for model, message in [("/nonexistent/model", "model folder /nonexistent/model not found"),
                           ("./no-such-folder", "model folder ./no-such-folder not found"),
                           (str(tmp_path), "is not a model folder: it holds no config.json")]:
        rc, err = run_cli(capsys, "run", "toy", "--run-dir", str(tmp_path / "r"), "--model",
                          model)
        assert rc == 2 and message in err, err
        assert not (tmp_path / "r").exists()  # refused before anything was created


# --- run directories on --resume ---------------------------------------------------------------

def test_resume_of_another_environment(tmp_path, capsys):
    rd = tmp_path / "run"
    fake_run(rd, 2)
    before = digest(rd)
    rc, err = run_cli(capsys, "run", "erdos", "--run-dir", str(rd), "--resume")
    assert rc == 2 and "cannot resume: run.env was 'toy' in the saved run, now 'erdos'" in err
    assert digest(rd) == before


def test_resume_of_an_archive_from_another_schema(tmp_path, capsys):
    rd = tmp_path / "run"
    fake_run(rd, 2)
    a = Archive(rd / "archive.sqlite")
    a.set_meta("archive_schema", 99)
    a.close()
    before = digest(rd)
    rc, err = run_cli(capsys, "run", "toy", "--run-dir", str(rd), "--resume", "--steps", "9")
    assert rc == 2 and "has archive schema 99, this discover reads 1" in err, err
    assert digest(rd) == before  # not even config.toml was rewritten
    rc, err = run_cli(capsys, "best", str(rd))
    assert rc == 2 and "archive schema 99" in err


def test_resume_of_an_archive_written_by_another_environment(tmp_path, capsys):
    rd = tmp_path / "run"
    fake_run(rd, 2, env="erdos")  # the config says toy below, the archive not
    cfg = config_mod.apply(Config(), {"run": {"env": "toy", "run_dir": str(rd), "steps": 5}})
    (rd / "config.toml").write_text(config_mod.dumps(cfg))
    before = digest(rd)
    out = subprocess.run([*DISCOVER, "run", "toy", "--run-dir", str(rd), "--resume",
                          "--set", "policy.max_new_tokens=8"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 2 and "holds a run of 'erdos', not 'toy'" in out.stderr
    assert "Traceback" not in out.stderr
    assert {k: v for k, v in digest(rd).items() if k != "config.toml"} == \
        {k: v for k, v in before.items() if k != "config.toml"}


@pytest.mark.parametrize("content, message", [
    (b"this is not a database\n" * 100, "not a discover archive (not an SQLite file"),
    (b"SQLite format 3\x00" + os.urandom(5000), "cannot open"),
])
def test_resume_of_a_corrupt_archive(tmp_path, capsys, content, message):
    rd = tmp_path / "run"
    fake_run(rd, 2)
    (rd / "archive.sqlite").write_bytes(content)
    for side in ("archive.sqlite-wal", "archive.sqlite-shm"):
        (rd / side).unlink(missing_ok=True)
    before = digest(rd)
    rc, err = run_cli(capsys, "run", "toy", "--run-dir", str(rd), "--resume")
    assert rc == 2 and message in err and "left untouched" in err, err
    assert digest(rd) == before
    rc, err = run_cli(capsys, "check", str(rd))
    assert rc == 1 and message in err


def test_resume_of_a_directory_with_no_run(tmp_path, capsys):
    rc, err = run_cli(capsys, "run", "toy", "--run-dir", str(tmp_path / "empty"), "--resume")
    assert rc == 2 and "cannot resume" in err and "not found" in err


def test_best_and_check_of_a_missing_run(tmp_path, capsys):
    rc, err = run_cli(capsys, "best", str(tmp_path / "nothing"))
    assert rc == 2 and "no archive at" in err
    rc, err = run_cli(capsys, "check", str(tmp_path / "nothing"))
    assert rc == 1 and "config.toml" in err


# --- read-only and full file systems -----------------------------------------------------------

@contextlib.contextmanager
def mounted(options: str):
    """A tmpfs mounted with `options` (root only); yields its path, or skips."""
    path = tempfile.mkdtemp(prefix="discover-mnt-")
    ok = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], capture_output=True).returncode == 0
    if not ok:
        os.rmdir(path)
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield Path(path)
    finally:
        subprocess.run(["umount", "-l", path], check=False)
        os.rmdir(path)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def test_read_only_run_directory(capsys):
    with mounted("size=8m") as mnt:
        rd = mnt / "run"
        fake_run(rd, 2)
        before = digest(rd)
        remount(mnt, "ro")
        rc, err = run_cli(capsys, "run", "toy", "--run-dir", str(rd), "--resume")
        assert rc == 2 and f"cannot write to run directory {rd}: Read-only file system" in err
        rc, err = run_cli(capsys, "run", "toy", "--run-dir", str(mnt / "new"))
        assert rc == 2 and "cannot write to run directory" in err
        remount(mnt, "rw")
        assert digest(rd) == before
        assert Archive(rd / "archive.sqlite", readonly=True).integrity_check() == []


def test_full_disk_fails_the_write_and_keeps_the_archive():
    """A commit that hits a full disk raises ArchiveError; the archive keeps every finished step
    and takes the next one once there is room again."""
    with mounted("size=1m") as mnt:
        fake_run(mnt / "run", 3)
        a = Archive(mnt / "run" / "archive.sqlite")
        p = a.load_puct()
        filler = mnt / "filler"
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):  # see below
            while True:
                f.write(b"x" * 65536)
        big = Candidate(None, 0, None, "x" * 300_000, [1.0], 1.0, 1.0, True)
        with pytest.raises(ArchiveError, match="database or disk is full"):
            a.commit_step(3, [(1, [big])], p, {})
        assert a.last_step() == 2 and a.integrity_check() == []
        a.close()
        a = Archive(mnt / "run" / "archive.sqlite", readonly=True)
        assert a.last_step() == 2 and a.integrity_check() == []
        a.close()
        filler.unlink()
        a = Archive(mnt / "run" / "archive.sqlite")
        a.commit_step(3, [(1, [big])], a.load_puct(), {})
        assert a.last_step() == 3 and a.integrity_check() == []
        a.close()


@pytest.mark.slow
def test_full_disk_mid_run_then_resume():
    """The real run on a small tmpfs that fills up mid-run: a clear error, a sound run directory,
    and `--resume` completes once there is room. Learning is on (the default): each step writes a
    7.4 MB adapter, so the disk holds the whole run with room to spare before it is filled."""
    with mounted("size=96m") as mnt:
        rd = mnt / "run"
        args = ["run", "toy", "--run-dir", str(rd), "--groups", "1", "--group-size", "2",
                "--set", "policy.max_new_tokens=16", "--set", "env.time_budget_s=2",
                "--steps", "4"]
        proc = subprocess.Popen([*DISCOVER, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        first = ""
        while "step 1/" not in first:  # the first step is stored: now fill the disk
            first = proc.stderr.readline()
            assert first or proc.poll() is None, "the run ended before its first step"
        filler = mnt / f"filler-{uuid.uuid4().hex}"
        # Unbuffered, so the failing write raises here and close() has nothing left to flush.
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"x" * 65536)
        err = proc.stderr.read()
        assert proc.wait(timeout=600) != 0
        assert "discover: error: " in err and ("disk is full" in err or "No space left" in err)
        assert "Traceback" not in err
        from discover.integrity import check_run_dir

        assert check_run_dir(rd, repairable_ok=True) == []
        filler.unlink()
        r = subprocess.run([*DISCOVER, *args, "--resume"], capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        assert check_run_dir(rd) == []
