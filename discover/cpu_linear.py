"""Linear layers through oneDNN instead of MKL when no gradient is wanted (CPU, float32).

On the project's AMD EPYC machines MKL's float32 GEMM is 2-4x slower than oneDNN's for the
skinny products of decoding (8-64 rows against a 576 x 1536 layer or the 49152 x 576 lm_head;
docs/benchmarks.md), and torch sends every float32 `F.linear` on a CPU to MKL. oneDNN ships
inside torch (`torch.ops.mkldnn._linear_pointwise`, the kernel inductor uses for CPU linears), so
this is a routing change, not a new dependency. Results agree with MKL's to float32 rounding
(a different summation order). Calls that need a gradient keep `F.linear` unchanged.
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


def _forward(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w, b = module.weight, module.bias
    if (x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32
            or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))):
        return F.linear(x, w, b)
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def install(model: torch.nn.Module) -> int:
    """Route the model's nn.Linear layers through oneDNN outside autograd; returns how many
    (0 where oneDNN is missing or the model is not on a CPU)."""
    if next(model.parameters()).device.type != "cpu" or not available():
        return 0
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.Linear and not getattr(m, _MARK, False):
            m.forward = _forward.__get__(m)  # this instance only; the class stays as it is
            setattr(m, _MARK, True)
            n += 1
    return n
