"""Sampling backends: the real embedded model (slow) and a real local HTTP server."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from discover.policy_openai import EndpointError, OpenAIPolicy

PROMPTS = ["Say hi.", "Write a Python function that returns the sum of a list of numbers."]
N, NEW = 3, 16


# ---------------------------------------------------------------- transformers backend

def test_draw_follows_the_distribution():
    from discover.policy_hf import draw

    logp = torch.log_softmax(torch.tensor([0.0, 1.0, 2.0, -1.0, -float("inf")]), dim=0)
    rows = logp.expand(8, 5)
    gens = [torch.Generator().manual_seed(s) for s in range(8)]
    counts = sum(torch.bincount(draw(rows, gens), minlength=5) for _ in range(750))
    assert counts[4] == 0  # a token of probability zero is never drawn
    torch.testing.assert_close(counts / counts.sum(), logp.exp(), rtol=0, atol=0.025)
    # Each row's draw depends only on its own generator's seed.
    reseeded = [torch.Generator().manual_seed(s) for s in (7, 0, 1)]
    assert draw(rows[:3], reseeded)[1:].tolist() == draw(rows[:2], [
        torch.Generator().manual_seed(s) for s in (0, 1)]).tolist()


@pytest.fixture(scope="module")
def hf():
    from discover.policy_hf import HFPolicy

    return HFPolicy(model="smollm2", threads=2, batch_size=8)


@pytest.fixture(scope="module")
def groups(hf):
    return hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7)


def texts(groups) -> list[list[str]]:
    return [[s.text for s in g] for g in groups]


@pytest.mark.slow
def test_shapes_template_and_stats(hf, groups):
    assert len(groups) == len(PROMPTS) and all(len(g) == N for g in groups)
    for prompt, group in zip(PROMPTS, groups, strict=True):
        for s in group:
            assert s.prompt_ids and 1 <= len(s.completion_ids) <= NEW
            assert len(s.logprobs) == len(s.completion_ids)
            assert all(lp <= 0 for lp in s.logprobs) and s.version == hf.version == 0
            # The chat template wraps the user text and opens the assistant's turn.
            shown = hf.tokenizer.decode(s.prompt_ids)
            assert prompt in shown and shown.rstrip().endswith("assistant")
            assert s.text == hf.tokenizer.decode(s.completion_ids, skip_special_tokens=True)
            # EOS, if any, is the last token: nothing (no padding) follows it.
            ends = [j for j, t in enumerate(s.completion_ids) if t in hf.eos_ids]
            assert ends in ([], [len(s.completion_ids) - 1])
            assert ends or len(s.completion_ids) == NEW
    assert hf.last_stats["tokens"] == sum(len(s.completion_ids) for g in groups for s in g)
    assert hf.last_stats["seconds"] > 0


@pytest.mark.slow
def test_sampling_logprobs_equal_teacher_forced(hf, groups):
    from discover.policy_hf import sequence_logprobs

    for s in (s for g in groups for s in g):
        with torch.no_grad():
            forced = sequence_logprobs(hf.model, s.prompt_ids, s.completion_ids)
        torch.testing.assert_close(forced, torch.tensor(s.logprobs), rtol=0, atol=1e-3)
    # At another temperature the recorded log-probs are those of the tempered distribution.
    for s in hf.sample(PROMPTS[:1], 2, max_new_tokens=8, temperature=0.6, seed=1)[0]:
        with torch.no_grad():
            forced = sequence_logprobs(hf.model, s.prompt_ids, s.completion_ids, temperature=0.6)
        torch.testing.assert_close(forced, torch.tensor(s.logprobs), rtol=0, atol=1e-3)
    s = groups[1][0]
    lp = sequence_logprobs(hf.model, s.prompt_ids, s.completion_ids)
    assert lp.requires_grad and lp.shape == (len(s.completion_ids),)  # usable by the learner


@pytest.mark.slow
def test_same_seed_same_completions_whatever_the_batch(hf, groups):
    hf.batch_size = 1  # every row alone, unpadded: same draws as in the mixed, padded batch
    try:
        again = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7)
    finally:
        hf.batch_size = 8
    for g1, g2 in zip(groups, again, strict=True):
        for a, b in zip(g1, g2, strict=True):
            assert a.completion_ids == b.completion_ids and a.text == b.text
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-3


@pytest.mark.slow
def test_shared_prefill_samples_what_per_row_prefill_samples(hf, groups):
    """Each prompt prefilled once for its rows gives the completions and log-probs of a prefill
    per row (the earlier sampler: left-padded batches, one cache row per completion), for the
    same seeds; also when a prompt's rows span batches, and streamed to on_sample as they end."""
    assert hf.shared_prefill  # the default: the fixture's groups came from the shared path
    streamed = []
    hf.shared_prefill, hf.batch_size = False, 4
    try:
        per_row = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7)
        hf.shared_prefill = True  # batches of 4 rows: the first prompt's 3 and 1 of the second
        split = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=7,
                          on_sample=lambda i, k, s: streamed.append((i, k, s)))
    finally:
        hf.shared_prefill, hf.batch_size = True, 8
    lengths = [len(s.completion_ids) for g in groups for s in g]
    assert min(lengths) < NEW == max(lengths)  # rows that stopped early were dropped mid-batch
    for shared in (groups, split):
        for g1, g2 in zip(shared, per_row, strict=True):
            for a, b in zip(g1, g2, strict=True):
                assert a.completion_ids == b.completion_ids and a.text == b.text
                assert a.prompt_ids == b.prompt_ids
                torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs),
                                           rtol=0, atol=1e-4)
    assert sorted((i, k) for i, k, _ in streamed) == [(i, k) for i in range(2) for k in range(N)]
    assert all(s is split[i][k] for i, k, s in streamed)


@pytest.mark.slow
def test_different_seeds_differ(hf, groups):
    other = hf.sample(PROMPTS, N, max_new_tokens=NEW, temperature=1.0, seed=8)
    assert texts(other) != texts(groups)
    assert len({s.text for s in groups[1]}) > 1  # the n samples of one prompt differ too


@pytest.mark.slow
def test_bad_arguments(hf):
    with pytest.raises(ValueError, match="n >= 1"):
        hf.sample(PROMPTS, 0, max_new_tokens=4, temperature=1.0, seed=0)
    with pytest.raises(ValueError, match="temperature > 0"):
        hf.sample(PROMPTS, 1, max_new_tokens=4, temperature=0.0, seed=0)
    with pytest.raises(TypeError, match="list of strings"):
        hf.sample("one prompt", 1, max_new_tokens=4, temperature=1.0, seed=0)


@pytest.mark.slow
def test_samples_through_a_model_swapped_in_later():
    """The learner replaces policy.model by a PEFT wrapper; sampling must use the new one."""
    from peft import LoraConfig, get_peft_model

    from discover.policy_hf import HFPolicy, sequence_logprobs

    policy = HFPolicy(threads=2)
    before = policy.sample(PROMPTS[:1], 2, max_new_tokens=8, temperature=1.0, seed=3)[0]
    # Random (non-zero) LoRA weights, so the wrapped model really is a different policy.
    policy.model = get_peft_model(policy.model, LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    after = policy.sample(PROMPTS[:1], 2, max_new_tokens=8, temperature=1.0, seed=3)[0]
    assert [s.logprobs for s in after] != [s.logprobs for s in before]
    for s in after:
        with torch.no_grad():
            forced = sequence_logprobs(policy.model, s.prompt_ids, s.completion_ids)
        torch.testing.assert_close(forced, torch.tensor(s.logprobs), rtol=0, atol=1e-3)


# ---------------------------------------------------------------- OpenAI-compatible endpoint

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                             "body": body})
        status = srv.statuses.pop(0) if srv.statuses else 200
        if status != 200:
            self._send(status, {"error": {"message": "the model fell over"}})
            return
        k = min(body["n"], srv.max_choices)
        choices = [{
            "index": i,
            "message": {"role": "assistant", "content": f"s{body['seed']} c{i} ok"},
            "logprobs": ({"content": [{"token": t, "logprob": -0.5 * (j + 1), "bytes": []}
                                      for j, t in enumerate(["s", " c", " ok"])]}
                         if srv.with_logprobs else None),
            "finish_reason": "stop",
        } for i in range(k)]
        self._send(200, {"id": "x", "object": "chat.completion", "choices": choices,
                         "usage": {"prompt_tokens": 5, "completion_tokens": 3 * k}})

    def _send(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.requests, srv.statuses, srv.max_choices, srv.with_logprobs = [], [], 99, True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.base_url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_openai_parses_choices_and_logprobs(server):
    policy = OpenAIPolicy(server.base_url, "tiny", api_key="k123")
    groups = policy.sample(["alpha", "beta"], 2, max_new_tokens=32, temperature=0.7, seed=5)
    assert [[s.text for s in g] for g in groups] == [["s5 c0 ok", "s5 c1 ok"],
                                                     ["s1005 c0 ok", "s1005 c1 ok"]]
    assert all(s.logprobs == [-0.5, -1.0, -1.5] and s.version == 0 for g in groups for s in g)
    assert policy.last_stats["tokens"] == 12
    by_prompt = {r["body"]["messages"][-1]["content"]: r for r in server.requests}
    assert sorted(by_prompt) == ["alpha", "beta"]
    req = by_prompt["alpha"]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer k123"
    assert req["body"]["messages"] == [{"role": "user", "content": "alpha"}]
    assert {k: req["body"][k] for k in ("model", "n", "temperature", "max_tokens", "seed",
                                        "logprobs")} == {
        "model": "tiny", "n": 2, "temperature": 0.7, "max_tokens": 32, "seed": 5,
        "logprobs": True}


def test_openai_repeats_calls_when_server_ignores_n(server):
    server.max_choices, server.with_logprobs = 1, False
    policy = OpenAIPolicy(server.base_url, "tiny", api_key="")
    [group] = policy.sample(["alpha"], 3, max_new_tokens=8, temperature=1.0, seed=0)
    assert [s.text for s in group] == ["s0 c0 ok", "s1 c0 ok", "s2 c0 ok"]  # seed varies
    assert all(s.logprobs == [] for s in group)  # none offered, none invented
    assert [r["body"]["n"] for r in server.requests] == [3, 2, 1]
    assert all(r["auth"] is None for r in server.requests)


def test_openai_http_error_names_url_and_status(server):
    server.statuses = [500]
    policy = OpenAIPolicy(server.base_url, "tiny", max_retries=0)
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1:\d+/v1/chat/completions.*HTTP 500"):
        policy.sample(["alpha"], 1, max_new_tokens=8, temperature=1.0, seed=0)


def test_openai_retries_transient_failures(server):
    server.statuses = [503]
    policy = OpenAIPolicy(server.base_url, "tiny", max_retries=1)
    [[s]] = policy.sample(["alpha"], 1, max_new_tokens=8, temperature=1.0, seed=0)
    assert s.text == "s0 c0 ok" and len(server.requests) == 2


def test_openai_unreachable_server_is_a_clear_error():
    with socket.socket() as sock:  # a port nothing listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "tiny", max_retries=0, timeout_s=5)
    with pytest.raises(EndpointError, match=f"127.0.0.1:{port}.*server up"):
        policy.sample(["alpha"], 1, max_new_tokens=8, temperature=1.0, seed=0)
    with pytest.raises(ValueError, match="http"):
        OpenAIPolicy("localhost:8000/v1", "tiny")
