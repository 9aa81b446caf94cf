"""Sampling from an OpenAI-compatible HTTP endpoint (/v1/chat/completions).

A search without learning, for models one cannot train: the version stays 0. The endpoint returns
text and (where it supports `logprobs`) per-token log-probs, but no token ids, so
`Sample.completion_ids` and `prompt_ids` are empty.

The `openai` package is the client (the ecosystem's convention: typed errors with the server's
`param`, headers, timeouts, connection reuse). Providers differ, and each difference is met here:
- no `n`: a 400 naming it, or fewer choices than asked -> one request per completion;
- a refused parameter (`temperature` on reasoning models, `seed`, `logprobs`; `max_tokens` where
  `max_completion_tokens` is wanted) -> retried without it (or renamed), said once on stderr;
- reasoning beside the content (`reasoning_content`, `reasoning`) -> kept out of the text (the
  program is in the content), its tokens counted in the usage;
- 429/5xx/timeouts -> retried, waiting what Retry-After (or retry-after-ms) says, else backing
  off; every request has a hard deadline (`timeout_s`), however slowly the server trickles;
- the prefill -> a trailing assistant message continued in place where the server accepts it
  (vLLM: `continue_final_message`, `add_generation_prompt: false`); a server that refuses it
  samples without one and the samples say so (`Sample.prefill = ""`);
- the API key comes from the environment (`api_key_env`, OPENAI_API_KEY by default) and is never
  part of the config or anything written to disk.
Token usage per call is in `last_stats` (search.py writes it into metrics.jsonl).
"""

from __future__ import annotations

import email.utils
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import openai

from discover.backends.base import (
    BackendError,
    Policy,
    Sample,
    check_sample_args,
    prefills,
    prompt_seed,
)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_WAIT_S = 60.0  # the longest Retry-After honoured; longer ones fail the request
DROPPABLE = ("temperature", "seed", "logprobs", "stop")  # sampled without them where refused
PREFILL_KEYS = ("continue_final_message", "add_generation_prompt")


class EndpointError(BackendError):
    """The endpoint could not be reached or answered with an error."""


class OpenAIPolicy(Policy):
    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout_s: float = 120, max_retries: int = 3,
                 system_prompt: str | None = None, concurrency: int = 8,
                 api_key_env: str = "OPENAI_API_KEY"):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        base = base_url.rstrip("/")
        # base_url is the API root (e.g. http://host:8000/v1); a full endpoint URL also works.
        self.base_url = base.removesuffix("/chat/completions")
        self.model = model
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        # Retries are ours (Retry-After, a deadline per attempt); the client makes one attempt.
        # A keyless local server (vLLM) ignores the placeholder.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key or "EMPTY",
                                    timeout=timeout_s, max_retries=0)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.system_prompt = system_prompt
        self.concurrency = max(1, concurrency)
        self.version = 0
        self.dropped: set[str] = set()  # parameters this endpoint refused
        self.n_ok = True  # the endpoint returns n choices per request
        self.prefill_ok = True  # it continues a trailing assistant message
        self.max_tokens_key = "max_tokens"
        self._lock = threading.Lock()
        self._said: set[str] = set()
        self._calls = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="http")
        self.last_stats: dict = {"tokens": 0, "seconds": 0.0}

    def sample(self, prompts: list[str], n: int, *, max_new_tokens: int, temperature: float,
               seed: int, prefill: str | list[str] = "", stop: Sequence[str] = (),
               on_sample: Callable[[int, int, Sample], None] | None = None
               ) -> list[list[Sample]]:
        check_sample_args(prompts, n, max_new_tokens, temperature, greedy_at_zero=True)
        t0 = time.monotonic()
        self._usage = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0,
                       "reasoning_tokens": 0}
        fills = prefills(prefill, len(prompts))
        args = (max_new_tokens, temperature, stop)
        # Completion k of prompt i has seed prompt_seed(seed, i) + k, as vLLM numbers its n.
        out: list[list[Sample]] = [[] for _ in prompts]
        if self.n_ok:  # one request per prompt; a short answer is topped up below
            results = self._map([(i, 0, n) for i in range(len(prompts))], prompts, fills, seed,
                                args)
            for (i, _, _), got in results:
                out[i] = got
        rest = [(i, k, 1) for i in range(len(prompts)) for k in range(len(out[i]), n)]
        for (i, _, _), got in self._map(rest, prompts, fills, seed, args):  # one each
            out[i] += got
        tokens = self._usage["completion_tokens"]
        self.last_stats = {"tokens": tokens, "seconds": time.monotonic() - t0, **self._usage,
                           "refused": sorted(self.dropped | ({"n"} if not self.n_ok else set())
                                             | ({"prefill"} if not self.prefill_ok else set()))}
        if on_sample is not None:  # (at the end: the requests are answered whole)
            for i, group in enumerate(out):
                for k, s in enumerate(group):
                    on_sample(i, k, s)
        return out

    def _map(self, jobs, prompts, fills, seed, args):
        """Run (prompt index, first sample index, count) jobs concurrently: the server batches
        concurrent requests (vLLM, llama.cpp, ... all do)."""
        def one(job):
            i, k, count = job
            return job, self._complete(prompts[i], count, prompt_seed(seed, i) + k, *args,
                                       fills[i])

        if not jobs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            return list(pool.map(one, jobs))

    def _complete(self, prompt: str, n: int, seed: int, max_tokens: int, temperature: float,
                  stop: Sequence[str], prefill: str) -> list[Sample]:
        """Up to n completions of one prompt in one request (fewer where the server gives fewer:
        then this endpoint is taken not to serve `n`)."""
        while True:
            use_prefill = bool(prefill) and self.prefill_ok
            messages = [{"role": "user", "content": prompt}]
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            body: dict = {"model": self.model, "messages": messages,
                          self.max_tokens_key: max_tokens, "temperature": temperature,
                          "seed": seed, "logprobs": True}
            if n > 1 and self.n_ok:
                body["n"] = n
            if stop and use_prefill:  # (without the prefill the answer opens its own fence)
                body["stop"] = list(stop)  # servers leave it out of the text: the block ends open
            if use_prefill:
                messages.append({"role": "assistant", "content": prefill})
                body["extra_body"] = {"continue_final_message": True,
                                      "add_generation_prompt": False}
            for key in self.dropped:
                body.pop(key, None)
            try:
                reply = self._post(body)
            except openai.BadRequestError as e:
                if self._adapt(e, body, use_prefill):
                    continue  # retry at once without what it refused
                raise EndpointError(f"{self.base_url} refused the request: {_detail(e)}") from e
            except openai.UnprocessableEntityError as e:
                if self._adapt(e, body, use_prefill):
                    continue
                raise EndpointError(f"{self.base_url} refused the request: {_detail(e)}") from e
            choices = reply.get("choices") or []
            if not choices:
                raise EndpointError(f"{self.base_url} returned no choices: {str(reply)[:300]}")
            if n > 1 and len(choices) < n and self.n_ok:
                self._say("n", f"returned {len(choices)} of {n} completions asked with `n`: "
                               "asking for one completion per request from now on")
                self.n_ok = False
            self._count(reply)
            return [_to_sample(c, prefill if use_prefill else "") for c in choices[:n]]

    def _adapt(self, e: openai.APIStatusError, body: dict, use_prefill: bool) -> bool:
        """Change what is sent after a refusal; False if nothing we sent explains it. Each
        change takes something out of the request, so retrying ends. (Concurrent requests may
        meet the same refusal: the first changes the settings, all retry.)"""
        sent = [k for k in body if k not in ("model", "messages")]
        named = _refused_param(e, sent + (list(PREFILL_KEYS) if use_prefill else []))
        with self._lock:
            if named == "n":
                if self.n_ok:
                    self.n_ok = False
                    self._say("n", "does not take `n`: one request per completion from now on")
                return True
            if named == "max_tokens":
                self.max_tokens_key = "max_completion_tokens"
                self._say("max_tokens", "refuses `max_tokens`: sending max_completion_tokens")
                return True
            if named in DROPPABLE:
                self.dropped.add(named)
                what = {"temperature": "sampling at the model's own temperature",
                        "seed": "sampling unseeded (completions do not repeat)",
                        "logprobs": "samples carry no log-probs",
                        "stop": "answers run on after their code block"}[named]
                self._say(named, f"refuses `{named}`: {what} from now on")
                return True
            if use_prefill and (named in PREFILL_KEYS or named is None):
                self.prefill_ok = False
                self._say("prefill", "does not continue a trailing assistant message: "
                                     "sampling without the prefill (Sample.prefill = '')")
                return True
        return False

    def _post(self, body: dict) -> dict:
        """One chat completion as a dict, retrying what is transient; a hard deadline per try."""
        extra = body.pop("extra_body", None)
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            call = self._calls.submit(self.client.chat.completions.create, **body,
                                      extra_body=extra)
            try:
                reply = call.result(timeout=self.timeout_s + 1)
                with self._lock:
                    self._usage["requests"] += 1
                return reply.model_dump()
            except FutureTimeout:
                error, wait = f"no answer within {self.timeout_s:g} s", None
            except openai.APITimeoutError:
                error, wait = f"no answer within {self.timeout_s:g} s", None
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                raise
            except openai.APIStatusError as e:
                if e.status_code not in RETRY_STATUS:
                    hint = " (check the API key: it is read from the environment)" if \
                        e.status_code in (401, 403) else ""
                    raise EndpointError(f"{self.base_url} answered HTTP {e.status_code}: "
                                        f"{_detail(e)}{hint}") from e
                error, wait = f"HTTP {e.status_code}: {_detail(e)}", _retry_after(e.response)
            except openai.APIConnectionError as e:
                error, wait = f"{e} (is the server up at this address?)", None
            if last or (wait is not None and wait > MAX_WAIT_S):
                raise EndpointError(f"POST {self.base_url}/chat/completions failed after "
                                    f"{attempt + 1} tries: {error}")
            with self._lock:
                self._usage["retries"] += 1
            time.sleep(wait if wait is not None else 0.5 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _count(self, reply: dict) -> None:
        usage = reply.get("usage") or {}
        choices = reply.get("choices") or []
        completion = usage.get("completion_tokens")
        if completion is None:  # no usage reported: the log-probs count the tokens, if any
            completion = sum(len((c.get("logprobs") or {}).get("content") or [])
                             for c in choices)
        details = usage.get("completion_tokens_details") or {}
        with self._lock:
            self._usage["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
            self._usage["completion_tokens"] += int(completion)
            self._usage["reasoning_tokens"] += int(details.get("reasoning_tokens") or 0)

    def shutdown(self) -> None:
        """Stop waiting on requests still in flight (their threads end at the client timeout)."""
        self._calls.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def _say(self, key: str, message: str) -> None:
        """Tell the user once per kind of provider difference."""
        if key not in self._said:
            self._said.add(key)
            print(f"discover: {self.base_url} {message}", file=sys.stderr, flush=True)


def _to_sample(choice: dict, prefill: str) -> Sample:
    message = choice.get("message") or {}
    # Reasoning models put their thinking beside the answer (reasoning_content: vLLM, DeepSeek;
    # reasoning: OpenRouter, newer vLLM); the program is in the content.
    text = message.get("content") or ""
    content = (choice.get("logprobs") or {}).get("content") or []
    return Sample(text=text, logprobs=[float(t["logprob"]) for t in content], prefill=prefill)


def _refused_param(e: openai.APIStatusError, sent: list[str]) -> str | None:
    """Which of the parameters we sent the error names: its `param`, else its message."""
    if getattr(e, "param", None) in sent:
        return e.param
    text = _detail(e)
    for key in sorted(sent, key=len, reverse=True):  # max_completion_tokens before n
        if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", text):
            return key
    return None


def _retry_after(response) -> float | None:
    """Seconds the server asks to wait (retry-after-ms, or Retry-After: seconds or a date)."""
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _detail(e: openai.APIStatusError) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        return str(body)[:500]
    return str(getattr(e, "message", e))[:500]
