"""TriMul: the reference against an independent einsum formulation, the seeded generator, the
configuration lists, the output check, and the harness in the real sandbox (correctness mode on
CPU; the CUDA timing path where a CUDA device exists)."""

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

from discover.cli import main as cli_main
from discover.environment import InvalidArtifact, Parent
from discover.prompt import render
from discover.registry import load_environment
from environments.trimul import (
    BENCHMARKS,
    TESTS,
    TriMulEnvironment,
    check_output,
    generate_input,
    program_source,
    recheck_set,
    reduced,
    reference_kernel,
    runner,
)
from environments.trimul import env as env_module
from environments.trimul.reference import WEIGHT_NAMES

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device: the timing harness uses "
                                                 "CUDA events and timed mode refuses to start "
                                                 "without one")
on_cpu_only = pytest.mark.skipif(CUDA, reason="checks the refusal of timed mode without CUDA")
HAVE_TRITON = importlib.util.find_spec("triton") is not None


def einsum_trimul(x, mask, w):
    """The operator written out independently: float64, LayerNorm by hand, einsum everywhere."""
    x, mask = x.double(), mask.double()
    w = {k: v.double() for k, v in w.items()}

    def layer_norm(t, gain, bias):
        mean = t.mean(-1, keepdim=True)
        var = ((t - mean) ** 2).mean(-1, keepdim=True)
        return (t - mean) / torch.sqrt(var + 1e-5) * gain + bias

    xn = layer_norm(x, w["norm.weight"], w["norm.bias"])

    def proj(name):
        return torch.einsum("bijc,hc->bijh", xn, w[name])

    m = mask[..., None]
    left = proj("left_proj.weight") * m * torch.sigmoid(proj("left_gate.weight"))
    right = proj("right_proj.weight") * m * torch.sigmoid(proj("right_gate.weight"))
    out = torch.einsum("bikh,bjkh->bijh", left, right)
    out = layer_norm(out, w["to_out_norm.weight"], w["to_out_norm.bias"])
    return torch.einsum("bijh,ch->bijc", out * torch.sigmoid(proj("out_gate.weight")),
                        w["to_out.weight"])


# --- the reference, the generator, the configurations, the check ----------------------------

@pytest.mark.parametrize("n,b,c,masked,dist", [(8, 1, 128, False, "normal"),
                                               (12, 2, 256, True, "cauchy"),
                                               (16, 1, 384, True, "normal")])
def test_reference_matches_an_independent_einsum(n, b, c, masked, dist):
    x, mask, w, config = generate_input(n, b, c, masked, dist, seed=5)
    y = reference_kernel((x, mask, w, config))
    assert y.shape == (b, n, n, c) and y.dtype == torch.float32
    expected = einsum_trimul(x, mask, w)
    torch.testing.assert_close(y.double(), expected, rtol=1e-4, atol=1e-4)


def test_generator_is_seeded():
    a = generate_input(16, 2, 128, True, "cauchy", seed=11)
    b = generate_input(16, 2, 128, True, "cauchy", seed=11)
    c = generate_input(16, 2, 128, True, "cauchy", seed=12)
    for t, u in zip((a[0], a[1], *a[2].values()), (b[0], b[1], *b[2].values()), strict=True):
        assert torch.equal(t, u)
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[2]["to_out.weight"],
                                                           c[2]["to_out.weight"])
    x, mask, w, config = a
    assert x.shape == (2, 16, 16, 128) and mask.shape == (2, 16, 16)
    assert x.dtype == mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert x.abs().max() > 100  # Cauchy(0, 2): heavy tails
    assert tuple(w) == WEIGHT_NAMES and config == {"dim": 128, "hidden_dim": 128}
    assert w["left_proj.weight"].shape == (128, 128) and w["to_out.weight"].shape == (128, 128)
    ones = generate_input(8, 1, 128, False, "normal", seed=1)[1]
    assert torch.equal(ones, torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="dist"):
        generate_input(8, 1, 128, False, "uniform", seed=1)


def test_configuration_lists():
    assert len(TESTS) == 18 and len(BENCHMARKS) == 7
    assert [(s.n, s.b, s.c, s.masked, s.dist) for s in BENCHMARKS] == [
        (256, 2, 128, False, "normal"), (768, 1, 128, False, "cauchy"),
        (256, 2, 384, True, "normal"), (512, 1, 128, False, "normal"),
        (1024, 1, 128, False, "cauchy"), (768, 1, 384, True, "normal"),
        (1024, 1, 384, False, "normal")]
    assert {s.n for s in TESTS} == {32, 64, 128, 256, 768, 1024}
    assert {s.b for s in TESTS} == {1, 2} and {s.c for s in TESTS} == {128, 256, 384, 768}
    assert {(s.masked, s.dist) for s in TESTS} == {(m, d) for m in (False, True)
                                                   for d in ("normal", "cauchy")}
    small = reduced(TESTS, 32)
    assert max(s.n for s in small) == 32 and [s.c for s in small] == [s.c for s in TESTS]
    chosen = recheck_set(small, 4 << 20)
    assert chosen and sum(small[i].output_bytes for i in chosen) <= 4 << 20
    smallest = min(s.output_bytes for s in small)
    assert all(small[i].output_bytes == smallest for i in chosen[:1])


def test_check_output_names_each_problem():
    ref = torch.tensor([[1.0, -2.0, float("nan"), float("inf")]])
    assert check_output(ref.clone(), ref) is None
    assert check_output(ref + 0.019, ref) is None  # within 0.02 + 0.02 |ref| (inf + x = inf)
    cases = [
        ([1.0, -2.0], "invalid_output", "returned list"),
        (ref[0], "invalid_output", "shape (4,)"),
        (ref.double(), "invalid_output", "dtype torch.float64"),
        (ref + torch.tensor([0.0, 0.1, 0.0, 0.0]), "invalid_artifact", "1 of 4 elements"),
        (torch.tensor([[1.0, -2.0, 0.0, float("inf")]]), "invalid_artifact", "1 of 4"),
        (torch.tensor([[1.0, -2.0, float("nan"), -float("inf")]]), "invalid_artifact", "1 of 4"),
    ]
    for out, kind, message in cases:
        bad = check_output(out, ref)
        assert bad is not None and bad[0] == kind and message in bad[1], (out, bad)


def test_stopping_rule_of_the_harness():
    rules = {"min_repeats": 3, "max_repeats": 10, "rel_err": 1e-3, "max_kernel_s": 1.0,
             "max_wall_s": 60.0}
    assert not runner.enough([100.0, 100.0], rules, 0.1)  # too few repeats
    assert runner.enough([100.0, 100.0, 100.0], rules, 0.1)  # no spread: error 0
    noisy = [100.0, 150.0, 90.0]
    assert not runner.enough(noisy, rules, 0.1)
    assert runner.enough(noisy, rules, 61.0)  # wall-clock cap
    assert runner.enough(noisy * 4, rules, 0.1)  # max_repeats
    assert runner.enough([4e5, 5e5, 7e5], rules, 0.1)  # 1.6 s of measured time > max_kernel_s


# --- the environment: options, prompt, jobs, driver-side statistics -------------------------

@pytest.fixture(scope="module")
def env():
    return TriMulEnvironment(mode="correctness", max_n=16, wall_s=60)


@pytest.fixture(scope="module")
def reference_eval(env):
    return env.evaluate(program_source("reference_kernel"), None, seed=3)


def test_registered_and_options():
    assert isinstance(load_environment("trimul", mode="correctness"), TriMulEnvironment)
    with pytest.raises(ValueError, match="unknown option"):
        TriMulEnvironment(mode="correctness", bogus=1)
    with pytest.raises(ValueError, match="mode must be one of"):
        TriMulEnvironment(mode="fast")
    with pytest.raises(ValueError, match="max_repeats >= min_repeats"):
        TriMulEnvironment(mode="correctness", min_repeats=5, max_repeats=3)
    with pytest.raises(ValueError, match="wall_s"):
        TriMulEnvironment(mode="correctness", wall_s=0)
    d = TriMulEnvironment.describe()
    assert d["name"] == "trimul" and "times unavailable" in d["modes"]
    assert d["records_us"]["TTT-Discover, H100"] == 1161.0


@on_cpu_only
def test_timed_mode_is_refused_without_cuda(tmp_path, capsys):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        TriMulEnvironment(mode="timed")
    env_module._told.clear()
    auto = TriMulEnvironment()
    assert "runs in correctness mode" in capsys.readouterr().err
    assert auto.mode == "correctness" and auto.direction == "max" and auto.gpus == 0.0
    run_dir = tmp_path / "run"
    rc = cli_main(["run", "trimul", "--set", "env.mode=timed", "--steps", "1",
                   "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("discover: error:")
    assert "mode 'timed' needs a CUDA device" in err
    assert not run_dir.exists()


def test_jobs_mix_the_run_seed_into_every_configuration(env):
    a, b, c = env.job(1), env.job(1), env.job(2)
    assert [t["seed"] for t in a["tests"]] == [t["seed"] for t in b["tests"]]
    assert all(x["seed"] != y["seed"] for x, y in zip(a["tests"], c["tests"], strict=True))
    assert a["nonce"] != b["nonce"]  # a program cannot reuse one run's result file in another
    assert len(a["tests"]) == 25 and max(t["n"] for t in a["tests"]) == 16
    assert a["benchmarks"] == [] and a["device"] == "cpu"
    assert a["env"]["TRITON_INTERPRET"] == "1" and a["save"]


def test_statistics_and_score_are_recomputed_by_the_driver(env):
    job = {"benchmarks": [{"label": "one"}, {"label": "two"}]}
    result = {"benchmarks": [{"label": "one", "times_us": [100.0, 110.0, 90.0]},
                             {"label": "two", "times_us": [400.0, 400.0, 400.0, 400.0]}]}
    m = env.score_timings(job, result)
    assert m["geomean_us"] == pytest.approx(math.sqrt(100.0 * 400.0))
    one = m["benchmarks"][0]
    assert one["runs"] == 3 and one["mean_us"] == pytest.approx(100.0)
    assert one["err_us"] == pytest.approx(10.0 / math.sqrt(3))
    assert (one["min_us"], one["median_us"], one["max_us"]) == (90.0, 100.0, 110.0)
    for times in ([100.0, -1.0, 100.0], [100.0, float("nan"), 1.0], [100.0], "fast"):
        bad = {"benchmarks": [{"label": "one", "times_us": times}, result["benchmarks"][1]]}
        with pytest.raises(InvalidArtifact, match="timings"):
            env.score_timings(job, bad)
    with pytest.raises(InvalidArtifact, match="every benchmark"):
        env.score_timings(job, {"benchmarks": result["benchmarks"][:1]})


def test_initial_state_and_prompt(env, tmp_path):
    [art] = env.initial_artifacts(4, seed=7)
    assert art == {"program": program_source("reference_kernel"), "seed": 7}
    text = render(env, Parent(code=None, artifact=art, score=1.0, parent_score=None,
                                    stdout="all 25 configurations pass"))
    assert "custom_kernel(data)" in text and "def custom_kernel" in text
    assert "checks correctness only" in text and "none -> pass" in text
    assert "all 25 configurations pass" in text
    assert env.starter_program() == env.program_of(art) == program_source("reference_kernel")
    assert "Target to beat" not in text  # correctness mode has no time to beat
    f = tmp_path / "k.py"
    f.write_text("def custom_kernel(data):\n    return data[0]\n")
    assert env.load_artifact(f) == {"program": f.read_text(), "seed": 0}
    (tmp_path / "bad.json").write_text('{"seed": 1}')
    with pytest.raises(InvalidArtifact, match="program"):
        env.load_artifact(tmp_path / "bad.json")
    assert env.verify([1, 2]).failure == "invalid_artifact"


# --- candidates in the sandbox (correctness mode) -------------------------------------------

EINSUM_KERNEL = '''
import torch

def layer_norm(t, gain, bias):
    mean = t.mean(-1, keepdim=True)
    var = t.var(-1, unbiased=False, keepdim=True)
    return (t - mean) * torch.rsqrt(var + 1e-5) * gain + bias

def custom_kernel(data):
    x, mask, w, config = data
    h = config["hidden_dim"]
    xn = layer_norm(x, w["norm.weight"], w["norm.bias"])
    names = ("left_proj", "left_gate", "right_proj", "right_gate", "out_gate")
    fused = torch.cat([w[n + ".weight"] for n in names])  # one projection for all five
    lp, lg, rp, rg, og = torch.einsum("bijc,hc->bijh", xn, fused).split(h, dim=-1)
    m = mask[..., None]
    left, right = lp * m * lg.sigmoid(), rp * m * rg.sigmoid()
    out = torch.einsum("bikd,bjkd->bijd", left, right)
    out = layer_norm(out, w["to_out_norm.weight"], w["to_out_norm.bias"]) * og.sigmoid()
    return torch.einsum("bijh,ch->bijc", out, w["to_out.weight"])
'''


def test_reference_program_passes(env, reference_eval):
    ev = reference_eval
    assert ev.ok, ev.log
    assert ev.score == 1.0 and ev.reward == 1.0 and env.direction == "max"
    assert "times unavailable" in ev.log and ev.metrics["tests_passed"] == 25
    assert ev.metrics["times"].startswith("unavailable") and ev.metrics["device"] == "cpu"
    assert ev.artifact == {"program": program_source("reference_kernel"), "seed": 3}
    again = env.verify(ev.artifact)
    assert again.ok and again.score == 1.0


def test_correct_alternative_kernels_pass(env):
    for program in (EINSUM_KERNEL, program_source("compiled")):
        ev = env.evaluate(program, None, seed=4)
        assert ev.ok, ev.log


WRONG = {
    # "incoming" instead of "outgoing": sums over the first index
    "incoming": EINSUM_KERNEL.replace('"bikd,bjkd->bijd"', '"bkid,bkjd->bijd"'),
    "no mask": EINSUM_KERNEL.replace("m = mask[..., None]", "m = 1.0"),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_kernels_fail_with_the_configuration_named(env, name):
    ev = env.evaluate(WRONG[name], None, seed=4)
    assert not ev.ok and ev.failure == "invalid_artifact", ev.log
    assert "elements differ beyond 0.02 + 0.02 * |ref|" in ev.log and "expected" in ev.log
    first_bad = "N=16 B=1 C=128 no-mask normal" if name == "incoming" else \
        "N=16 B=1 C=128 mask normal"
    assert ev.log.startswith(first_bad), ev.log
    assert ev.reward == env.failure_reward == 0.0


BAD = {
    "shape": ("def custom_kernel(data):\n    return data[0][..., :3]\n", "invalid_output",
              "output shape (1, 16, 16, 3), expected (1, 16, 16, 128)"),
    "dtype": ("from reference import reference_kernel\n"
              "def custom_kernel(data):\n    return reference_kernel(data).double()\n",
              "invalid_output", "dtype torch.float64"),
    "tuple": ("def custom_kernel(data):\n    return (data[0],)\n", "invalid_output",
              "returned tuple"),
    "syntax": ("def custom_kernel(data)\n    return 1\n", "syntax_error", "SyntaxError"),
    "missing": ("def kernel(data):\n    return data[0]\n", "crash", "no function custom_kernel"),
    "raises": ("def custom_kernel(data):\n    raise RuntimeError('boom')\n", "crash", "boom"),
    "cuda": ("def custom_kernel(data):\n    return data[0].cuda()\n", "crash",
             "use the input's device"),
    "huge torch allocation": ("import torch\ndef custom_kernel(data):\n"
                              "    return torch.empty(1 << 40, dtype=torch.uint8)\n",
                              "memory", "allocate"),
    "memory bomb": ("def custom_kernel(data):\n    keep = bytearray(1 << 36)"
                    "\n    return keep\n", "memory", "MemoryError"),
    "forged result": ("import json, os\ntry:\n    nonce = json.load(open('job.json'))['nonce']\n"
                      "except OSError:\n    nonce = 'guess'\n"
                      "json.dump({'nonce': nonce, 'status': 'ok', 'tests': [], 'benchmarks': []},"
                      " open('result.json', 'w'))\nos._exit(0)\n", "crash",
                      "ended the harness before it reported"),
    # Both the harness's reference and the kernel see the patched LayerNorm, so the check inside
    # the sandbox passes; the driver's own reference does not.
    "tampered reference": ("import torch.nn.functional as F\n"
                           "F.layer_norm = lambda x, shape, weight=None, bias=None, eps=0: x\n"
                           "from reference import reference_kernel as custom_kernel\n",
                           "invalid_artifact", "driver re-check"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_and_hostile_programs(env, name):
    program, kind, message = BAD[name]
    ev = env.evaluate(program, None, seed=5)
    assert not ev.ok and ev.failure == kind and message in ev.log, ev.log


def test_endless_kernel_times_out():
    env = TriMulEnvironment(mode="correctness", max_n=16, wall_s=8)
    ev = env.evaluate("def custom_kernel(data):\n    while True:\n        pass\n", None, seed=0)
    assert ev.failure == "timeout" and "wall_s=8" in ev.log, ev.log
    assert ev.metrics["wall_s"] < 8 + 5


TRITON_KERNEL = EINSUM_KERNEL.replace("import torch\n", '''import torch
import triton
import triton.language as tl

@triton.jit
def gate_kernel(p, g, m, out, n, H: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < n
    gate = tl.sigmoid(tl.load(g + i, mask=ok))
    v = tl.load(p + i, mask=ok) * tl.load(m + i // H, mask=ok) * gate
    tl.store(out + i, v, mask=ok)

def gated(p, g, mask):
    p, g, mask = p.contiguous(), g.contiguous(), mask.contiguous()
    out = torch.empty_like(p)
    n = p.numel()
    gate_kernel[(triton.cdiv(n, 1024),)](p, g, mask, out, n, H=p.shape[-1], BLOCK=1024)
    return out
''', 1).replace("left, right = lp * m * lg.sigmoid(), rp * m * rg.sigmoid()",
                "left, right = gated(lp, lg, mask), gated(rp, rg, mask)")


def test_triton_kernels_run_through_the_interpreter_or_say_why_not(env):
    ev = env.evaluate(TRITON_KERNEL, None, seed=6)
    if HAVE_TRITON:
        assert ev.ok, ev.log
    else:
        assert ev.failure == "crash" and "triton is not installed" in ev.log, ev.log


# The benchmark loop of the harness, run on CPU with its wall-clock stand-in for CUDA events
# (the environment itself times nothing on CPU; this checks the loop and the driver's reading).

def timing_job(env, repeats):
    job = env.job(seed=0)
    job["tests"], job["save"] = job["tests"][:1], []
    job["benchmarks"] = [{**s.as_dict(), "seed": 100 + i}
                         for i, s in enumerate(reduced(BENCHMARKS[:2], 8))]
    job["timing"] = {**env.timing, "min_repeats": 3, "max_repeats": repeats}
    return job


def test_benchmark_loop_reports_raw_timings_the_driver_scores(env):
    job = timing_job(env, repeats=4)
    res, result = env.execute(program_source("reference_kernel"), job)
    assert result is not None and result["status"] == "ok", res.stderr[-2000:]
    m = env.score_timings(job, result)
    assert [r["label"] for r in m["benchmarks"]] == [b["label"] for b in job["benchmarks"]]
    assert all(3 <= r["runs"] <= 4 and r["min_us"] > 0 for r in m["benchmarks"])
    means = [r["mean_us"] for r in m["benchmarks"]]
    assert m["geomean_us"] == pytest.approx(math.sqrt(means[0] * means[1]))


def test_every_timed_repeat_is_checked(env):
    """Right for the warm-up calls, wrong from the first timed repeat on: caught there."""
    program = program_source("reference_kernel").replace(
        "def custom_kernel(data):", "calls = [0]\n\ndef custom_kernel(data):\n"
        "    calls[0] += 1\n    if calls[0] > 1 + 2:  # the correctness test and 2 warm-ups\n"
        "        return torch.zeros_like(data[0])")
    job = timing_job(env, repeats=4)
    res, result = env.execute(program, job)
    assert result is not None and result["status"] == "invalid_artifact", res.stderr[-2000:]
    assert "repeat 1, benchmark 1 of 2" in result["message"]


# --- the CUDA timing path (only where a CUDA device exists) ---------------------------------

@pytest.fixture(scope="module")
def timed_env():
    return TriMulEnvironment(mode="timed", retimes=1, max_repeats=5, max_kernel_s=2.0,
                             max_bench_wall_s=20.0)


@needs_cuda
@pytest.mark.gpu
def test_timed_reference_is_timed_and_re_timed(timed_env):
    ev = timed_env.evaluate(program_source("reference_kernel"), None, seed=0)
    assert ev.ok, ev.log
    rows = ev.metrics["benchmarks"]
    assert [r["label"] for r in rows] == [s.label for s in BENCHMARKS]
    assert all(r["runs"] >= 3 and r["min_us"] > 0 for r in rows)
    first = math.exp(sum(math.log(r["mean_us"]) for r in rows) / len(rows))
    # the first evaluation beats this scorer's best (none yet), so it was re-timed once
    assert ev.metrics["first_us"] == pytest.approx(first)
    assert len(ev.metrics["retimes_us"]) == 1 and ev.score == ev.metrics["confirmed_us"]
    assert timed_env.best_us == ev.score and ev.reward == pytest.approx(-math.log(ev.score))
    assert "µs" in ev.log and ev.metrics["device"] == torch.cuda.get_device_name()


@needs_cuda
@pytest.mark.gpu
def test_timed_mode_fails_a_wrong_kernel(timed_env):
    ev = timed_env.evaluate(WRONG["incoming"], None, seed=0)
    assert ev.failure == "invalid_artifact" and "elements differ" in ev.log, ev.log


@needs_cuda
@pytest.mark.gpu
def test_timed_compiled_kernel_passes(timed_env):
    ev = timed_env.verify({"program": program_source("compiled"), "seed": 1})
    assert ev.ok and ev.score > 0, ev.log


# --- the whole command on CPU ----------------------------------------------------------------

@pytest.mark.slow
def test_discover_run_trimul_in_correctness_mode(tmp_path):
    rd = tmp_path / "run"
    cmd = [sys.executable, "-m", "discover.cli"]
    r = subprocess.run([*cmd, "run", "trimul", "--steps", "1", "--groups", "1",
                        "--group-size", "2", "--max-new-tokens", "48", "--run-dir", str(rd),
                        "--set", "env.mode=correctness", "--set", "env.max_n=16"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    best = subprocess.run([*cmd, "best", str(rd)], capture_output=True, text=True, timeout=60)
    assert best.returncode == 0 and "1.0000000000" in best.stdout, best.stdout
    out = tmp_path / "best"
    exp = subprocess.run([*cmd, "export", str(rd), "--out", str(out)], capture_output=True,
                         text=True, timeout=60)
    assert exp.returncode == 0, exp.stderr
    art = json.loads((out / "artifact.json").read_text())
    assert art["program"] == program_source("reference_kernel")
