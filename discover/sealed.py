"""The sealed filesystem of a sandboxed program, as bubblewrap arguments (sandbox.py says why).

What the program sees, each at its host path unless said otherwise:
  read-only  the OS's programs, libraries and headers (SYSTEM: software, not data; the C++
             environments' compiler and headers are here), the interpreter (its prefix; for a
             venv, pyvenv.cfg and the executable's symlinks) with every site directory emptied,
             the declared packages with their requirements (each installed top-level entry:
             package, vendored libs, dist-info) and the declared paths (under /dev: as devices);
  writable   its directory at /sandbox; /tmp and /dev/shm (directories of the run, on the host,
             so that the sandbox's disk limit counts them);
  fresh      /proc (its own PID namespace) and /dev (null, zero, random, tty, ...).
Nothing else. The directories leading to a bound path are traverse-only (0111), so e.g. the
home directory above a pyenv interpreter or a venv in a checkout cannot be listed.
"""

from __future__ import annotations

import functools
import glob
import os
import site
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# packaging: PyPA's own parser of requirement strings and their environment markers
# ("numpy; python_version >= '3.9'", extras), what pip uses to decide the same question.
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
          "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives")
WORK, TMP, SHM = "/sandbox", "/tmp", "/dev/shm"
_SITE_GLOBS = ("lib/python3*/site-packages", "lib/python3*/dist-packages",
               "local/lib/python3*/site-packages", "local/lib/python3*/dist-packages")


@dataclass(frozen=True)
class View:
    dirs: tuple[tuple[str, str], ...]  # (path, mode) made before anything is bound
    trees: tuple[str, ...]  # read-only binds (directories or files), parents first
    symlinks: tuple[tuple[str, str], ...]  # (target, path)
    hidden: tuple[str, ...]  # site directories inside the trees: emptied by a tmpfs
    packages: tuple[str, ...]  # entries of the declared distributions: read-only binds
    devices: tuple[str, ...]  # device binds
    pythonpath: tuple[str, ...]  # site directories of packages the interpreter would not find
    missing: tuple[str, ...]  # declared packages that are not installed here


def within(path: str, roots: list[str] | tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@functools.cache
def view(packages: tuple[str, ...] = (), paths: tuple[str, ...] = ()) -> View:
    """What a program of an environment declaring `packages` and `paths` may read."""
    trees: list[str] = []
    symlinks: list[tuple[str, str]] = []
    for p in SYSTEM:
        if os.path.islink(p):  # merged /usr: /bin -> usr/bin
            symlinks.append((os.readlink(p), p))
        elif os.path.exists(p):
            trees.append(p)
    for p in dict.fromkeys([sys.base_prefix, sys.base_exec_prefix]):
        if os.path.isdir(p) and not within(p, trees):
            trees.append(p)
    exe = os.path.abspath(sys.executable)
    for _ in range(40):  # the executable's symlinks, e.g. .venv/bin/python -> python3 -> ...
        if not os.path.islink(exe):
            break
        target = os.readlink(exe)
        if not within(exe, trees):
            symlinks.append((target, exe))
        exe = os.path.normpath(os.path.join(os.path.dirname(exe), target))
    if not within(exe, trees):
        trees.append(exe)
    if sys.prefix != sys.base_prefix:  # a venv: python finds its prefix by this file
        trees.append(os.path.join(sys.prefix, "pyvenv.cfg"))
    devices = []
    for pattern in paths:
        for match in sorted(glob.glob(pattern)):
            if any(within(own, [match]) for own in (WORK, TMP, SHM)):
                continue  # "/", "/tmp", "/dev": would cover the program's own directories
            if match.startswith("/dev/"):
                devices.append(match)
            elif not within(match, trees):
                trees.append(match)

    hidden = sorted({d for t in trees if os.path.isdir(t) for g in _SITE_GLOBS
                     for d in glob.glob(os.path.join(t, g)) if os.path.isdir(d)}
                    | {d for d in site.getsitepackages() if within(d, trees)
                       and os.path.isdir(d)})
    entries, sites, missing = _package_entries(packages)
    entries = [e for e in entries if not within(e, trees) or within(e, hidden)]
    default_sites = set(site.getsitepackages())
    pythonpath = tuple(s for s in sites if s not in default_sites)

    listable = {s for s in sites if not within(s, trees)}
    dirs: dict[str, str] = {}
    for dest in [*trees, *(p for _, p in symlinks), *entries, *devices]:
        parent = os.path.dirname(dest)
        chain = []
        while parent not in ("/", "", "/dev") and not within(parent, trees):
            chain.append(parent)
            parent = os.path.dirname(parent)
        for d in chain:
            dirs[d] = "0555" if d in listable else "0111"
    return View(tuple(sorted(dirs.items())), tuple(sorted(trees)), tuple(symlinks),
                tuple(hidden), tuple(sorted(entries)), tuple(devices), pythonpath,
                tuple(missing))


def _package_entries(names: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """The installed top-level entries of `names` and of everything they require (markers
    evaluated for this interpreter, no extras); their site directories; names not installed."""
    entries: dict[str, None] = {}
    sites: dict[str, None] = {}
    missing, seen, todo = [], set(), [(n, True) for n in names]
    by_import: dict[str, list[str]] | None = None
    while todo:
        name, declared = todo.pop(0)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            by_import = by_import if by_import is not None else metadata.packages_distributions()
            found = by_import.get(name)  # an import name, e.g. PIL for pillow
            if not found:
                if declared:
                    missing.append(name)
                continue
            dist = metadata.distribution(found[0])
        key = canonicalize_name(dist.metadata["Name"] or name)
        if key in seen:
            continue
        seen.add(key)
        where = Path(dist.locate_file("")).absolute()
        sites[str(where)] = None
        files = dist.files
        tops = {f.parts[0] for f in files if f.parts} if files is not None else {
            n + s for n in (dist.read_text("top_level.txt") or "").split() for s in ("", ".py")}
        for top in sorted(tops - {"..", "__pycache__"}):
            if (where / top).exists():
                entries[str(where / top)] = None
        for text in dist.requires or ():
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append((req.name, False))
    return list(entries), list(sites), missing


def bwrap_args(v: View, work: str, tmp: str, shm: str, setuid: bool) -> list[str]:
    """bwrap's command line up to `--` for a run whose host directories are work, tmp, shm.
    `setuid`: keep the two capabilities that let setpriv (next in argv) drop to the run's uid."""
    a = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
         "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if setuid:
        a += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    # Its own directories first: what is bound later under /tmp (a venv there) lands inside.
    a += ["--proc", "/proc", "--dev", "/dev",
          "--bind", work, WORK, "--bind", tmp, TMP, "--bind", shm, SHM]
    for d, mode in v.dirs:
        a += ["--perms", mode, "--dir", d]
    for t in v.trees:
        a += ["--ro-bind", t, t]
    for target, path in v.symlinks:
        a += ["--symlink", target, path]
    for h in v.hidden:
        a += ["--tmpfs", h]
    for p in v.packages:
        a += ["--ro-bind", p, p]
    for d in v.devices:
        a += ["--dev-bind", d, d]
    a += ["--remount-ro", "/"]
    for h in v.hidden:  # a writable tmpfs would be memory the disk limit never sees
        a += ["--remount-ro", h]
    return [*a, "--chdir", WORK, "--"]
