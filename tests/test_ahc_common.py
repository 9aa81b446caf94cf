"""C++ in the sandbox and the shared contest environment: compile, run, fan out, fail per case.

Programs here are tiny (<cstdio> only) so that each compiles in well under a second; the
contest environment's failure paths are driven through AHC058, whose scorer is cheap.
"""

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import pytest

from discover import prompt, sandbox
from discover.environment import FAILURE_KINDS, InvalidArtifact, Parent
from discover.prompt import render
from discover.registry import load_environment
from environments.ahc058 import AHC058Environment
from environments.ahc058 import problem as p58
from environments.ahc_common import compile_cpp, run_binary

# Reads an AHC058 case, does nothing for T turns (score 0: one apple stays one apple);
# BEHAVIOUR runs once the input is read, with A[1] in `a1` (lets one case misbehave).
IDLE = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
int main() {
    int n, l, t; long long k;
    if (scanf("%d %d %d %lld", &n, &l, &t, &k) != 4) return 3;
    std::vector<long long> a(n);
    for (auto &x : a) scanf("%lld", &x);
    long long a1 = a[1];
    BEHAVIOUR
    for (int i = 0; i < t; i++) puts("-1");
    fprintf(stderr, "idle done\n");
    return 0;
}
"""


def idle(behaviour=""):
    return IDLE.replace("BEHAVIOUR", behaviour)


@pytest.fixture(scope="module")
def env():
    return AHC058Environment(cases=3, workers=2, cpu_s=1.0)


# --- compile and run ----------------------------------------------------------------------------

def test_compile_error_is_reported_with_diagnostics():
    comp = compile_cpp("int main() { return undefined_name; }\n")
    assert comp.binary is None and comp.failure == "syntax_error"
    assert "undefined_name" in comp.log and "error" in comp.log


@pytest.mark.skipif(not sandbox.isolation()["sealed"],
                    reason=f"the sandbox does not seal the filesystem here "
                           f"({sandbox.isolation()['mode']}; apt-get install bubblewrap)")
def test_an_include_of_a_host_file_does_not_compile():
    """Sealed, the compiler sees its headers and nothing else: not the checkout, not a
    world-readable header in the host's /tmp (what a hostile #include would leak)."""
    checkout = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)
        header = Path(tmp) / "secret.h"
        header.write_text("int secret() { return 42; }\n")
        header.chmod(0o644)
        for path in (header, checkout):
            comp = compile_cpp(f'#include "{path}"\nint main() {{ return 0; }}\n')
            assert comp.failure == "syntax_error", comp.log
            assert "No such file or directory" in comp.log, comp.log
    ok = compile_cpp("#include <bits/stdc++.h>\nint main() { std::vector<int> v(3); }\n")
    assert ok.failure is None, ok.log  # the compiler's own headers are there


def test_run_reads_stdin_and_returns_large_output_whole():
    src = r"""
#include <cstdio>
int main() { int n; scanf("%d", &n); for (int i = 0; i < n; i++) printf("%d %d\n", i, -i);
             fprintf(stderr, "wrote %d\n", n); }
"""
    comp = compile_cpp(src)
    assert comp.failure is None, comp.log
    run = run_binary(comp.binary, b"20000\n", cpu_s=1.0)
    assert run.status == "ok" and run.reason == ""
    lines = run.output.splitlines()
    assert len(run.output) > 100_000 and len(lines) == 20000 and lines[-1] == "19999 -19999"
    assert "wrote 20000" in run.stderr
    assert compile_cpp(src).binary == comp.binary  # a seen source comes from the cache


@pytest.mark.parametrize("body, status, words", [
    ("volatile unsigned long x = 0; for (;;) x++;", "timeout", "time limit"),
    # finishing normally, but after the limit: still a timeout (killed at 1 s CPU)
    ("while (clock() < 1.5 * CLOCKS_PER_SEC) {} return 0;", "timeout", "time limit"),
    ("int *p = nullptr; volatile int z = *p; return z;", "crash", "SIGSEGV"),
    ("return 7;", "crash", "exit code 7"),
    ("std::vector<char> v(std::size_t(2) << 30); return v[5];", "memory", "memory limit"),
])
def test_run_failures_are_distinct(body, status, words):
    comp = compile_cpp("#include <ctime>\n#include <vector>\nint main() { " + body + " }\n")
    assert comp.failure is None, comp.log
    run = run_binary(comp.binary, b"", cpu_s=1.0, memory_mb=256)
    assert run.status == status and words in run.reason


# --- the environment's fan-out and failure records --------------------------------------------

def test_valid_program_scores_every_case(env):
    ev = env.evaluate(idle(), None, seed=0)
    assert ev.ok, ev.log
    assert ev.score == 0.0 and ev.reward == 0.0  # log2(1) = 0 on each case
    assert ev.metrics["case_scores"] == [0, 0, 0]
    assert ev.artifact == {"program": idle(), "seed": 0} and "idle done" in ev.log


def test_compile_error_is_a_recorded_failure(env):
    ev = env.evaluate("int main( {", None, seed=0)
    assert not ev.ok and ev.failure == "syntax_error" and ev.metrics["stage"] == "compile"
    assert ev.reward == env.failure_reward < 0
    assert "error" in ev.log


def test_failure_names_the_case(env):
    cases = [(f"case {k}", p58.generate(k)) for k in range(4)]
    cases[2] = ("odd one", dataclasses.replace(cases[2][1], A=(1, 77) + cases[2][1].A[2:]))
    crash = env.score_program(idle("if (a1 == 77) abort();"), cases)
    assert not crash.ok and crash.failure == "crash"
    assert crash.metrics["case"] == 2 and crash.metrics["failed_cases"] == [2]
    assert "case 2 (odd one): runtime error: killed by SIGABRT" in crash.log
    wrong = env.score_program(idle("if (a1 == 77) { puts(\"0 -0\"); t--; }"), cases)
    assert not wrong.ok and wrong.failure == "invalid_artifact" and wrong.metrics["case"] == 2
    assert "wrong answer: output line 1: id: '-0' is not an unsigned integer" in wrong.log
    slow = env.score_program(idle("if (a1 == 77) for (volatile int x = 0;; x++);"), cases)
    assert not slow.ok and slow.failure == "timeout" and "time limit" in slow.log
    assert all(e.failure in FAILURE_KINDS for e in (crash, wrong, slow))


def test_output_must_be_strict_utf8(env):
    """The official testers read the output as a Rust String: invalid UTF-8 is a wrong answer."""
    cases = [(f"case {k}", p58.generate(k)) for k in range(2)]
    ev = env.score_program(idle('fputs("# caf\\xe9\\n", stdout);'), cases)  # latin-1 é
    assert ev.failure == "invalid_artifact" and ev.metrics["case"] == 0, ev.log
    assert "wrong answer: the output is not valid UTF-8 (byte 5: b'\\xe9\\n-1')" in ev.log
    ok = env.score_program(idle('fputs("# caf\\xc3\\xa9\\n", stdout);'), cases)  # UTF-8 é
    assert ok.ok, ok.log


def test_overspend_is_a_wrong_answer(env):
    # turn 0: pay C[0][0] = 1, the only apple, and earn 1; turn 1: C[1][0] >= 500 is too dear
    ev = env.evaluate(idle('puts("0 0"); puts("1 0"); t -= 2;'), None, seed=0)
    assert ev.failure == "invalid_artifact" and ev.metrics["case"] == 0
    assert "turn 1: strengthening machine 0^1 costs" in ev.log and "only 1 are left" in ev.log
    assert ev.metrics["failed_cases"][0] == 0


# --- artefacts, options, prompt ---------------------------------------------------------------

def test_load_artifact_forms(env, tmp_path):
    src = idle()
    (tmp_path / "a.cpp").write_text(src)
    (tmp_path / "b.json").write_text(json.dumps(src))
    (tmp_path / "c.json").write_text(json.dumps({"code": src}))
    for name in ("a.cpp", "b.json", "c.json"):  # a bare source runs with seed 0
        assert env.load_artifact(tmp_path / name) == {"program": src, "seed": 0}
    (tmp_path / "d.json").write_text(json.dumps({"program": src, "seed": 7}))
    assert env.load_artifact(tmp_path / "d.json") == {"program": src, "seed": 7}
    (tmp_path / "empty.cpp").write_text("  \n")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "seed.json").write_text(json.dumps({"program": src, "seed": "7"}))
    for bad, words in (("empty.cpp", "empty"), ("list.json", "source text"),
                       ("seed.json", "'seed' must be an integer"), ("missing.cpp", "cannot read")):
        with pytest.raises(InvalidArtifact, match=words):
            env.load_artifact(tmp_path / bad)
    assert env.verify([1, 2]).failure == "invalid_artifact"


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown option"):
        AHC058Environment(case=3)
    with pytest.raises(ValueError, match="cases must be a positive integer"):
        AHC058Environment(cases=0)
    with pytest.raises(ValueError, match="cpu_s must be a positive number"):
        AHC058Environment(cpu_s=-1)
    env = load_environment("ahc058", cases=150, workers=4)
    assert env.cpu_slots == 4 and env.target == pytest.approx(848_414_228)
    assert len(AHC058Environment(cases=2, case_seed=7).case_set()) == 2


def test_prompt_shows_parent_scores_and_target(env):
    text = render(env, Parent(code=idle(), artifact=idle(), score=9_000_000.0,
                                    parent_score=6_000_000.0, stdout="final apples: 12"))
    assert "total over 3 cases: 6,000,000 -> 9,000,000" in text
    assert "```cpp" in text and 'puts("-1")' in text and "final apples: 12" in text
    assert "848,414,228" in text and "1 s CPU" in text
    assert "a total above 16,968,285 over these 3 cases, i.e. a mean above 5,656,095 per case" \
        in text  # the target is read per case too
    assert "Write an improved program with a higher total over 3 cases" in text
    # an initial state's artefact is its program, shown as the parent program
    start = render(env, Parent(code=None, artifact=idle(), score=0.0, parent_score=None))
    assert 'puts("-1")' in start and "none -> 0" in start


def test_the_starter_marks_its_block_and_is_each_initial_states_program(env):
    base = env.starter_file.read_text()
    assert env.starter_program() == base == env.program_of({"program": base, "seed": 3})
    assert env.initial_artifacts(4, seed=3) == [{"program": base, "seed": 3}]
    assert env.program_of(base) == base and env.program_of([1, 2]) is None
    parent = Parent(code=None, artifact={"program": base, "seed": 0}, score=1.0,
                    parent_score=None)
    assert prompt.prefill(env, parent) == "```cpp\n// EVOLVE-BLOCK-START\n"
    assert "Rewrite the part between `// EVOLVE-BLOCK-START`" in render(env, parent)
    assert base.index("#include") < base.index("EVOLVE-BLOCK-START") < base.index("int main")
