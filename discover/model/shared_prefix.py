"""Attention over a shared prompt: G completions of one prompt read ONE copy of its keys/values.

A group's G rows share their prompt, so the prompt is run through the model once (a recording
pass, batch 1) and its per-layer keys and values are kept once per group. Every later forward
call (the sampler's decode steps, the learner's teacher-forced pass) attends, row by row, to its
group's prompt keys and then to its own keys, causally. Nothing is expanded to G copies, there is
no padding (every row of a group has the same prompt; rows of a step have the same length) and
so no attention mask, and the sampler's own keys go into a preallocated buffer, not a cache that
is concatenated anew at every step.

It plugs into transformers as an attention implementation (`AttentionInterface`), so the model's
own layers, RoPE, LoRA adapters and gradient checkpointing all stay as they are: a forward call
carries a `discover_shared=Record(...)` or `discover_shared=Attend(...)` keyword, which reaches
the attention function of every layer. A call without it is plain SDPA (masks included), so the
model behaves as before everywhere else. Only models whose every layer is full causal attention
through that interface qualify (`supported`); others use the per-row path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

try:
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
except ImportError:  # a transformers without these (< 4.53): every model takes the per-row path
    AttentionInterface = None

NAME = "discover_shared_prefix"
KEY = "discover_shared"  # the forward keyword that carries a Record or an Attend


@dataclass
class Record:
    """A prompt pass: plain causal attention; each layer's keys and values are kept here."""

    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


@dataclass
class Suffix:
    """The sampler's own keys/values, preallocated: (rows, kv heads, capacity, head dim) per
    layer; `length` positions are filled. A decode step writes one position in place."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    length: int = 0

    @classmethod
    def empty(cls, model, rows: int, capacity: int, like: torch.Tensor) -> Suffix:
        c = model.config
        heads = c.num_key_value_heads
        dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        shape = (rows, heads, capacity, dim)
        n = c.num_hidden_layers
        return cls([like.new_empty(shape) for _ in range(n)],
                   [like.new_empty(shape) for _ in range(n)])

    def keep(self, rows: torch.Tensor) -> None:
        """Drop the rows not in `rows` (finished ones), copying only the filled positions."""
        for buf in (self.k, self.v):
            for i, t in enumerate(buf):
                new = t.new_empty((len(rows), *t.shape[1:]))
                new[:, :, :self.length] = t[rows, :, :self.length]
                buf[i] = new


@dataclass
class Attend:
    """Rows groups[g] (a range) attend to prompt `prompts[g]` (a Record), then to their own keys:
    those in `suffix` plus this call's (decoding), or only this call's, causally (no suffix)."""

    prompts: list[Record]
    groups: list[tuple[int, int]]
    suffix: Suffix | None = None


def supported(model) -> bool:
    """Every layer is full causal attention dispatched through transformers' interface."""
    if AttentionInterface is None:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    c = base.config
    types = getattr(c, "layer_types", None) or ["full_attention"]
    sliding = getattr(c, "sliding_window", None) and getattr(c, "use_sliding_window", True)
    return (bool(getattr(base, "_supports_attention_backend", False)) and not sliding
            and all(t == "full_attention" for t in types)
            and getattr(c, "_attn_implementation", None) in ("sdpa", NAME))


def install(model) -> bool:
    """Route the model's attention through `attention` (plain SDPA unless a call carries a
    Record or an Attend); returns False, changing nothing, for a model that does not qualify."""
    if not supported(model):
        return False
    AttentionInterface.register(NAME, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # masks as for SDPA
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config._attn_implementation = NAME
    return True


def attention(module, query, key, value, attention_mask, dropout: float = 0.0,
              scaling: float | None = None, **kwargs):
    shared = kwargs.pop(KEY, None)
    if isinstance(shared, Record):
        shared.kv.setdefault(module.layer_idx, (key, value))  # (a checkpoint replay: same)
    if not isinstance(shared, Attend):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    layer = module.layer_idx
    s = shared.suffix
    if s is not None:  # decoding: this call's keys go into the buffer, after the filled ones
        q_len = key.shape[2]
        s.k[layer][:, :, s.length:s.length + q_len] = key
        s.v[layer][:, :, s.length:s.length + q_len] = value
        key = s.k[layer][:, :, :s.length + q_len]
        value = s.v[layer][:, :, :s.length + q_len]
    prompts = [p.kv[layer] for p in shared.prompts]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return _attend(query, prompts, shared.groups, key, value, scale), None


def _attend(q: torch.Tensor, prompts: list[tuple[torch.Tensor, torch.Tensor]],
            groups: list[tuple[int, int]], k: torch.Tensor, v: torch.Tensor,
            scale: float) -> torch.Tensor:
    """softmax([q.K_prompt, q.K_own] * scale) @ [V_prompt; V_own], the prompt's K/V once per group.

    q: (rows, heads, Q, d); k, v: (rows, kv heads, S, d), query i sitting at own position
    S - Q + i; prompts[g]: (1, kv heads, P_g, d). Returns (rows, Q, heads, d) as SDPA's wrapper.
    Grouped-query heads are folded into the query axis (head h reads kv head h // rep), so each
    prompt product is one matmul over all of its group's queries.
    """
    rows, heads, q_len, dim = q.shape
    kv_heads, s_len = k.shape[1], k.shape[2]
    rep = heads // kv_heads
    qf = q.reshape(rows, kv_heads, rep * q_len, dim)
    own = torch.matmul(qf, k.transpose(-1, -2)) * scale  # (rows, kv heads, rep*Q, S)
    if q_len > 1:  # causal within the own keys
        allowed = (torch.arange(s_len, device=q.device)[None, :]
                   <= torch.arange(s_len - q_len, s_len, device=q.device)[:, None])
        own = own.masked_fill(~allowed.repeat(rep, 1), float("-inf"))
    outs = []
    for (a, b), (pk, pv) in zip(groups, prompts, strict=True):
        n, p_len = b - a, pk.shape[2]
        qg = qf[a:b].transpose(0, 1).reshape(kv_heads, n * rep * q_len, dim)
        pre = torch.matmul(qg, pk[0].transpose(-1, -2)) * scale  # (kv heads, n*rep*Q, P)
        pre = pre.view(kv_heads, n, rep * q_len, p_len).transpose(0, 1)
        w = torch.softmax(torch.cat([pre, own[a:b]], dim=-1), dim=-1)
        wp = w[..., :p_len].transpose(0, 1).reshape(kv_heads, n * rep * q_len, p_len)
        out = torch.matmul(wp, pv[0]).view(kv_heads, n, rep * q_len, dim).transpose(0, 1)
        outs.append(out + torch.matmul(w[..., p_len:], v[a:b]))
    out = torch.cat(outs) if len(outs) > 1 else outs[0]
    return out.reshape(rows, heads, q_len, dim).transpose(1, 2)
