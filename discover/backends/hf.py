"""The transformers sampling backend: the embedded SmolLM2 on CPU (any causal LM; CUDA if present).

Sampling is a plain decode loop over the KV cache rather than `model.generate`, for three reasons:
the log-prob of every sampled token is taken from the same logits the token was drawn from (exact,
which the learner's importance ratio needs) without keeping all logits in memory; no model-default
generation settings (repetition penalty, top-k, ...) can silently change the distribution; and
each sequence draws from its own seeded generator (Gumbel-max), so a completion depends on
(seed, prompt index, sample index) only, never on the batch it happened to share.

A step's B x G rows are decoded as one batch (`batch_size` rows at most). Each prompt is
prefilled once and its keys/values shared by its G rows (discover/model/shared_prefix.py); each row
still draws from its own generator, so the completions are those a prefill per row gives
(`shared_prefill=False`, the earlier left-padded batches; also the path for models that do not
qualify). A row that stops is handed to `on_sample` at once and, once a quarter of the batch has
stopped, dropped from it. On a CPU the frozen linear layers go through oneDNN (cpu_linear.py).

The learner later swaps `policy.model` for a PEFT-wrapped model, so `self.model` is read at call
time and never cached elsewhere.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from discover.backends.base import (
    Policy,
    Sample,
    chat_ids,
    check_sample_args,
    prefills,
    stopped,
)
from discover.model import cpu_linear, lora_merge, shared_prefix
from discover.model.logprobs import device_of
from discover.model.store import MissingModel, resolve_model
from discover.threads import CHOICE


def _parse_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32  # bf16 would make sampler and learner log-probs disagree
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32' or 'bfloat16'")
    return value


class HFPolicy(Policy):
    """Policy backend on transformers; `last_stats` holds tokens and seconds of the last call."""

    def __init__(self, model: str = "smollm2", device: str | None = None, dtype=None,
                 threads: int | None = None, system_prompt: str | None = None,
                 batch_size: int = 32, shared_prefill: bool = True, onednn: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # The cores this process may use (affinity, cgroup quota), not the machine's count.
        torch.set_num_threads(threads or CHOICE.cores)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        path = resolve_model(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=_parse_dtype(dtype))
        except OSError as e:  # not found locally nor on the Hub (or no network to ask it)
            raise MissingModel(f"cannot load model {model!r}: {e}") from e
        self.model.to(self.device).eval()
        if onednn:  # CPU: oneDNN's GEMM outside autograd (cpu_linear: 2-4x MKL's on AMD EPYC)
            cpu_linear.install(self.model)
        self.system_prompt = system_prompt
        self.batch_size = batch_size
        # One prefill per prompt, shared by its rows, where the model allows it (shared_prefix).
        self.shared_prefill = shared_prefill and shared_prefix.install(self.model)
        self.version = 0
        self.last_stats = {"tokens": 0, "seconds": 0.0}
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
        if not self.eos_ids:
            raise ValueError(f"model {model!r} defines no end-of-sequence token")
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)

    def load_adapter(self, path: str | Path, version: int) -> None:
        """Sample with the adapter saved at `path` from the next call on. Where the learner
        shares this model it has moved the weights and the version already: nothing to do.
        Where it trains a copy of its own (run.overlap), this model carries an adapter of the
        same shape (`BackgroundLearner`), whose weights are replaced here, between steps."""
        if version == self.version:
            return
        from peft import PeftModel, set_peft_model_state_dict
        from safetensors.torch import load_file

        if not isinstance(self.model, PeftModel):
            raise RuntimeError("this sampler's model carries no LoRA adapter to load into")
        set_peft_model_state_dict(self.model, load_file(Path(path) / "adapter_model.safetensors"))
        self.version = version

    def encode(self, prompt: str, prefill: str = "") -> list[int]:
        """Token ids of a user message under the chat template, then the assistant's turn opened
        with `prefill` (prompt tokens too)."""
        return chat_ids(self.tokenizer, prompt, self.system_prompt, prefill)

    def sample(self, prompts: list[str], n: int, *, max_new_tokens: int, temperature: float,
               seed: int, prefill: str | list[str] = "", stop: Sequence[str] = (),
               on_sample: Callable[[int, int, Sample], None] | None = None) -> list[list[Sample]]:
        """See Policy.sample; `on_sample(prompt index, sample index, sample)` is called as soon
        as each completion exists (a row stops at its EOS or `stop` while the others go on)."""
        check_sample_args(prompts, n, max_new_tokens, temperature)
        t0 = time.monotonic()
        fills = prefills(prefill, len(prompts))
        encoded = [self.encode(p, f) for p, f in zip(prompts, fills, strict=True)]
        ends = Ends(self.tokenizer, self.eos_ids, stop)
        out: list[list[Sample | None]] = [[None] * n for _ in prompts]
        tokens = 0

        def finished(row: tuple[int, int], ids: list[int], logprobs: list[float]) -> None:
            nonlocal tokens
            i, k = row
            tokens += len(ids)
            s = out[i][k] = Sample(
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                prompt_ids=list(encoded[i]), completion_ids=ids, logprobs=logprobs,
                version=self.version, prefill=fills[i])
            if on_sample is not None:
                on_sample(i, k, s)

        rows = [(i, k) for i in range(len(prompts)) for k in range(n)]
        seeds = {(i, k): _row_seed(seed, i * n + k) for i, k in rows}
        # The adapter folded into the weights for the call: a decode step then costs what the
        # base model's does (lora_merge.py); outside it the learner sees W0 and the adapter.
        with lora_merge.merged(self.model):
            if self.shared_prefill:  # rows in prompt order: a prompt's rows share one batch
                prompts_done: dict[int, tuple[shared_prefix.Record, torch.Tensor]] = {}
                for b in range(0, len(rows), self.batch_size):
                    self._generate_shared(encoded, rows[b:b + self.batch_size], seeds,
                                          prompts_done, max_new_tokens, temperature, ends,
                                          finished)
            else:
                # Similar lengths share a batch (less padding); results do not depend on grouping.
                rows.sort(key=lambda r: len(encoded[r[0]]))
                for b in range(0, len(rows), self.batch_size):
                    batch = rows[b:b + self.batch_size]
                    done = self._generate([encoded[i] for i, _ in batch],
                                          [seeds[r] for r in batch], max_new_tokens, temperature,
                                          ends)
                    for row, (ids, logprobs) in zip(batch, done, strict=True):
                        finished(row, ids, logprobs)
        self.last_stats = {"tokens": tokens, "seconds": time.monotonic() - t0}
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def _generate_shared(self, encoded: list[list[int]], rows: list[tuple[int, int]],
                         seeds: dict[tuple[int, int], int],
                         prompts_done: dict[int, tuple[shared_prefix.Record, torch.Tensor]],
                         max_new_tokens: int, temperature: float, ends: Ends,
                         finished: Callable) -> None:
        """Sample `rows` (prompt index, sample index) as one batch: each prompt is prefilled once
        (and only once per `sample` call: `prompts_done`), its keys/values shared by its rows.

        A row that stops (EOS or stop text) is handed to `finished` at once; when a quarter of
        the batch has stopped, the stopped rows are dropped from it, so the rest decode at a
        smaller batch."""
        model = self.model  # read now: the learner may have wrapped it since construction
        model.eval()
        dev = device_of(model)
        for i in dict.fromkeys(i for i, _ in rows):
            if i not in prompts_done:
                record = shared_prefix.Record()
                out = model(input_ids=torch.tensor([encoded[i]], device=dev), use_cache=False,
                            logits_to_keep=1, discover_shared=record)
                prompts_done[i] = record, torch.log_softmax(
                    out.logits[0, -1].float() / temperature, dim=-1)
        logp = torch.stack([prompts_done[i][1] for i, _ in rows])
        gens = [torch.Generator(device=dev).manual_seed(seeds[r]) for r in rows]
        position = torch.tensor([len(encoded[i]) for i, _ in rows], device=dev)
        suffix = shared_prefix.Suffix.empty(model, len(rows), max_new_tokens, logp)
        ids: list[list[int]] = [[] for _ in rows]
        lps: list[list[float]] = [[] for _ in rows]
        batch = list(range(len(rows)))  # the rows (indices into `rows`) now in the batch
        live = [True] * len(rows)
        for t in range(max_new_tokens):
            tok = draw(logp, gens)
            lp = logp.gather(1, tok[:, None]).squeeze(1)
            for r, token, value in zip(batch, tok.tolist(), lp.tolist(), strict=True):
                if live[r]:
                    ids[r].append(token)
                    lps[r].append(value)
                    if ends.done(ids[r]) or t == max_new_tokens - 1:
                        live[r] = False
                        finished(rows[r], ids[r], lps[r])
            keep = [j for j, r in enumerate(batch) if live[r]]
            if not keep:
                break
            if len(batch) - len(keep) >= max(1, len(batch) // 4):  # drop the stopped rows
                index = torch.tensor(keep, device=dev)
                suffix.keep(index)
                tok, position = tok[index], position[index]
                gens = [gens[j] for j in keep]
                batch = [batch[j] for j in keep]
            groups, start = [], 0
            for j in range(1, len(batch) + 1):
                if j == len(batch) or rows[batch[j]][0] != rows[batch[start]][0]:
                    groups.append((start, j))
                    start = j
            attend = shared_prefix.Attend([prompts_done[rows[batch[a]][0]][0] for a, _ in groups],
                                          groups, suffix)
            out = model(input_ids=tok[:, None], position_ids=(position + t)[:, None],
                        use_cache=False, discover_shared=attend)
            suffix.length += 1
            logp = torch.log_softmax(out.logits[:, -1].float() / temperature, dim=-1)

    @torch.no_grad()
    def _generate(self, prompts: list[list[int]], seeds: list[int], max_new_tokens: int,
                  temperature: float, ends: Ends) -> list[tuple[list[int], list[float]]]:
        """Sample one completion per (left-padded) prompt; stop a row where `ends` says."""
        model = self.model  # read now: the learner may have wrapped it since construction
        model.eval()
        dev = device_of(model)
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        gens = [torch.Generator(device=dev).manual_seed(s) for s in seeds]
        position = (mask.cumsum(1) - 1).clamp(min=0)  # positions as if unpadded
        finished = torch.zeros(len(prompts), dtype=torch.bool, device=dev)
        new_ids, new_logp = [], []
        rows: list[list[int]] = [[] for _ in prompts]
        lengths = [0] * len(prompts)
        out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True,
                    logits_to_keep=1)
        for _ in range(max_new_tokens):
            logp = torch.log_softmax(out.logits[:, -1].float() / temperature, dim=-1)
            tok = torch.where(finished, self.pad_id, draw(logp, gens))
            new_ids.append(tok)
            new_logp.append(logp.gather(1, tok[:, None]).squeeze(1))
            for r, token in enumerate(tok.tolist()):
                if not lengths[r]:
                    rows[r].append(token)
                    lengths[r] = len(rows[r]) if ends.done(rows[r]) else 0
            finished = torch.tensor([bool(x) for x in lengths], device=dev)
            if bool(finished.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            position = position[:, -1:] + 1
            out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=position,
                        past_key_values=out.past_key_values, use_cache=True)
        ids_t = torch.stack(new_ids, 1).tolist()
        logp_t = torch.stack(new_logp, 1).tolist()
        results = []
        for row_ids, row_logp, end in zip(ids_t, logp_t, lengths, strict=True):
            end = end or len(row_ids)
            results.append((row_ids[:end], row_logp[:end]))
        return results


class Ends:
    """Where a row's completion ends: at an EOS token, or at the token that completes the stop
    text at the start of a line (that token stays in the completion)."""

    def __init__(self, tokenizer, eos_ids: set[int], stop: Sequence[str]) -> None:
        self.tokenizer, self.eos_ids, self.stop = tokenizer, eos_ids, [s for s in stop if s]
        self.last_chars = {s[-1] for s in self.stop}

    def done(self, ids: list[int]) -> bool:
        if ids[-1] in self.eos_ids:
            return True
        # Decode the whole row only when its last token could complete the stop text.
        return any(c in self.tokenizer.decode(ids[-1:]) for c in self.last_chars) and \
            stopped(self.tokenizer.decode(ids, skip_special_tokens=True), self.stop)


def draw(logp: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
    """One token per row of log-probs, drawn with the row's own generator (Gumbel-max).

    argmax(logp + Gumbel noise) is an exact draw from softmax(logp). Unlike an inverse-CDF draw
    it is stable under the ~1e-5 logit differences between a padded batch and a lone sequence:
    a flip needs two perturbed values within that distance, not a cumulative sum drifting over a
    boundary between tail tokens (measured: the latter flipped 1 sequence in 24 at 16 tokens).
    """
    noise = torch.empty_like(logp)
    for row, g in enumerate(gens):
        noise[row].uniform_(generator=g)
    noise.log_().neg_().log_().neg_()  # -log(-log(u)); u = 0 gives -inf, never picked
    return torch.argmax(noise.add_(logp), dim=-1)


def _row_seed(seed: int, row: int) -> int:
    """A distinct 63-bit seed per (call seed, row), stable across Python versions and runs."""
    digest = hashlib.blake2b(f"{seed}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
