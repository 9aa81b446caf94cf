"""A stub OpenAI-compatible provider: a real HTTP server (in the test process) that answers as a
given provider does. Used by test_openai_backend.py and test_ray_cluster.py."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CODE = "```python\ndef solve():\n    return [1, 2, 3]\n```"


class Provider:
    """How the stub answers; every flag is one provider difference."""

    def __init__(self) -> None:
        self.n = True  # serves n choices
        self.n_refused = False  # answers 400 when n > 1 is sent
        self.logprobs = True  # returns logprobs when asked
        self.logprobs_refused = False
        self.temperature_refused = False  # as OpenAI's reasoning models answer
        self.max_tokens_refused = False
        self.stop_refused = False  # as OpenAI's reasoning models answer `stop`
        self.reasoning = False  # reasoning_content beside the content
        self.usage = True
        self.statuses: list[tuple[int, dict]] = []  # (status, headers) before a 200
        self.trickle_s = 0.0  # send the body one byte at a time for this long
        self.prefill = "vllm"  # vllm: continue_final_message; refuse: 400 on its keys
        self.key: str | None = None  # the API key it requires
        self.content = "s{seed} c{i} ok"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # http.server's naming
        srv, p = self.server, self.server.provider
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                             "body": body, "time": time.monotonic()})
        if p.key is not None and self.headers.get("Authorization") != f"Bearer {p.key}":
            return self._send(401, {"error": {"message": "Incorrect API key provided",
                                              "type": "invalid_request_error"}})
        if p.statuses:
            status, headers = p.statuses.pop(0)
            return self._send(status, {"error": {"message": "slow down"}}, headers)
        refusals = [
            (p.n_refused and body.get("n", 1) > 1, "n", "'n' is not supported; use n=1"),
            (p.temperature_refused and "temperature" in body, "temperature",
             "Unsupported value: 'temperature' does not support 1.0 with this model. Only the "
             "default (1) value is supported."),
            (p.logprobs_refused and "logprobs" in body, None,
             "This model does not support logprobs"),
            (p.max_tokens_refused and "max_tokens" in body, "max_tokens",
             "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
             "'max_completion_tokens' instead."),
            (p.stop_refused and "stop" in body, "stop",
             "Unsupported parameter: 'stop' is not supported with this model."),
            (p.prefill == "refuse" and "continue_final_message" in body, None,
             "Unrecognized request argument supplied: continue_final_message"),
        ]
        for refused, param, message in refusals:
            if refused:
                return self._send(400, {"error": {"message": message, "param": param,
                                                  "type": "invalid_request_error",
                                                  "code": "unsupported_parameter"}})
        k = min(body.get("n", 1), 99 if p.n else 1)
        seed = body.get("seed")
        last = body["messages"][-1]
        # Continuing a trailing assistant message: the answer is what follows the prefill.
        prefill = last["content"] if body.get("continue_final_message") else ""
        choices = []
        for i in range(k):
            content = p.content.format(seed=seed, i=i)
            content = content.removeprefix(prefill) if last["role"] == "assistant" else content
            message = {"role": "assistant", "content": content}
            if p.reasoning:
                message["reasoning_content"] = "Let me think about the list first."
            choices.append({
                "index": i, "message": message, "finish_reason": "stop",
                "logprobs": ({"content": [{"token": t, "logprob": -0.5 * (j + 1), "bytes": []}
                                          for j, t in enumerate(["s", " c", " ok"])]}
                             if p.logprobs and body.get("logprobs") else None)})
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": choices}
        if p.usage:
            reply["usage"] = {"prompt_tokens": 5, "completion_tokens": 3 * k + 7 * p.reasoning,
                              "total_tokens": 5 + 3 * k,
                              "completion_tokens_details": {"reasoning_tokens": 7 * p.reasoning}}
        self._send(200, reply)

    def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        trickle = self.server.provider.trickle_s
        if trickle and status == 200:
            end = time.monotonic() + trickle
            for b in data:  # one byte at a time: every read succeeds, the whole never arrives
                if time.monotonic() > end:
                    return
                try:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output clean
        pass


def start() -> ThreadingHTTPServer:
    """A running stub on 127.0.0.1 (`.base_url`, `.provider`, `.requests`); `stop` it after."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.requests, srv.provider = [], Provider()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.base_url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    return srv


def stop(srv: ThreadingHTTPServer) -> None:
    srv.shutdown()
    srv.server_close()
