"""oneDNN linears (discover.model.cpu_linear): MKL's results and gradients, on the real model."""

import pytest
import torch

from discover.model import cpu_linear

pytestmark = pytest.mark.skipif(not cpu_linear.available(), reason="torch built without oneDNN")


def test_outputs_and_input_gradients_equal_f_linear():
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 80)
    ref = torch.nn.Linear(48, 80)
    ref.load_state_dict(layer.state_dict())
    layer.requires_grad_(False)
    ref.requires_grad_(False)
    assert cpu_linear.install(layer) == 1 and cpu_linear.install(layer) == 0  # once per layer
    x = torch.randn(3, 7, 48, requires_grad=True)
    y = layer(x)
    assert y.grad_fn is not None and "Frozen" in type(y.grad_fn).__name__  # routed
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (want,) = torch.autograd.grad(ref(x), x, g)
    torch.testing.assert_close(gx, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-5)


def test_a_trainable_weight_keeps_f_linear_and_its_gradient():
    torch.manual_seed(1)
    layer = torch.nn.Linear(16, 8)
    cpu_linear.install(layer)
    x = torch.randn(5, 16)
    layer(x).square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    want = torch.autograd.grad(torch.nn.functional.linear(x, layer.weight, layer.bias)
                               .square().sum(), layer.weight)[0]
    torch.testing.assert_close(layer.weight.grad, want)


@pytest.mark.slow
def test_the_embedded_model_gives_the_same_logits():
    from discover.backends.hf import HFPolicy

    fast = HFPolicy(threads=2, shared_prefill=False)
    slow = HFPolicy(threads=2, shared_prefill=False, onednn=False)
    ids = torch.tensor([fast.encode("Write a Python function that adds two numbers.")])
    with torch.no_grad():
        a, b = fast.model(input_ids=ids).logits, slow.model(input_ids=ids).logits
    assert not any(getattr(m, "_discover_onednn", False) for m in slow.model.modules())
    torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
