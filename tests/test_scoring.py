"""The Ray scorer pool with the real sandbox: hostile programs are contained and recorded."""

import os
import time

import pytest
import ray

from discover import scoring
from discover.scoring import ScorerPool, ScorersLost, start_ray

GOOD = "import numpy as np\ndef solve(parent, iters, seed):\n    return np.full(20, 0.5)\n"
HOSTILE = {
    "timeout": "def solve(parent, iters, seed):\n    while True:\n        pass\n",
    "memory": ("def solve(parent, iters, seed):\n"
               "    x = bytearray(50 * 1024**3)\n    return [0.5]\n"),
    "fork": ("import os\ndef solve(parent, iters, seed):\n"
             "    while True:\n        try:\n            os.fork()\n"
             "        except OSError:\n            pass\n"),
    "kill_parent": ("import os, signal\ndef solve(parent, iters, seed):\n"
                    "    os.kill(os.getppid(), signal.SIGKILL)\n    return [0.5]\n"),
    "write_outside": ("def solve(parent, iters, seed):\n"
                      "    open('/tmp/discover_escape_marker', 'w').write('x')\n"
                      "    open('/root/discover_escape_marker', 'w').write('x')\n"
                      "    return [0.5]\n"),
}


@pytest.fixture(scope="module")
def pool():
    start_ray(num_cpus=2)
    p = ScorerPool("erdos", {"time_budget_s": 2.0}, slots=2)
    yield p
    p.shutdown()
    ray.shutdown()


def test_pool_uses_the_slots(pool):
    assert pool.size == 2


def test_hostile_programs_are_recorded_and_the_pool_survives(pool):
    for path in ("/tmp/discover_escape_marker", "/root/discover_escape_marker"):
        if os.path.exists(path):
            os.remove(path)
    jobs = [(code, None, i) for i, code in enumerate(HOSTILE.values())] + [(GOOD, None, 99)]
    results = pool.evaluate(jobs)
    kinds = dict(zip(HOSTILE, (ev.failure for ev, _ in results[:-1]), strict=True))
    assert kinds["timeout"] == "timeout"
    assert kinds["memory"] == "memory"
    assert kinds["fork"] in ("timeout", "crash")
    assert all(not ev.ok for ev, _ in results[:-1] if ev.failure)
    assert not os.path.exists("/root/discover_escape_marker")
    good, secs = results[-1]
    assert good.ok and abs(good.score - 0.5) < 1e-12 and secs > 0
    # the pool still works after all of that
    again = pool.evaluate([(GOOD, None, 1)])
    assert again[0][0].ok


def test_results_keep_job_order(pool):
    codes = [f"import numpy as np\ndef solve(parent, iters, seed):\n"
             f"    return np.r_[np.full({n}, 0.5)]\n" for n in (4, 10, 30, 6)]
    res = pool.evaluate([(c, None, 0) for c in codes])
    assert [ev.metrics.get("n") for ev, _ in res] == [4, 10, 30, 6]


def test_a_stream_starts_jobs_as_they_are_added(pool):
    """Jobs run while the caller does something else (the sampler, in a step): each has
    finished before `results` is asked; results come back by key, whatever the order."""
    stream = pool.stream()
    codes = {f"n{n}": f"import numpy as np\ndef solve(parent, iters, seed):\n"
                      f"    return np.full({n}, 0.5)\n" for n in (3, 7, 5)}
    for key, code in codes.items():
        stream.add(key, (code, None, 0))
    assert len(stream.running) == 2 and len(stream.queue) == 1  # two scorers, both busy
    ready, _ = ray.wait(list(stream.running), num_returns=2, timeout=120)
    assert len(ready) == 2  # the first two ran without `results` being called
    stream.add("bad", ("def solve(:", None, 0))  # takes the finished ones in, starts the next
    assert set(stream.done) == {"n3", "n7"} and "n5" in {k for k, _, _ in stream.running.values()}
    res = stream.results()
    assert {k: ev.metrics.get("n") for k, (ev, _) in res.items() if ev.ok} == {
        "n3": 3, "n7": 7, "n5": 5}
    assert not res["bad"][0].ok


SLOW_GOOD = ("import time\nimport numpy as np\ndef solve(parent, iters, seed):\n"
             "    time.sleep(3)\n    return np.full(20, 0.5)\n")


def test_a_scorer_killed_mid_evaluation_costs_only_time(pool):
    """A scorer's process killed while it runs a program (as a lost node would): the job goes
    to a live scorer and the candidate gets the score its program earns, not a crash."""
    stream = pool.stream()
    stream.add("slow", (SLOW_GOOD, None, 1))
    [(ref, (key, actor, _))] = stream.running.items()
    time.sleep(1.0)  # inside the evaluation
    ray.kill(actor, no_restart=False)  # the process dies; Ray restarts the actor
    ev, _ = stream.results()["slow"]
    assert ev.ok and ev.failure is None and abs(ev.score - 0.5) < 1e-12, ev.log
    assert ev.metrics["scorer_losses"] == 1
    assert pool.evaluate([(GOOD, None, 2)])[0][0].ok  # the pool works on


def test_a_program_that_outlives_every_scorer_is_stored_as_its_crash(pool, monkeypatch):
    """Past SCORER_LOSSES the job is the program's failure (it took every scorer down)."""
    monkeypatch.setattr(scoring, "SCORER_LOSSES", 2)
    stream = pool.stream()
    stream.add("k", (SLOW_GOOD, None, 3))
    for _ in range(2):
        deadline = time.monotonic() + 60
        while not stream.running and time.monotonic() < deadline:
            stream._start()
            time.sleep(0.05)
        [(_, (_, actor, _))] = stream.running.items()
        time.sleep(1.0)
        ray.kill(actor, no_restart=False)
        ready, _ = ray.wait(list(stream.running), timeout=60)
        assert ready
        stream._collect(block=False)
    ev, _ = stream.results()["k"]
    assert not ev.ok and ev.failure == "crash" and "scorer failed 2 times" in ev.log


def test_no_scorer_answering_stops_the_step_with_a_clear_error(tmp_path):
    """No scorer can run the job within the wait limit (here its actor cannot be placed: the
    module's pool holds both CPUs, as when a cluster's nodes are gone): ScorersLost, which
    search.run turns into a stop with the resume command."""
    p = ScorerPool("erdos", {"time_budget_s": 30.0}, slots=1, wait_s=2.0)
    try:
        with pytest.raises(ScorersLost, match="no scorer finished a job in 2 s"):
            p.evaluate([(SLOW_GOOD.replace("sleep(3)", "sleep(20)"), None, 4)])
    finally:
        p.shutdown()
