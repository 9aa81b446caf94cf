"""The exchange with the model, in one place for every environment (docs/METHOD.md, phase 2).

What we ask: `render` builds the improvement prompt from the environment's parts (statement,
how the artefact is handed in, an artefact summary, the target) and the parent (its program,
head and tail when long; "before -> after" scores; its output's tail), ending with the
contract. `prefill` opens the assistant's turn with the code block. What we read back:
`program` takes the code from the answer and, when only the editable block was asked for,
splices it into the parent's program.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from discover import evolve_block
from discover.extract import extract_code

if TYPE_CHECKING:
    from discover.environment import Environment, Parent

EDIT_MODES = ("block", "whole")
STDOUT_CHARS = 300


def asks_block(env: Environment, parent: Parent, edit: str) -> bool:
    """Whether the model answers with the editable block only: in edit mode "block", when the
    parent's program marks one."""
    return edit == "block" and evolve_block.find(parent_program(env, parent)) is not None


def parent_program(env: Environment, parent: Parent) -> str | None:
    return parent.code or env.program_of(parent.artifact)


def render(env: Environment, parent: Parent, edit: str = "block") -> str:
    lang, name = env.language, env.score_name
    parts = [env.statement().strip(), ""]
    code = parent_program(env, parent)
    if code:
        parts += [f"Parent program ({name}: {env.format_score(parent.parent_score)} -> "
                  f"{env.format_score(parent.score)}):",
                  f"```{lang}", truncate(code.strip(), env.max_code_chars, lang), "```"]
        tail = (parent.stdout or "").strip()[-STDOUT_CHARS:]
        if tail:
            parts += ["Its output ended with:", tail]
    elif parent.artifact is not None:
        parts.append(f"Parent: {env.summarize(parent.artifact)}, {name} = "
                     f"{env.format_score(parent.score)}.")
    else:
        parts.append("There is no parent yet: start from scratch.")
    parts.append("")
    target = env.target_text()
    if target:
        parts.append(f"Target to beat: {target}.")
    handoff = env.handoff(parent.artifact)
    if handoff:
        parts.append(handoff)
    better = "lower" if env.direction == "min" else "higher"
    if asks_block(env, parent, edit):
        c = evolve_block.comment(lang)
        parts.append(f"Rewrite the part between `{c} {evolve_block.START}` and "
                     f"`{c} {evolve_block.END}` to get a {better} {name}. Answer with that part "
                     f"only, as one ```{lang} code block.")
    else:
        what = env.entry or "program"
        parts.append(f"Write an improved {what} with a {better} {name}. Answer with one "
                     f"```{lang} code block.")
    return "\n".join(parts)


def prefill(env: Environment, parent: Parent, edit: str = "block") -> str:
    """The opening of the assistant's turn: the code fence, and the block's start marker when
    only the block is asked for."""
    fence = f"```{env.language}\n"
    return fence + evolve_block.opening(env.language) if asks_block(env, parent, edit) else fence


def stop(env: Environment, edit: str = "block") -> tuple[str, ...]:
    """Where decoding ends once the prefill has opened the code block: at the fence that closes
    it, and in block answers at the block's end marker (what follows was never part of the
    program; the small model copies the rest of its parent's program on to the token limit)."""
    end = f"{evolve_block.comment(env.language)} {evolve_block.END}"
    return ("```", end) if edit == "block" else ("```",)


def program(env: Environment, parent: Parent, response: str, edit: str = "block") -> str | None:
    """The program an answer (prefill + completion) stands for; None when it holds no code."""
    code = extract_code(response, env.language)
    if code is None or not asks_block(env, parent, edit):
        return code
    return evolve_block.splice(parent_program(env, parent), code, env.language)


def truncate(code: str, limit: int, language: str = "python") -> str:
    """Keep the head and the tail of a long program (imports and data structures; the entry
    point and the return)."""
    if len(code) <= limit:
        return code
    head, tail = code[: limit * 2 // 3], code[-(limit // 3):]
    cut = len(code) - len(head) - len(tail)
    return f"{head}\n{evolve_block.comment(language)} ... ({cut} characters cut) ...\n{tail}"
