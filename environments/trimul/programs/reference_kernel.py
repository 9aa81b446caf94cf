"""TriMul (outgoing triangle multiplicative update) in plain PyTorch: the starting point."""

import torch
import torch.nn.functional as F


def custom_kernel(data):
    x, mask, w, config = data
    c, h = config["dim"], config["hidden_dim"]
    xn = F.layer_norm(x, (c,), w["norm.weight"], w["norm.bias"], 1e-5)
    m = mask.unsqueeze(-1)
    left = F.linear(xn, w["left_proj.weight"]) * m * torch.sigmoid(
        F.linear(xn, w["left_gate.weight"]))
    right = F.linear(xn, w["right_proj.weight"]) * m * torch.sigmoid(
        F.linear(xn, w["right_gate.weight"]))
    gate = torch.sigmoid(F.linear(xn, w["out_gate.weight"]))
    out = torch.einsum("bikd,bjkd->bijd", left, right)  # sum over k
    out = F.layer_norm(out, (h,), w["to_out_norm.weight"], w["to_out_norm.bias"], 1e-5)
    return F.linear(out * gate, w["to_out.weight"])
