"""The editable region of a program: the lines between EVOLVE-BLOCK-START and EVOLVE-BLOCK-END.

OpenEvolve's convention. An environment marks, in its starter program, the part the model
rewrites; the prompt shows the whole parent program, the model answers with the block only, and
`splice` puts that answer in place of the parent's block. A small model copies well and edits
poorly, so the less it has to reproduce, the more of its answers run.
"""

from __future__ import annotations

START, END = "EVOLVE-BLOCK-START", "EVOLVE-BLOCK-END"
COMMENT = {"python": "#", "cpp": "//"}  # how a marker line opens, by language


def comment(language: str) -> str:
    return COMMENT.get(language, "#")


def find(code: str | None) -> tuple[int, int] | None:
    """(start line, end line) of the first marked block, marker lines included; None if the
    program has no complete block."""
    if not code:
        return None
    lines = code.splitlines()
    start = next((i for i, line in enumerate(lines) if START in line), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if END in lines[i]), None)
    return None if end is None else (start, end)


def opening(language: str) -> str:
    """The marker line an answer begins with (the prefill puts it there)."""
    return f"{comment(language)} {START}\n"


def splice(parent: str, answer: str, language: str) -> str:
    """The parent program with its block replaced by the block in `answer`.

    The answer's block runs from its START marker (or its first line, when the marker is
    missing) to its END marker; text after END, such as a restated rest of the program, is
    dropped, since only the block was asked for. Without an END marker the block ends where the
    answer starts restating the program after the parent's block: at the first line that opens
    one of the parent's later top-level definitions (`def solve(...):`, `int main() {`). An
    answer with program text on both sides of a marked block is a whole program, taken whole.
    """
    where = find(parent)
    if where is None:
        raise ValueError("the parent program has no EVOLVE-BLOCK-START / EVOLVE-BLOCK-END block")
    lines, ans = parent.splitlines(), answer.splitlines()
    marked = find(answer)
    if marked and any(x.strip() for x in ans[:marked[0]]) and \
            any(x.strip() for x in ans[marked[1] + 1:]):
        return answer.rstrip("\n") + "\n"
    a_start = next((i for i, line in enumerate(ans) if START in line), -1)
    start, end = where
    rest = {line.rstrip() for line in lines[end + 1:]
            if line.strip() and not line[0].isspace() and line.rstrip().endswith((":", "{"))}
    a_end = next((i for i in range(a_start + 1, len(ans))
                  if END in ans[i] or ans[i].rstrip() in rest), len(ans))
    body = ans[a_start + 1:a_end]
    while body and not body[-1].strip():
        body.pop()
    block = [lines[start], *body, lines[end]]
    return "\n".join(lines[:start] + block + lines[end + 1:]) + "\n"
