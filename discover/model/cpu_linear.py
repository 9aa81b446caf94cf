"""Frozen linear layers through oneDNN instead of MKL (CPU, float32), forward and backward.

On the project's AMD EPYC machines MKL's float32 GEMM is 2-4x slower than oneDNN's for the
skinny products of decoding (8-64 rows against a 576 x 1536 layer or the 49152 x 576 lm_head)
and about 2x for the learner's (thousands of rows; docs/benchmarks.md), and torch sends every
float32 `F.linear` on a CPU to MKL. oneDNN ships inside torch (`torch.ops.mkldnn.
_linear_pointwise`, the kernel inductor uses for CPU linears), so this is a routing change, not
a new dependency. Results agree with MKL's to float32 rounding (another summation order).

A frozen layer (the LoRA learner trains adapters beside the base weights, never the weights
themselves) needs only the input's gradient, grad_y @ W: oneDNN again, with W transposed as a
view. A layer whose weight requires a gradient keeps `F.linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_MARK = "_discover_onednn"


def available() -> bool:
    """oneDNN is built into this torch and gives MKL's result on a small probe."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w, b = torch.randn(3, 8), torch.randn(5, 8), torch.randn(5)
        got = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        return bool(torch.allclose(got, F.linear(x, w, b), rtol=1e-4, atol=1e-5))
    except (RuntimeError, AttributeError):
        return False


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


class _Frozen(torch.autograd.Function):
    """y = x W^T + b with W and b constant: the backward gives x's gradient only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(w)
        return _linear(x, w, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (w,) = ctx.saved_tensors
        return _linear(grad.contiguous(), w.t(), None), None, None


def _forward(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w, b = module.weight, module.bias
    if (x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32
            or w.requires_grad or (b is not None and b.requires_grad)):
        return F.linear(x, w, b)
    if torch.is_grad_enabled() and x.requires_grad:
        return _Frozen.apply(x, w, b)
    return _linear(x, w, b)


def install(model: torch.nn.Module) -> int:
    """Route the model's frozen nn.Linear layers through oneDNN; returns how many layers were
    routed (0 where oneDNN is missing or the model is not on a CPU). Layers added later (LoRA's
    own) are left as they are."""
    if next(model.parameters()).device.type != "cpu" or not available():
        return 0
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.Linear and not getattr(m, _MARK, False):
            m.forward = _forward.__get__(m)  # this instance only; the class stays as it is
            setattr(m, _MARK, True)
            n += 1
    return n
