"""The sealed filesystem: a sandboxed program can neither open nor list host files, at every
sealed isolation level this machine offers. As root: privileged bubblewrap with a uid of the
run's own (run directly), and bubblewrap in a user namespace (run by a child process under an
unprivileged uid); not root: the levels this user gets."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

import discover
from discover import sandbox, sealed
from discover.archive import Archive
from discover.sandbox import Limits, run_program

REPO = Path(discover.__file__).resolve().parents[1]
SHARED_REFERENCE = REPO.parent.parent / "shared" / "reference"
SEALED = [lvl for lvl in sandbox.available_levels() if lvl["sealed"]]
needs_sealed = pytest.mark.skipif(not SEALED, reason="no sealed level here: bubblewrap missing "
                                  "or refused (apt-get install bubblewrap)")
NOBODY = 65534

# Tries every path: a directory is listed, anything else opened and read. It also proves that
# it runs at all: numpy imports, and its own directory is writable and readable.
PROBE = r"""
import json, os
results = {}
for p in json.load(open("paths.json")):
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            with open(p, "rb") as f:
                f.read(1)
        results[p] = "read"
    except OSError as e:
        results[p] = f"{type(e).__name__}: {e.strerror}"
import numpy
with open("own.txt", "w") as f:
    f.write("mine")
print(json.dumps({"results": results, "numpy": numpy.__version__,
                  "own": open("own.txt").read() == "mine"}))
"""


@pytest.fixture(scope="module")
def host_paths():
    """Host paths a candidate must not see; all readable by anyone on the host but the home."""
    top = Path(tempfile.mkdtemp(prefix="discover-sealed-test-", dir="/tmp"))
    loose = Path(f"/tmp/discover-sealed-{uuid.uuid4().hex}.txt")  # an entry of /tmp
    try:
        run = top / "runs" / "erdos-1"  # a run directory made world-readable
        run.mkdir(parents=True)
        Archive(run / "archive.sqlite").close()
        (run / "config.toml").write_text("[run]\nenv = \"erdos\"\n")
        project = top / "project"  # a published construction copied under a project
        (project / "reference" / "erdos").mkdir(parents=True)
        published = sorted(SHARED_REFERENCE.glob("erdos/*.json"))
        record = project / "reference" / "erdos" / "record.json"
        if published:
            shutil.copy(published[0], record)
        else:  # no shared reference here (a clean clone): a file of the same form
            record.write_text(json.dumps({"values": [0.5] * 600}))
        loose.write_text("host data")
        for p in [top, *top.rglob("*"), loose]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        home = Path.home()
        paths = [REPO, REPO / "pyproject.toml", REPO / "discover" / "sandbox.py",
                 run, run / "archive.sqlite", run / "config.toml", project, record, loose,
                 home, home / ".cache", home / ".cache" / "discover", "/work"]
        paths += sorted(f"/tmp/{n}" for n in os.listdir("/tmp"))[:40]  # what /tmp holds now
        if SHARED_REFERENCE.is_dir():
            paths += [SHARED_REFERENCE, *published[:1]]
        site_dir = Path(np.__file__).parents[1]  # undeclared neighbours of numpy
        paths += [p for p in site_dir.iterdir() if not p.name.startswith("numpy")][:20]
        yield sorted({str(p) for p in paths})
    finally:
        shutil.rmtree(top, ignore_errors=True)
        loose.unlink(missing_ok=True)


def probe(level: dict, paths: list[str]) -> dict:
    res = run_program([sys.executable, "-s", "-B", "-c", PROBE],
                      {"paths.json": json.dumps(paths).encode()}, Limits(wall_s=60),
                      packages=("numpy",), level=level)
    assert res.status == "ok", f"{level['mode']}: {res.status}\n{res.stderr}"
    return json.loads(res.stdout)


def assert_sealed(got: dict, mode: str) -> None:
    assert got["own"] and got["numpy"], got  # it ran, with numpy and its own directory
    seen = {p: r for p, r in got["results"].items() if r == "read"}
    assert seen == {}, f"{mode}: host paths visible to the program: {sorted(seen)}"


@needs_sealed
@pytest.mark.parametrize("level", SEALED, ids=[lvl["mode"] for lvl in SEALED])
def test_no_host_path_can_be_opened_or_listed(level, host_paths):
    assert len(host_paths) > 15
    assert_sealed(probe(level, host_paths), level["mode"])


def test_without_sealing_the_same_probe_reads_them(host_paths):
    """The check can fail: at a level that does not seal, the same paths are read."""
    open_levels = [lvl for lvl in sandbox.available_levels() if not lvl["sealed"]]
    if not open_levels:
        pytest.skip("every level here seals the filesystem")
    got = probe(open_levels[0], host_paths)
    assert [p for p in host_paths if "discover-sealed" in p and got["results"][p] == "read"]


@needs_sealed
def test_the_strongest_level_is_sealed_and_named():
    iso = sandbox.isolation()
    assert iso["sealed"] and iso["mode"].startswith("bwrap+"), iso


@needs_sealed
def test_declared_packages_are_there_and_undeclared_ones_are_not():
    program = ("import importlib.util as u\n"
               "print(u.find_spec('numpy') is not None, u.find_spec('ray') is None,"
               " u.find_spec('discover') is None)\n")
    res = run_program([sys.executable, "-s", "-B", "-c", program], {}, Limits(wall_s=60),
                      packages=("numpy",))
    assert res.stdout.split() == ["True", "True", "True"], res.stderr
    res = run_program([sys.executable, "-s", "-B", "-c", program], {}, Limits(wall_s=60))
    assert res.stdout.split()[0] == "False", res.stderr  # not declared: not there


@needs_sealed
def test_requirements_of_a_declared_package_come_with_it():
    view = sealed.view(("matplotlib",))  # requires numpy, pillow, ... (installed here)
    names = {Path(p).name for p in view.packages}
    assert {"matplotlib", "numpy", "PIL"} <= names, sorted(names)
    assert not any(n.startswith(("torch", "ray")) for n in names), sorted(names)


def _unprivileged_python(env: dict) -> str | None:
    """An interpreter that uid NOBODY can run with numpy and this checkout importable."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    check = ("import os, sys, numpy, discover.sandbox; "
             "print(os.access(os.path.realpath(sys.executable), os.X_OK))")
    for exe in dict.fromkeys([sys.executable, f"/usr/bin/python{version}",
                              f"/usr/local/bin/python{version}"]):
        try:
            out = subprocess.run(_as_nobody([exe, "-c", check]), env=env, capture_output=True,
                                 text=True, timeout=60, cwd="/")
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "True":
            return exe
    return None


def _as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def test_an_unprivileged_user_is_sealed_too(host_paths):
    if os.geteuid() != 0:
        pytest.skip("not root: the parametrised test above already ran this user's levels")
    if not shutil.which("bwrap") or not shutil.which("setpriv"):
        pytest.skip("needs bwrap and setpriv")
    site_dir = str(Path(np.__file__).parents[1])
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8",
           "PYTHONPATH": os.pathsep.join([str(REPO), site_dir])}
    exe = _unprivileged_python(env)
    if exe is None:
        pytest.skip(f"no interpreter that uid {NOBODY} can run with numpy and {REPO}")
    child = ("import json, sys\nfrom discover import sandbox\nfrom discover.sandbox import "
             "Limits, run_program\niso = sandbox.isolation()\n"
             "res = run_program([sys.executable, '-s', '-B', '-c', sys.argv[1]], "
             "{'paths.json': sys.argv[2].encode()}, Limits(wall_s=60), packages=('numpy',))\n"
             "print(json.dumps({'iso': iso, 'status': res.status, 'stdout': res.stdout, "
             "'stderr': res.stderr}))\n")
    out = subprocess.run(_as_nobody([exe, "-c", child, PROBE, json.dumps(host_paths)]),
                         env=env, capture_output=True, text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    iso = report["iso"]
    if not iso["sealed"]:
        pytest.skip(f"bwrap refused an unprivileged user here (mode {iso['mode']}): "
                    f"{iso['notes']}")
    assert iso["user_ns"] and not iso["uid_drop"], iso
    assert report["status"] == "ok", report["stderr"]
    assert_sealed(json.loads(report["stdout"]), iso["mode"])


@needs_sealed
def test_declared_paths_and_devices_are_there_and_nothing_beside_them(tmp_path):
    """What an environment's sandbox_paths names is readable (a device as a device: how the
    GPU environment keeps /dev/nvidia*); its neighbours are not."""
    os.chmod(tmp_path, 0o755)
    shown, hidden = tmp_path / "shown.txt", tmp_path / "hidden.txt"
    for f in (shown, hidden):
        f.write_text(f.name)
        f.chmod(0o644)
    device = next((d for d in ("/dev/fuse", "/dev/net/tun", "/dev/kvm") if os.path.exists(d)),
                  None)
    program = ("import os, stat, sys\nfor p in sys.argv[1:]:\n"
               "    print(p, stat.S_ISCHR(os.stat(p).st_mode) if os.path.exists(p) else None)\n")
    argv = [sys.executable, "-s", "-B", "-c", program, str(shown), str(hidden)]
    globs = (str(tmp_path / "sh*.txt"),) + ((device[:-1] + "*",) if device else ())
    res = run_program(argv + ([device] if device else []), {}, Limits(wall_s=60), paths=globs)
    seen = dict(line.split() for line in res.stdout.splitlines())
    assert seen[str(shown)] == "False" and seen[str(hidden)] == "None", res.stdout + res.stderr
    if device:
        assert seen[device] == "True", res.stdout  # bound as a device, not a copy
        res = run_program(argv + [device], {}, Limits(wall_s=60))
        assert res.stdout.split()[-1] == "None", res.stdout  # not declared: not there
