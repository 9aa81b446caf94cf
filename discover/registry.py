"""Environments by name: installed packages (entry points in the `discover.environments` group;
third-party packages register the same way) and OpenEvolve / ShinkaEvolve problem folders.

It sits above environment.py (the contract) and problem_folder.py (one provider of it), so the
contract never imports what implements it.
"""

from __future__ import annotations

import copy
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from discover.environment import Environment, InvalidOptions
from discover.problem_folder import FolderEnvironment, is_folder_name

ENTRY_POINT_GROUP = "discover.environments"


class UnknownEnvironment(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


def registered() -> dict[str, Any]:
    """Installed environments by name: {name: entry point}."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def recommended(name: str) -> dict[str, dict[str, Any]]:
    """The settings environment `name` recommends, as config sections (Environment.recommended);
    {} for a problem folder, and for a name that is not installed (the run refuses it later,
    naming what is)."""
    eps = registered()
    return copy.deepcopy(eps[name].load().recommended) if name in eps else {}


def canonical_name(name: str) -> str:
    """An installed environment's name as given; a problem folder's as its absolute path (a run
    stores it, and the scorers, another process, open it by that name)."""
    if name in registered() or not is_folder_name(name):
        return name
    return str(Path(name).expanduser().resolve())


def load_environment(name: str, **options: Any) -> Environment:
    eps = registered()
    if name not in eps and is_folder_name(name):
        try:  # an OpenEvolve or ShinkaEvolve problem folder, run as it is
            return FolderEnvironment(name, **options)
        except (TypeError, ValueError) as e:
            raise InvalidOptions(str(e)) from e
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise UnknownEnvironment(
            f"unknown environment {name!r}; installed: {known}. "
            f"A plugin registers under the entry-point group '{ENTRY_POINT_GROUP}'.")
    cls = eps[name].load()
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:  # a bad option names itself at the boundary
        raise InvalidOptions(f"environment {name!r}: {e}") from e
