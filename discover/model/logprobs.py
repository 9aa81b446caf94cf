"""Teacher-forced log-probs of completions under a causal LM: what the learner's importance ratio
and KL need, computed the way the transformers sampler computes its own (same logits, same
temperature). Shared by the sampler's tests, the PEFT learner and the TRL learner's checks."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from discover.model import shared_prefix


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of the model's (first) parameters."""
    return next(model.parameters()).device


def sequence_logprobs(model: torch.nn.Module, prompt_ids: list[int], completion_ids: list[int],
                      temperature: float = 1.0) -> torch.Tensor:
    """Teacher-forced log p(completion token | everything before it), one per completion token.

    Differentiable (call under torch.no_grad() when no gradient is wanted). Prompt tokens get
    no log-prob: only the logits that predict completion tokens are computed.
    """
    if not completion_ids:
        return torch.zeros(0, device=device_of(model))
    logp = sequence_log_softmax(model, prompt_ids, completion_ids, temperature)
    target = torch.tensor(completion_ids, device=logp.device)
    return logp.gather(1, target[:, None]).squeeze(1)


def sequence_log_softmax(model: torch.nn.Module, prompt_ids: list[int],
                         completion_ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """The whole next-token distribution (log-softmax over the vocabulary) at each completion
    token's position: [completion tokens, vocabulary]."""
    device = device_of(model)
    if not prompt_ids:
        raise ValueError("sequence_logprobs needs at least one prompt token")
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)], device=device)
    k = len(completion_ids)
    # Keep only the last k+1 positions' logits; the very last one predicts nothing we scored.
    logits = model(input_ids=ids, logits_to_keep=k + 1).logits[0, :-1].float()
    return torch.log_softmax(logits / temperature, dim=-1)


def group_logprobs(model: torch.nn.Module, prompt_ids: list[int],
                   completions: list[list[int]], temperature: float = 1.0,
                   prompt_grad: bool = True) -> list[torch.Tensor]:
    """`sequence_logprobs` of several completions of ONE prompt, in two forward calls: the prompt
    once (batch 1), then all completions as one right-padded batch attending to its keys/values
    (shared_prefix; the model must qualify, see `shared_prefix.install`).

    Equal to `sequence_logprobs` per completion up to float rounding, gradient included: the
    prompt's keys/values are used by every row, so their gradients add up as they would over
    separate passes. Right padding needs no mask: a real token never attends to a later one.
    `prompt_grad=False` runs the prompt without gradient (see `group_log_softmax`).
    """
    logp = torch.cat(group_log_softmax(model, prompt_ids, completions, temperature, prompt_grad))
    target = torch.tensor([t for c in completions for t in c], device=logp.device)
    return list(logp.gather(1, target[:, None]).squeeze(1).split([len(c) for c in completions]))


def group_log_softmax(model: torch.nn.Module, prompt_ids: list[int],
                      completions: list[list[int]], temperature: float = 1.0,
                      prompt_grad: bool = True) -> list[torch.Tensor]:
    """`sequence_log_softmax` of several completions of ONE prompt, as `group_logprobs` runs
    them: one [tokens, vocabulary] table per completion.

    `prompt_grad=False` runs the prompt pass without gradient: the values are the same, but the
    gradient leaves out the path through the prompt's keys/values (and the first completion
    token's, predicted from the prompt alone). A partial gradient, for a cheaper learner
    (learner.prompt_grad, docs/METHOD.md)."""
    if not prompt_ids:
        raise ValueError("group_logprobs needs at least one prompt token")
    device = device_of(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    record = shared_prefix.Record()
    with nullcontext() if prompt_grad else torch.no_grad():
        last = decoder(input_ids=torch.tensor([list(prompt_ids)], device=device),
                       use_cache=False, discover_shared=record).last_hidden_state[:, -1]
    width = max(len(c) for c in completions)
    ids = torch.tensor([list(c) + [0] * (width - len(c)) for c in completions], device=device)
    position = (len(prompt_ids) + torch.arange(width, device=device)).expand(len(completions), -1)
    hidden = decoder(input_ids=ids, position_ids=position, use_cache=False,
                     discover_shared=shared_prefix.Attend([record], [(0, len(completions))])
                     ).last_hidden_state
    # Token j of a row is predicted by the hidden state before it: the prompt's last for j = 0.
    rows = [torch.cat([last, hidden[r, :len(c) - 1]]) for r, c in enumerate(completions) if c]
    logits = head(torch.cat(rows)).float() if rows else last.new_zeros(0, 1)
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return list(logp.split([len(c) for c in completions]))
