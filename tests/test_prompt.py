"""The prompt renderer, the prefill and the editable block: what the model is asked and how its
answer becomes a program (discover/prompt.py, discover/evolve_block.py)."""

import numpy as np
import pytest

from discover import evolve_block, prompt
from discover.environment import Parent
from discover.extract import extract_code
from discover.registry import load_environment

ERDOS = load_environment("erdos", iterations=20000)  # half a run's work: a quicker test
STARTER = ERDOS.starter_program()
BLOCK = STARTER[:STARTER.index("# EVOLVE-BLOCK-END")]


def parent(code=STARTER):
    return Parent(code=code, artifact=[0.5] * 50, score=0.41, parent_score=0.49,
                  stdout="done\n")


def test_the_prompt_has_every_part_in_order():
    text = prompt.render(ERDOS, parent(), "block")
    order = [ERDOS.statement()[:40], "Parent program (C5: 0.49000000 -> 0.41000000):",
             "```python\n# EVOLVE-BLOCK-START", "Its output ended with:\ndone",
             "Target to beat: C5 < 0.380876", "`parent` (a numpy array of n=50 values)",
             "Rewrite the part between `# EVOLVE-BLOCK-START` and `# EVOLVE-BLOCK-END`"]
    at = [text.index(part) for part in order]
    assert at == sorted(at)
    whole = prompt.render(ERDOS, parent(), "whole")
    assert "Write an improved solve(parent, iters, seed) with a lower C5" in whole
    assert "Rewrite the part" not in whole


def test_block_mode_needs_a_marked_parent():
    plain = "import numpy as np\ndef solve(parent, iters, seed):\n    return parent\n"
    assert not prompt.asks_block(ERDOS, parent(plain), "block")
    assert prompt.prefill(ERDOS, parent(plain), "block") == "```python\n"
    assert prompt.prefill(ERDOS, parent(), "block") == "```python\n# EVOLVE-BLOCK-START\n"
    assert prompt.prefill(ERDOS, parent(), "whole") == "```python\n"


def test_long_programs_keep_head_and_tail():
    code = "A = 1\n" + "".join(f"x{i} = {i}\n" for i in range(2000)) + "B = 2\n"
    cut = prompt.truncate(code, 500, "cpp")
    assert cut.startswith("A = 1") and cut.endswith("B = 2\n") and "// ..." in cut
    assert len(cut) < 600 and prompt.truncate("short\n", 500) == "short\n"


def answer(body: str, end: bool = True, rest: str = "") -> str:
    """A response as the model's turn reads: prefill, then the completion."""
    return ("```python\n# EVOLVE-BLOCK-START\n" + body + ("# EVOLVE-BLOCK-END\n" if end else "")
            + rest + "```\n")


NEW_BODY = BLOCK.split("\n", 1)[1].replace("K = 1 ", "K = 5 ")


def test_a_block_answer_is_spliced_into_the_parent():
    program = prompt.program(ERDOS, parent(), answer(NEW_BODY), "block")
    assert program == STARTER.replace("K = 1 ", "K = 5 ") != STARTER
    # what follows END (a restated rest of the program) is dropped
    again = prompt.program(ERDOS, parent(), answer(NEW_BODY, rest="def solve(p):\n  x\n"), "block")
    assert again == program
    # no END marker: the block stops where the answer restates a later definition
    cut = prompt.program(ERDOS, parent(), answer(NEW_BODY, end=False,
                                                 rest="\ndef solve(parent, iters, seed):\n"
                                                      "    return None\n"), "block")
    assert cut == program
    # decoding stopped at the end marker (prompt.stop): no closing fence, the same program
    stops = prompt.stop(ERDOS, "block")
    opened = prompt.prefill(ERDOS, parent(), "block") + NEW_BODY + stops[1]
    assert prompt.program(ERDOS, parent(), opened, "block") == program
    assert prompt.stop(ERDOS, "whole") == ("```",)  # a whole program holds the markers


def test_a_whole_program_answer_is_taken_whole():
    whole = STARTER.replace("K = 1 ", "K = 3 ")
    got = prompt.program(ERDOS, parent(), "```python\n" + whole + "```\n", "block")
    assert got == whole
    assert prompt.program(ERDOS, parent(), "```python\n" + whole + "```\n", "whole") == whole
    assert prompt.program(ERDOS, parent(), "no code here", "block") is None


def test_find_and_splice_edge_cases():
    assert evolve_block.find("x = 1\n") is None
    assert evolve_block.find("# EVOLVE-BLOCK-START\nx = 1\n") is None  # no end: no block
    assert evolve_block.find(STARTER) == (0, STARTER.splitlines().index("# EVOLVE-BLOCK-END"))
    with pytest.raises(ValueError, match="no EVOLVE-BLOCK"):
        evolve_block.splice("x = 1\n", "y = 2\n", "python")
    cpp = ("int a;\n// EVOLVE-BLOCK-START\nint f() { return 1; }\n// EVOLVE-BLOCK-END\n"
           "int main() {}\n")
    assert evolve_block.splice(cpp, "int f() { return 2; }\n", "cpp") == cpp.replace("1;", "2;")
    assert evolve_block.opening("cpp") == "// EVOLVE-BLOCK-START\n"


def test_the_erdos_starter_improves_its_parent_in_the_sandbox():
    (start,) = ERDOS.initial_artifacts(1, seed=3)
    before = ERDOS.verify(start)
    ev = ERDOS.evaluate(STARTER, before.artifact, seed=0)
    assert ev.ok and ev.score < before.score - 0.02  # random local moves keep improvements
    spliced = prompt.program(ERDOS, parent(), answer(NEW_BODY), "block")
    moved = ERDOS.evaluate(spliced, before.artifact, seed=0)
    assert moved.ok and np.isfinite(moved.score)
    assert extract_code(prompt.render(ERDOS, parent(), "block"), "python") == STARTER
