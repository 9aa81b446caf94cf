"""TriMul: the reference operator, the seeded input generator and the output check.

The AlphaFold-3 "outgoing" triangle multiplicative update, forward pass, in float32:

    x' = LayerNorm_C(x)                                    eps 1e-5, learned weight and bias
    left  = (x' Wlp^T) * mask * sigmoid(x' Wlg^T)          W* of shape [H, C], no bias
    right = (x' Wrp^T) * mask * sigmoid(x' Wrg^T)
    out[b, i, j, d] = sum_k left[b, i, k, d] * right[b, j, k, d]
    y = (LayerNorm_H(out) * sigmoid(x' Wog^T)) Wout^T      Wout of shape [C, H]; y is [B, N, N, C]

This file is also copied into the sandbox next to the harness (runner.py), so it imports nothing
but the standard library and torch.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

HIDDEN = 128  # H
EPS = 1e-5
RTOL = ATOL = 2e-2
DISTRIBUTIONS = ("normal", "cauchy")
CAUCHY_SCALE = 2.0
WEIGHT_NAMES = ("norm.weight", "norm.bias", "left_proj.weight", "right_proj.weight",
                "left_gate.weight", "right_gate.weight", "out_gate.weight", "to_out_norm.weight",
                "to_out_norm.bias", "to_out.weight")


def mix(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. a configuration's seed and a run's seed)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generate_input(n: int, b: int, c: int, masked: bool, dist: str, seed: int,
                   device: str = "cpu", hidden: int = HIDDEN) -> tuple:
    """(x, mask, weights, config) drawn from one torch.Generator seeded with `seed` on `device`.

    x: [b, n, n, c] float32, standard normal or Cauchy(0, 2); mask: [b, n, n] float32, all ones
    or uniform in {0, 1}; config: {"dim": c, "hidden_dim": hidden}. The same seed gives the same
    data on the same kind of device (CPU and CUDA generators differ).
    """
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist must be one of {DISTRIBUTIONS}, got {dist!r}")
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    shape = (b, n, n, c)
    if dist == "normal":
        x = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
    else:
        x = torch.empty(shape, device=device, dtype=torch.float32)
        x.cauchy_(0.0, CAUCHY_SCALE, generator=gen)
    if masked:
        mask = torch.randint(0, 2, (b, n, n), generator=gen, device=device).to(torch.float32)
    else:
        mask = torch.ones((b, n, n), device=device, dtype=torch.float32)
    weights = _weights(gen, c, hidden, device)
    return x, mask, weights, {"dim": c, "hidden_dim": hidden}


def _weights(gen: torch.Generator, c: int, h: int, device: str) -> dict:
    """LayerNorm parameters ~ N(0, 1); projections ~ N(0, 1/fan) with fan = H, or C for Wout."""
    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * scale

    hs, cs = 1 / math.sqrt(h), 1 / math.sqrt(c)
    # A dict literal is evaluated in order: the draws are the same on every run.
    return {"norm.weight": randn(c), "norm.bias": randn(c),
            "left_proj.weight": randn(h, c, scale=hs), "right_proj.weight": randn(h, c, scale=hs),
            "left_gate.weight": randn(h, c, scale=hs), "right_gate.weight": randn(h, c, scale=hs),
            "out_gate.weight": randn(h, c, scale=hs),
            "to_out_norm.weight": randn(h), "to_out_norm.bias": randn(h),
            "to_out.weight": randn(c, h, scale=cs)}


@contextmanager
def exact_float32():
    """Full float32 matmuls (no TF32), whatever a candidate set globally; restored afterwards."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


@torch.no_grad()
def reference_kernel(data: tuple) -> torch.Tensor:
    """y for data = (x, mask, weights, config), computed in plain float32 PyTorch."""
    x, mask, w, _ = data
    c = x.shape[-1]
    with exact_float32():
        xn = F.layer_norm(x, (c,), w["norm.weight"], w["norm.bias"], EPS)
        m = mask.to(x.dtype).unsqueeze(-1)
        left = F.linear(xn, w["left_proj.weight"]) * m * torch.sigmoid(
            F.linear(xn, w["left_gate.weight"]))
        right = F.linear(xn, w["right_proj.weight"]) * m * torch.sigmoid(
            F.linear(xn, w["right_gate.weight"]))
        gate = torch.sigmoid(F.linear(xn, w["out_gate.weight"]))
        # For each (b, d): out[:, :, d] = left[:, :, d] @ right[:, :, d]^T, a batched matmul
        # over [B, H, N, N] (sum over k, the last axis of both).
        out = torch.matmul(left.permute(0, 3, 1, 2), right.permute(0, 3, 2, 1))
        out = out.permute(0, 2, 3, 1)
        h = out.shape[-1]
        out = F.layer_norm(out, (h,), w["to_out_norm.weight"], w["to_out_norm.bias"], EPS)
        return F.linear(out * gate, w["to_out.weight"])


def check_output(out: object, ref: torch.Tensor, rtol: float = RTOL, atol: float = ATOL
                 ) -> tuple[str, str] | None:
    """None when `out` matches `ref`; else (kind, reason).

    kind is "invalid_output" for the wrong type, shape, dtype or device, and "invalid_artifact"
    for wrong values: |out - ref| > atol + rtol * |ref| anywhere, or NaN / +inf / -inf where the
    reference has none (or the reverse).
    """
    if not isinstance(out, torch.Tensor):
        return "invalid_output", (f"custom_kernel returned {type(out).__name__}, expected a "
                                  f"torch.Tensor of shape {tuple(ref.shape)}")
    if tuple(out.shape) != tuple(ref.shape):
        return "invalid_output", (f"output shape {tuple(out.shape)}, expected "
                                  f"{tuple(ref.shape)} ([B, N, N, C])")
    if out.dtype != ref.dtype:
        return "invalid_output", (f"output dtype {out.dtype}, expected {ref.dtype} "
                                  "(convert before returning, e.g. y.float())")
    if out.device != ref.device:
        return "invalid_output", f"output on {out.device}, expected {ref.device} (the input's)"
    with torch.no_grad():
        diff = (out - ref).abs()
        bad = diff > atol + rtol * ref.abs()  # False where either side is NaN
        for special in (torch.isnan, torch.isposinf, torch.isneginf):
            bad |= special(out) != special(ref)
        count = int(bad.sum())
        if count == 0:
            return None
        where = torch.nonzero(bad)[:3].tolist()
        shown = ", ".join(f"{tuple(i)}: got {out[tuple(i)].item():.6g}, expected "
                          f"{ref[tuple(i)].item():.6g}" for i in where)
        finite = torch.isfinite(diff)
        worst = float(diff[finite].max()) if bool(finite.any()) else float("nan")
        return "invalid_artifact", (f"{count} of {ref.numel()} elements differ beyond "
                                    f"{atol:g} + {rtol:g} * |ref| (max abs error {worst:.4g}); "
                                    f"e.g. {shown}")


def max_abs_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """The largest finite |out - ref| (0 when there is none)."""
    with torch.no_grad():
        diff = (out - ref).abs()
        diff = diff[torch.isfinite(diff)]
        return float(diff.max()) if diff.numel() else 0.0
