r"""The stateful training stack around the adapter: DDP, optimizers, pickling, devices."""

from __future__ import annotations

import copy
import os
import pickle

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import lazydist_functional.adapters as zuko


@pytest.fixture
def process_group():
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_single_process_matches_plain_module(process_group):
    torch.manual_seed(0)
    flow = zuko.flows.NSF(2, 1, hidden_features=[16])
    twin = copy.deepcopy(flow)
    ddp = DDP(flow)
    c, x = torch.randn(32, 1), torch.randn(32, 2)

    loss = -ddp(c).log_prob(x).mean()
    loss.backward()
    ref = -twin(c).log_prob(x).mean()
    ref.backward()

    assert torch.allclose(loss, ref)
    for (name, p), q in zip(flow.named_parameters(), twin.parameters(), strict=True):
        assert p.grad is not None, name
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_pickle_and_deepcopy_keep_log_prob():
    torch.manual_seed(0)
    flow = zuko.flows.MAF(3, 2, randperm=True)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    for clone in (pickle.loads(pickle.dumps(flow)), copy.deepcopy(flow)):
        assert torch.equal(clone(c).log_prob(x), flow(c).log_prob(x))
        # the clone owns its parameters: training it leaves the original unchanged
        with torch.no_grad():
            next(clone.parameters()).add_(1.0)
        assert not torch.equal(clone(c).log_prob(x), flow(c).log_prob(x))


def test_replacing_a_submodule_is_seen_by_forward():
    torch.manual_seed(0)
    flow = zuko.flows.MAF(3, 2)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    before = flow(c).log_prob(x)
    flow.transform.transforms[1] = zuko.flows.MaskedAutoregressiveTransform(3, 2)
    after = flow(c).log_prob(x)
    assert not torch.allclose(before, after)
    params, _ = flow.trees()
    assert params["transform"]["transforms"]["1"]["hyper"]["0"]["weight"] is flow.transform.transforms[1].hyper._modules["0"].weight


def test_to_double_and_back():
    torch.manual_seed(0)
    flow = zuko.flows.RealNVP(3, 2)
    c, x = torch.randn(4, 2), torch.randn(4, 3)
    lp = flow(c).log_prob(x)
    flow.double()
    lp64 = flow(c.double()).log_prob(x.double())
    assert lp64.dtype == torch.float64
    assert torch.allclose(lp64.float(), lp, atol=1e-5)
    torch.testing.assert_close(flow(c).log_prob(x), lp64)  # float32 data into float64 parameters: promoted
    flow.float()
    with pytest.raises(TypeError, match="float64"):
        flow(c.double())  # float64 context, float32 parameters: refused (not lossless)
