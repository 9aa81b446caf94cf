"""The HTTP backend against stub providers: a real HTTP server in the test process that answers
as a given provider does (no `n`, no logprobs, a refused `temperature`, reasoning fields, 429 with
Retry-After, a server that trickles, a refused prefill, an API key). A real OpenAI-compatible
server (`vllm serve`) covers the ordinary path in test_vllm.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import openai_stub
import pytest

from discover.backends.base import prompt_seed
from discover.backends.openai import EndpointError, OpenAIPolicy


@pytest.fixture
def server():
    srv = openai_stub.start()
    yield srv
    openai_stub.stop(srv)


def ask(policy, prompts=("alpha",), n=2, **kw):
    return policy.sample(list(prompts), n, max_new_tokens=kw.pop("max_new_tokens", 32),
                         temperature=kw.pop("temperature", 1.0), seed=kw.pop("seed", 5), **kw)


def test_an_ordinary_provider_serves_n_logprobs_seeds_and_usage(server):
    policy = OpenAIPolicy(server.base_url, "tiny", api_key="k123")
    groups = ask(policy, ["alpha", "beta"], 2, temperature=0.7)
    s0, s1 = prompt_seed(5, 0), prompt_seed(5, 1)
    assert [[s.text for s in g] for g in groups] == [[f"s{s0} c0 ok", f"s{s0} c1 ok"],
                                                     [f"s{s1} c0 ok", f"s{s1} c1 ok"]]
    assert all(s.logprobs == [-0.5, -1.0, -1.5] and s.version == 0 for g in groups for s in g)
    stats = policy.last_stats
    assert (stats["requests"], stats["retries"], stats["tokens"], stats["prompt_tokens"]) == (
        2, 0, 12, 10)
    by_prompt = {r["body"]["messages"][-1]["content"]: r for r in server.requests}
    req = by_prompt["alpha"]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer k123"
    assert req["body"]["messages"] == [{"role": "user", "content": "alpha"}]
    assert {k: req["body"][k] for k in ("model", "n", "temperature", "max_tokens", "seed",
                                        "logprobs")} == {
        "model": "tiny", "n": 2, "temperature": 0.7, "max_tokens": 32, "seed": s0,
        "logprobs": True}


def test_a_provider_that_ignores_n_gets_one_request_per_completion(server, capsys):
    server.provider.n = False
    policy = OpenAIPolicy(server.base_url, "tiny")
    [group] = ask(policy, n=3, seed=0)
    s = prompt_seed(0, 0)
    assert sorted(x.text for x in group) == [f"s{s} c0 ok", f"s{s + 1} c0 ok", f"s{s + 2} c0 ok"]
    assert [r["body"].get("n") for r in server.requests] == [3, None, None]
    ask(policy, n=3, seed=0)  # now it asks singly from the start, and says so only once
    assert [r["body"].get("n") for r in server.requests[3:]] == [None] * 3
    assert capsys.readouterr().err.count("`n`") == 1


def test_a_provider_that_refuses_n_gets_one_request_per_completion(server, capsys):
    server.provider.n_refused = True
    policy = OpenAIPolicy(server.base_url, "tiny")
    groups = ask(policy, ["alpha", "beta"], n=2)
    assert [len(g) for g in groups] == [2, 2] and len({s.text for g in groups for s in g}) == 4
    assert "does not take `n`" in capsys.readouterr().err
    assert policy.last_stats["refused"] == ["n"]


def test_a_provider_without_logprobs_gives_samples_without_them(server, capsys):
    server.provider.logprobs = False
    [group] = ask(OpenAIPolicy(server.base_url, "tiny"))
    assert all(s.text and s.logprobs == [] for s in group)  # none offered, none invented
    server.provider.logprobs_refused = True  # one that refuses the parameter outright
    policy = OpenAIPolicy(server.base_url, "tiny")
    [group] = ask(policy)
    assert all(s.text and s.logprobs == [] for s in group)
    assert "logprobs" not in server.requests[-1]["body"]
    assert "refuses `logprobs`" in capsys.readouterr().err


def test_a_model_that_refuses_temperature_is_sampled_without_it_and_told_once(server, capsys):
    server.provider.temperature_refused = True
    policy = OpenAIPolicy(server.base_url, "o-reasoner")
    for _ in range(2):
        [group] = ask(policy, temperature=0.7)
        assert len(group) == 2
    assert "temperature" not in server.requests[-1]["body"]
    err = capsys.readouterr().err
    assert err.count("refuses `temperature`") == 1 and "own temperature" in err
    assert policy.last_stats["refused"] == ["temperature"]


def test_max_tokens_becomes_max_completion_tokens_where_the_model_wants_it(server):
    server.provider.max_tokens_refused = True
    [group] = ask(OpenAIPolicy(server.base_url, "o-reasoner"), max_new_tokens=40)
    body = server.requests[-1]["body"]
    assert len(group) == 2 and "max_tokens" not in body and body["max_completion_tokens"] == 40


def test_reasoning_beside_the_content_stays_out_of_the_text(server):
    server.provider.reasoning, server.provider.content = True, openai_stub.CODE
    policy = OpenAIPolicy(server.base_url, "r1")
    [group] = ask(policy)
    assert all(s.text == openai_stub.CODE for s in group)  # the program, not the thinking
    assert policy.last_stats["reasoning_tokens"] == 7
    assert policy.last_stats["completion_tokens"] == 13


def test_429_waits_as_retry_after_says(server):
    server.provider.statuses = [(429, {"Retry-After": "1"})]
    policy = OpenAIPolicy(server.base_url, "tiny", max_retries=2)
    [group] = ask(policy)
    assert len(group) == 2 and policy.last_stats["retries"] == 1
    first, second = server.requests[0]["time"], server.requests[1]["time"]
    assert second - first >= 1.0  # it waited what the server asked, not its own backoff
    server.provider.statuses = [(429, {"Retry-After": "3600"})]  # beyond what we wait for
    with pytest.raises(EndpointError, match="HTTP 429"):
        ask(policy)


def test_each_request_has_a_hard_deadline_even_if_bytes_keep_coming(server):
    server.provider.trickle_s = 30
    policy = OpenAIPolicy(server.base_url, "tiny", timeout_s=1, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="no answer within 1 s"):
        ask(policy)
    assert time.monotonic() - t0 < 10  # the deadline, not the 30 s the server would take


def test_the_prefill_is_a_trailing_assistant_message_continued_in_place(server):
    policy = OpenAIPolicy(server.base_url, "tiny")
    [group] = ask(policy, prefill="```python\n")
    body = server.requests[-1]["body"]
    assert body["messages"][-1] == {"role": "assistant", "content": "```python\n"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert all(s.prefill == "```python\n" and s.response.startswith("```python\n")
               for s in group)
    a, b = ask(policy, ["alpha", "beta"], prefill=["```python\n", ""])  # one per prompt
    sent = {r["body"]["messages"][0]["content"]: r["body"] for r in server.requests[-2:]}
    assert sent["alpha"]["messages"][-1]["role"] == "assistant"
    assert sent["beta"]["messages"] == [{"role": "user", "content": "beta"}]
    assert [s.prefill for s in a] == ["```python\n"] * 2 and [s.prefill for s in b] == [""] * 2


def test_the_stop_text_is_sent_with_the_prefill_only_and_dropped_where_refused(server, capsys):
    """The closing fence ends an answer whose block the prefill opened; without the prefill the
    answer opens its own fence, so no stop is sent; a model that refuses `stop` goes without."""
    policy = OpenAIPolicy(server.base_url, "tiny")
    ask(policy, ["alpha", "beta"], prefill=["```python\n", ""], stop=("```",))
    sent = {r["body"]["messages"][0]["content"]: r["body"] for r in server.requests[-2:]}
    assert sent["alpha"]["stop"] == ["```"] and "stop" not in sent["beta"]
    server.provider.stop_refused = True
    [group] = ask(policy, prefill="```python\n", stop=("```",))
    assert len(group) == 2 and "stop" not in server.requests[-1]["body"]
    assert "refuses `stop`" in capsys.readouterr().err


def test_a_server_that_refuses_the_prefill_samples_without_it(server, capsys):
    server.provider.prefill = "refuse"
    policy = OpenAIPolicy(server.base_url, "tiny")
    [group] = ask(policy, prefill="```python\n", stop=("```",))
    body = server.requests[-1]["body"]
    assert body["messages"] == [{"role": "user", "content": "alpha"}]
    assert "continue_final_message" not in body and "stop" not in body
    assert all(s.prefill == "" and s.response == s.text for s in group)
    assert "without the prefill" in capsys.readouterr().err


def test_errors_name_the_endpoint_and_the_problem(server):
    server.provider.statuses = [(500, {})]
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1:\d+/v1.*HTTP 500"):
        ask(OpenAIPolicy(server.base_url, "tiny", max_retries=0))
    server.provider.statuses = [(503, {})]
    policy = OpenAIPolicy(server.base_url, "tiny", max_retries=1)
    assert len(ask(policy)[0]) == 2 and policy.last_stats["retries"] == 1
    server.provider.key = "right"
    with pytest.raises(EndpointError, match="HTTP 401.*API key"):
        ask(OpenAIPolicy(server.base_url, "tiny", api_key="wrong"))
    with socket.socket() as sock:  # a port nothing listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(EndpointError, match=f"127.0.0.1:{port}.*server up"):
        ask(OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "tiny", max_retries=0, timeout_s=5))
    with pytest.raises(ValueError, match="http"):
        OpenAIPolicy("localhost:8000/v1", "tiny")


@pytest.mark.slow
def test_a_run_reads_the_api_key_from_the_environment_and_never_writes_it(server, tmp_path):
    secret = "sk-discover-test-0123456789"
    server.provider.key, server.provider.content = secret, openai_stub.CODE
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "discover.cli", "run", "toy", "--backend", "openai",
           "--base-url", server.base_url, "--model", "tiny", "--steps", "2", "--groups", "1",
           "--group-size", "2", "--run-dir", str(run_dir), "--set",
           "policy.api_key_env=DISCOVER_TEST_KEY", "--set", "ray.scorer_slots=1"]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    wrong = subprocess.run([*cmd[:-6], "--run-dir", str(tmp_path / "wrong")],
                           capture_output=True, text=True, timeout=300,
                           env={**env, "OPENAI_API_KEY": "sk-wrong"})
    assert wrong.returncode != 0
    assert "discover: error:" in wrong.stderr and "HTTP 401" in wrong.stderr
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**env, "DISCOVER_TEST_KEY": secret})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(r["auth"] == f"Bearer {secret}" for r in server.requests[1:])
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(m["total"] == 2 and "no_code" not in m["failures"] for m in lines)  # all scored
    assert all(m["usage"]["requests"] == 1 and m["usage"]["completion_tokens"] == 6
               and m["tokens"] == 6 for m in lines)
    assert 'api_key_env = "DISCOVER_TEST_KEY"' in (run_dir / "config.toml").read_text()
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
