"""Pull the program out of a completion: the last fenced code block of the allowed language.

Small models often open with bare code and close it with a lone fence (or never fence it at
all). When no fenced block holds code, the fallback takes the text from the first line that
starts a program of the language (`def`, `import`, `#include`, ...) up to the next fence.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)(```|\Z)", re.DOTALL)
_ALIASES = {"python": {"python", "py", "python3"}, "cpp": {"cpp", "c++", "cc", "cxx"}}
_STARTS = {"python": re.compile(r"^(def |import |from \S+ import |class )", re.MULTILINE),
           "cpp": re.compile(r"^(#include|using namespace|int main)", re.MULTILINE)}


def extract_code(text: str, language: str) -> str | None:
    """The last fenced block tagged with `language` (or untagged); else bare code; else None.

    A block the token limit cut off (no closing fence) is taken only when no complete block of
    the language precedes it: models often restate a finished program and get truncated."""
    allowed = _ALIASES.get(language, {language})
    blocks = []
    first = text.find("```")
    bare = _bare_code(text[:first], language) if first > 0 else None
    if bare and text.count("```") % 2 == 1:  # bare code closed by a lone fence
        blocks.append(("", bare, True))
        text = text[first + 3:]
    blocks += [(tag.lower(), body, bool(end)) for tag, body, end in _FENCE.findall(text)]
    blocks = [b for b in blocks if b[1].strip()]
    tagged = [(body, closed) for tag, body, closed in blocks if tag in allowed]
    untagged = [(body, closed) for tag, body, closed in blocks if tag == ""]
    chosen = tagged or untagged
    if len(chosen) > 1 and not chosen[-1][1] and any(closed for _, closed in chosen[:-1]):
        chosen = [c for c in chosen if c[1]]  # a complete block beats a truncated restatement
    if chosen:
        return chosen[-1][0].strip("\n") + "\n"
    return _bare_code(text, language)


def _bare_code(text: str, language: str) -> str | None:
    start = _STARTS.get(language)
    m = start.search(text) if start else None
    if m is None:
        return None
    code = text[m.start():].split("```", 1)[0].strip("\n")
    return code + "\n" if code else None
