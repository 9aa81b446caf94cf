"""Pull the program out of a completion: the last fenced code block of the allowed language."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_ALIASES = {"python": {"python", "py", "python3"}, "cpp": {"cpp", "c++", "cc", "cxx"}}


def extract_code(text: str, language: str) -> str | None:
    """The last fenced block tagged with `language` (or untagged); None if there is none."""
    allowed = _ALIASES.get(language, {language})
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    tagged = [body for tag, body in blocks if tag in allowed]
    untagged = [body for tag, body in blocks if tag == ""]
    chosen = tagged or untagged
    if not chosen or not chosen[-1].strip():
        return None
    return chosen[-1].strip("\n") + "\n"
