"""What counts as an edit: a child's program against its parent's, comments and layout aside."""

from __future__ import annotations

import re


def code_only(code: str | None, language: str = "python") -> str:
    """The program without comments, blank lines and runs of whitespace: a reworded comment or a
    re-indented line is not an edit."""
    mark = "#" if language == "python" else "//"
    lines = (" ".join(line.split(mark, 1)[0].split()) for line in (code or "").splitlines())
    return "\n".join(line for line in lines if line)


def is_copy(child: str | None, parent: str | None, language: str = "python") -> bool:
    """Whether a child's program is its parent's, verbatim up to comments and whitespace (in
    block mode: the model answered with the parent's block unchanged). A child with no program
    is no copy."""
    return bool(child) and code_only(child, language) == code_only(parent, language)


_ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)\s*=(?!=)\s*(.+)")


def knobs(code: str | None, language: str = "python") -> dict[str, str]:
    """The program's top-level `NAME = value` lines (comments and spacing aside): its knobs,
    such as a knob-only block's `K = 3`."""
    mark = "#" if language == "python" else "//"
    found = {}
    for line in (code or "").splitlines():
        if not line[:1].isspace():  # indented lines belong to a body, not the top level
            m = _ASSIGNMENT.fullmatch(line.split(mark, 1)[0].strip())
            if m:
                found[m.group(1)] = " ".join(m.group(2).split())
    return found


def retunes(child: str | None, parent: str | None, language: str = "python") -> bool:
    """Whether the child gives a new value to a knob its parent sets (whether or not the child
    then runs): the move that opens a new descent on Erdős (K = 1 -> 10), which a learner that
    punishes failed tries can stop making (docs/benchmarks.md, "Knob edits tried")."""
    mine, theirs = knobs(child, language), knobs(parent, language)
    return any(name in mine and mine[name] != value for name, value in theirs.items())
