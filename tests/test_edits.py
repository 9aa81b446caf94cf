"""What counts as a copy and as a knob edit, on Erdős's own starter block."""

from discover.edits import is_copy, knobs, retunes
from environments.erdos.env import STARTER


def test_a_reworded_comment_is_a_copy_and_a_new_knob_value_is_not():
    reworded = STARTER.replace("# how many values one move changes", "# moves: K values")
    assert reworded != STARTER and is_copy(reworded, STARTER)
    tuned = STARTER.replace("K = 1 ", "K = 10 ", 1)
    assert tuned != STARTER and not is_copy(tuned, STARTER)
    assert not is_copy(None, None) and not is_copy("", STARTER)


def test_knobs_are_the_top_level_assignments():
    found = knobs(STARTER)
    assert found["K"] == "1" and found["STEP"] == "0.1", found
    # assignments inside functions are not knobs, comparisons are not assignments
    assert "h" not in found and "rng" not in found and "t" not in found
    assert knobs("if x == 3:\n    y = 2\nZ = [1,  2] # two\n") == {"Z": "[1, 2]"}
    assert knobs("x = 1 // c\n", language="cpp") == {"x": "1"}


def test_retunes_counts_a_new_value_tried_whether_or_not_it_runs():
    tuned = STARTER.replace("K = 1 ", "K = 10 ", 1)
    assert retunes(tuned, STARTER)
    broken = STARTER.replace("K = 1 ", "K = 1000 )", 1)  # a syntax error still tried a value
    assert retunes(broken, STARTER)
    reworded = STARTER.replace("# how many values one move changes", "# moves")
    assert not retunes(reworded, STARTER)
    added = STARTER.replace("K = 1 ", "EXTRA = 5\nK = 1 ", 1)  # a new name is not a retune
    assert not retunes(added, STARTER)
    assert not retunes(None, STARTER) and not retunes(tuned, None)
