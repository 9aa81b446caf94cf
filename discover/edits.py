"""What counts as an edit: a child's program against its parent's, comments and layout aside."""

from __future__ import annotations


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
