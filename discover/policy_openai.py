"""Sampling from an OpenAI-compatible HTTP endpoint (/v1/chat/completions); standard library only.

A search without learning, for models one cannot train: the version stays 0. The endpoint returns
text and (when it supports `logprobs`) per-token log-probs, but no token ids, so
`Sample.completion_ids` and `prompt_ids` are empty.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from discover.policy import Sample

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """The endpoint could not be reached or answered with an error."""


class OpenAIPolicy:
    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout_s: float = 120, max_retries: int = 2,
                 system_prompt: str | None = None, concurrency: int = 8):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        base = base_url.rstrip("/")
        # base_url is the API root (e.g. http://host:8000/v1); a full endpoint URL also works.
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.system_prompt = system_prompt
        self.concurrency = max(1, concurrency)
        self.version = 0
        self.last_stats = {"tokens": 0, "seconds": 0.0}

    def sample(self, prompts: list[str], n: int, *, max_new_tokens: int, temperature: float,
               seed: int, prefill: str = "",
               on_sample: Callable[[int, int, Sample], None] | None = None
               ) -> list[list[Sample]]:
        # (prefill is not sent yet: the samples say so with Sample.prefill = "")
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a list of strings")
        if n < 1 or max_new_tokens < 1 or temperature < 0:
            raise ValueError("sample needs n >= 1, max_new_tokens >= 1 and temperature >= 0; got "
                             f"n={n}, max_new_tokens={max_new_tokens}, temperature={temperature}")
        t0 = time.monotonic()

        def one(i_prompt: tuple[int, str]) -> tuple[list[Sample], int]:
            i, prompt = i_prompt
            return self._complete(prompt, n, max_new_tokens, temperature, seed + 1000 * i)

        # Concurrent requests let the server batch them (vLLM, llama.cpp, ... all do).
        results: list = [None] * len(prompts)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(prompts)))) as pool:
            futures = {pool.submit(one, (i, p)): i for i, p in enumerate(prompts)}
            for future in as_completed(futures):  # each prompt's samples as its reply arrives
                i = futures[future]
                results[i] = future.result()
                for k, s in enumerate(results[i][0]):
                    if on_sample is not None:
                        on_sample(i, k, s)
        self.last_stats = {"tokens": sum(t for _, t in results),
                           "seconds": time.monotonic() - t0}
        return [samples for samples, _ in results]

    def _complete(self, prompt: str, n: int, max_tokens: int, temperature: float,
                  seed: int) -> tuple[list[Sample], int]:
        """n completions of one prompt and the tokens they took; repeat while the server
        returns fewer than asked."""
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        samples: list[Sample] = []
        tokens = 0
        for call in range(n):  # at most n calls: each returns at least one choice
            body = {"model": self.model, "messages": messages, "n": n - len(samples),
                    "temperature": temperature, "max_tokens": max_tokens,
                    "seed": seed + call, "logprobs": True}
            reply = self._post(body)
            choices = reply.get("choices") or []
            if not choices:
                raise EndpointError(f"POST {self.url} returned no choices: {_short(reply)}")
            new = [_to_sample(c) for c in choices[:n - len(samples)]]
            samples += new
            usage = (reply.get("usage") or {}).get("completion_tokens")
            tokens += int(usage) if usage is not None else sum(len(s.logprobs) for s in new)
            if len(samples) == n:
                return samples, tokens
        raise AssertionError("unreachable: every call adds at least one sample")

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:500]
                if e.code not in RETRY_STATUS or last:
                    raise EndpointError(
                        f"POST {self.url} failed: HTTP {e.code} {e.reason}: {detail}") from e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if last:
                    raise EndpointError(f"POST {self.url} failed: {e} (is the server up at "
                                        "this address?)") from e
            else:
                try:
                    return json.loads(raw)
                except json.JSONDecodeError as e:
                    raise EndpointError(
                        f"POST {self.url} returned invalid JSON: {raw[:200]!r}") from e
            time.sleep(0.5 * 2 ** attempt)  # transient failure: back off, then retry
        raise AssertionError("unreachable")


def _to_sample(choice: dict) -> Sample:
    text = (choice.get("message") or {}).get("content") or ""
    content = (choice.get("logprobs") or {}).get("content") or []
    return Sample(text=text, logprobs=[float(t["logprob"]) for t in content])


def _short(obj) -> str:
    return json.dumps(obj)[:300]
