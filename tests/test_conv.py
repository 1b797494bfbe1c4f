r"""Pure convolutions (``nn.conv``): stacked weights, ``vmap``, the zero-initialized last layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from lazydist_functional import tree_stack
from lazydist_functional.checks import ShapeError
from lazydist_functional.nn import ConvNet, conv2d
from lazydist_functional.pytree import tree_map

from conftest import assert_close


def test_conv2d_matches_torch_with_any_batch_shape():
    x, w, b = torch.randn(2, 3, 4, 5, 5), torch.randn(6, 4, 3, 3), torch.randn(6)
    ref = F.conv2d(x.reshape(6, 4, 5, 5), w, b, padding=1).reshape(2, 3, 6, 5, 5)
    assert_close(conv2d(x, w, b), ref, atol=1e-5)
    assert conv2d(x[0, 0], w, b).shape == (6, 5, 5)


def test_stacked_weights_are_one_grouped_convolution():
    x, w, b = torch.randn(7, 3, 2, 4, 4), torch.randn(3, 5, 2, 3, 3), torch.randn(3, 5)
    y = conv2d(x, w, b)
    loop = torch.stack([F.conv2d(x[:, k], w[k], b[k], padding=1) for k in range(3)], dim=1)
    assert_close(y, loop, atol=1e-5)
    # one image broadcast against the stacked weights
    assert_close(conv2d(x[0, 0], w, b), torch.stack([F.conv2d(x[0, 0][None], w[k], b[k], padding=1)[0]
                                                     for k in range(3)]), atol=1e-5)


def test_convnet_under_vmap_over_params_and_zero_last_layer():
    net = ConvNet(2, 4, [8, 8])
    P = tree_stack([net.init(torch.Generator().manual_seed(i)) for i in range(3)])
    P = tree_map(lambda t: t + 0.1 * torch.randn_like(t), P)
    x = torch.randn(5, 2, 6, 6)
    y = vmap(lambda p: net.apply(p, x))(P)
    loop = torch.stack([net.apply(tree_map(lambda t: t[i], P), x) for i in range(3)])
    assert_close(y, loop, atol=1e-5)
    assert bool((net.apply(net.init(), x) == 0).all())
    assert not bool((ConvNet(2, 4, [8], zero_last=False).apply(ConvNet(2, 4, [8], zero_last=False).init(), x) == 0).all())


def test_convnet_bad_input():
    net = ConvNet(2, 4, [8])
    with pytest.raises(ShapeError, match=r"ConvNet's input should have shape \(\*, 2, H, W\), got \(5, 3, 6, 6\)"):
        net.apply(net.init(), torch.randn(5, 3, 6, 6))
    with pytest.raises(ValueError, match="odd kernel sizes"):
        ConvNet(2, 4, [8], kernel_sizes=[3, 2])
