from discover.extract import extract_code


def test_last_python_block_wins():
    text = "try this\n```python\nx = 1\n```\nbetter:\n```python\nx = 2\n```\ndone"
    assert extract_code(text, "python") == "x = 2\n"


def test_other_language_ignored_untagged_accepted():
    assert extract_code("```bash\nls\n```", "python") is None
    assert extract_code("```\ny = 3\n```", "python") == "y = 3\n"
    assert extract_code("```py\nz = 4\n```\n```bash\nls\n```", "python") == "z = 4\n"


def test_no_code_and_unterminated():
    assert extract_code("I cannot do this.", "python") is None
    assert extract_code("```python\n\n```", "python") is None
    # a completion cut off by the token limit still yields its (partial) program
    assert extract_code("```python\ndef solve():\n    return 1", "python").startswith("def solve")


def test_cpp_aliases():
    assert extract_code("```cpp\nint main(){}\n```", "cpp") == "int main(){}\n"


def test_bare_code_closed_by_a_lone_fence_is_taken():
    text = "def solve():\n    return [9] * 10\n```\nThis returns nines."
    assert extract_code(text, "python") == "def solve():\n    return [9] * 10\n"
    assert extract_code("Sure! import numpy as np is useful", "python") is None
    assert extract_code("#include <cstdio>\nint main(){}\n```", "cpp").startswith("#include")
    # a fenced block always wins over bare code elsewhere
    assert extract_code("def a(): pass\n```python\nx = 1\n```", "python") == "x = 1\n"


def test_a_complete_block_beats_a_later_truncated_one():
    text = ("```python\ndef solve():\n    return [0, 1]\n```\nBetter:\n```python\n"
            "def solve():\n    return [1, 2, 3, 4")
    assert extract_code(text, "python") == "def solve():\n    return [0, 1]\n"
    # ... but a closed block of another language does not count
    text = "```bash\nls\n```\n```python\ndef solve():\n    return [1"
    assert extract_code(text, "python") == "def solve():\n    return [1\n"
