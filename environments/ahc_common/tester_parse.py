"""An output read as the contests' official testers (Rust) read it, so that our scorers accept
and refuse exactly what they do.

AtCoder's testers read the output file as a `String` (strict UTF-8), split it with
`str::split_whitespace` (Unicode White_Space: not Python's wider str.split(), which also
splits on the separators U+001C..U+001F) or `str::lines` (on "\\n" only, one trailing "\\r"
dropped: not Python's str.splitlines(), which also splits on a lone "\\r", form feed, U+2028,
...), and read each number with `str::parse` for the field's integer type: ASCII
`[+-]?[0-9]+` within the type's range, a minus sign refused by unsigned types (Python's int()
also takes "3850_0", full-width digits and surrounding spaces).
"""

from __future__ import annotations

import re

from discover.environment import InvalidArtifact

# char::is_whitespace: the Unicode White_Space property.
WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
              + "\u2028\u2029\u202f\u205f\u3000")
_SPLIT = re.compile(f"[{re.escape(WHITESPACE)}]+")
_SIGNED = re.compile(r"[+-]?[0-9]+", re.ASCII)
_UNSIGNED = re.compile(r"\+?[0-9]+", re.ASCII)
I64 = (-(1 << 63), (1 << 63) - 1)
U64 = (0, (1 << 64) - 1)


def decode(raw: bytes) -> str:
    """The output as text; InvalidArtifact if it is not valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArtifact(f"the output is not valid UTF-8 (byte {e.start}: "
                              f"{raw[e.start:e.start + 4]!r})") from None


def tokens(text: str) -> list[str]:
    """str::split_whitespace."""
    return [t for t in _SPLIT.split(text) if t]


def lines(text: str) -> list[str]:
    """str::lines: split on "\\n", drop one "\\r" before it; no empty last line."""
    out = text.split("\n")
    if out and out[-1] == "":
        out.pop()
    return [line[:-1] if line.endswith("\r") else line for line in out]


def trim(line: str) -> str:
    """str::trim."""
    return line.strip(WHITESPACE)


def integer(token: str, what: str, signed: bool = True, lo: int | None = None,
            hi: int | None = None) -> int:
    """str::parse::<i64> (or u64 when not `signed`), then the range [lo, hi] of the field.
    InvalidArtifact names `what` and the token when either fails."""
    pattern, (tmin, tmax) = (_SIGNED, I64) if signed else (_UNSIGNED, U64)
    if not pattern.fullmatch(token):
        kind = "an integer" if signed else "an unsigned integer (no sign)"
        raise InvalidArtifact(f"{what}: {_show(token)} is not {kind} (ASCII digits"
                              f"{', an optional sign' if signed else ''})")
    value = int(token)
    if not tmin <= value <= tmax:
        raise InvalidArtifact(f"{what}: {_show(token)} does not fit a 64-bit integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidArtifact(f"{what}: {value} is out of range [{lo}, {hi}]")
    return value


def _show(token: str) -> str:
    return repr(token if len(token) <= 40 else token[:37] + "...")
