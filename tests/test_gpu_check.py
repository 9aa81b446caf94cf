"""scripts/gpu_check.sh on a machine without CUDA: the one-line refusal (exit 2), the part runner
(each part under its own cap, a failing or hung part does not stop the next, the overall
budget), and the summary writer. Bounded: about 25 s in all on 2 loaded cores."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
SUMMARY = ROOT / "scripts" / "gpu_check_summary.py"


def no_gpu_path(tmp_path: Path) -> str:
    """PATH with an nvidia-smi that lists no GPU first, so the no-CUDA path is taken even on a
    machine that has one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 9\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def run_parts(tmp_path: Path, body: str, **env: str) -> tuple[dict, float]:
    """Source the script (which then runs nothing by itself), run `body` with its functions,
    and return summary.json and the wall time."""
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", f'source "$1"; init_work "$2"; {body}; write_summary >/dev/null', "_",
         str(SCRIPT), str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "GPU_CHECK_KILL_GRACE": "1", **env})
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "summary.json").read_text()), wall


def test_without_cuda_it_says_so_in_one_line_and_exits_2(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PATH": no_gpu_path(tmp_path)})
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA device here"), lines
    assert "bash syntax" in lines[0] and "summary writer" in lines[0]
    assert not out.exists()  # nothing measured, nothing written


def test_each_part_is_capped_and_the_next_still_runs(tmp_path):
    summary, wall = run_parts(tmp_path, (
        'run_part sleepy 1 "" sleep 30; '
        'run_part stubborn 1 "" bash -c "trap \\"\\" TERM; sleep 30"; '
        'run_part next 20 "" echo next-ran; '
        'run_part bad 20 "" sh -c "echo boom; exit 3"; '
        'run_part needy 20 "no_such_module_gpu_check json" touch marker'))
    parts = {p["name"]: p for p in summary["parts"]}
    assert [p["name"] for p in summary["parts"]] == ["sleepy", "stubborn", "next", "bad", "needy"]
    # A sleep that exits at TERM, and one that ignores it (KILL after the 1 s grace).
    assert parts["sleepy"]["status"] == "timeout" and parts["sleepy"]["rc"] == 124
    assert parts["stubborn"]["status"] == "timeout" and parts["stubborn"]["rc"] == 137
    assert parts["sleepy"]["seconds"] <= 3 and parts["stubborn"]["seconds"] <= 4
    assert "1s cap" in parts["sleepy"]["reason"]
    assert wall < 25  # the two 30 s sleeps were cut short
    assert parts["next"]["status"] == "ok" and parts["next"]["tail"] == ["next-ran"]
    assert parts["bad"]["status"] == "failed" and parts["bad"]["rc"] == 3
    assert parts["bad"]["reason"] == "exit code 3: boom"
    # A part whose module is missing is not started, and says which module.
    assert parts["needy"]["status"] == "missing" and not (tmp_path / "marker").exists()
    assert "no_such_module_gpu_check" in parts["needy"]["reason"]
    assert "json" not in parts["needy"]["reason"].split("needs ")[1].split(",")[0]
    assert summary["outcome"]["timeout"] == ["sleepy", "stubborn"]
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert "next-ran" in log and "boom" in log


def test_the_overall_budget_clips_caps_and_leaves_later_parts_out(tmp_path):
    summary, wall = run_parts(tmp_path, 'run_part first 60 "" sleep 60; '
                                        'run_part later 60 "" echo never',
                              GPU_CHECK_TOTAL_S="7")
    first, later = summary["parts"]
    assert first["status"] == "timeout" and first["cap_s"] <= 6
    assert later["status"] == "not_run" and "7s budget" in later["reason"]
    assert wall < 20


def test_only_the_selected_parts_run(tmp_path):
    summary, _ = run_parts(tmp_path, 'run_part a 5 "" echo a; run_part b 5 "" touch b_ran',
                           GPU_CHECK_PARTS="a")
    assert [p["status"] for p in summary["parts"]] == ["ok", "not_run"]
    assert not (tmp_path / "b_ran").exists()


def test_a_pytest_part_is_tallied(tmp_path):
    (tmp_path / "test_tiny.py").write_text(
        "import pytest\n\ndef test_one():\n    assert 1 + 1 == 2\n\n"
        "@pytest.mark.skip(reason='shown as skipped')\ndef test_two():\n    pass\n\n"
        "def test_three():\n    assert 2 + 2 == 5\n")
    summary, _ = run_parts(tmp_path, f'run_part tiny 60 "pytest" "{sys.executable}" -m pytest '
                                     '-q -p no:cacheprovider test_tiny.py')
    (part,) = summary["parts"]
    assert part["status"] == "failed" and part["rc"] == 1
    assert part["figures"]["pytest"] == {"failed": 1, "passed": 1, "skipped": 1}


def test_summary_writer_self_test_and_facts():
    proc = subprocess.run([sys.executable, str(SUMMARY), "selftest"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    mod = load_script("gpu_check_summary")
    facts = mod.parse_facts("NVIDIA H200, 580.159.04, 143771, 5\nNVIDIA H200, 580.159.04, "
                            "143771, 7\n", "| NVIDIA-SMI 580.159.04  CUDA Version: 13.0 |")
    assert facts["cuda"] == "13.0" and [g["memory_used_mib"] for g in facts["gpus"]] == [5, 7]
    assert mod.headline("facts", facts).startswith("2 GPU(s): NVIDIA H200, driver 580.159.04")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_timing_figures_reach_the_summary_line():
    # The shape of TriMulEnvironment.evaluate's metrics with re-timing (first run re-timed twice,
    # the second not re-timed); the figures are made up, the arithmetic on them is checked.
    def bench(label, mean, lo, med, hi):
        return {"label": label, "runs": 30, "mean_us": mean, "err_us": 1.0, "min_us": lo,
                "median_us": med, "max_us": hi}
    runs = [{"geomean_us": 90.0, "retimes_us": [110.0, 100.0], "confirmed_us": 105.0,
             "benchmarks": [bench("a", 80.0, 70.0, 79.0, 95.0)]},
            {"geomean_us": 120.0, "benchmarks": [bench("a", 118.0, 100.0, 117.0, 140.0)]}]
    fig = load_script("trimul_time").summarize(runs)
    assert fig["score_us"] == [105.0, 120.0] and fig["first_us"] == [90.0, 120.0]
    assert (fig["min"], fig["median"], fig["max"]) == (90.0, 105.0, 120.0)
    assert fig["benchmarks"]["a"]["mean_us"] == [80.0, 118.0]
    assert (fig["benchmarks"]["a"]["min_us"], fig["benchmarks"]["a"]["max_us"]) == (70.0, 95.0)
    line = load_script("gpu_check_summary").headline(
        "trimul_reference", {"gpu": "NVIDIA H200", "programs": {"reference_kernel": fig}})
    assert line == "reference_kernel 105.0 µs (timings 90.0..120.0) on NVIDIA H200"
