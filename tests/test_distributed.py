r"""The sharded ensemble mixture (``lazydist_functional.distributed``) run by 2 gloo
processes on CPU (loopback only) equals the single-process result: the mixture
log-density on every rank, and the gradient of a loss on each rank's shard."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lazydist_functional.distributed import member_log_probs, mixture_log_prob, shard_range, shard_tree
from lazydist_functional.flows import MAF, NSF
from lazydist_functional.pytree import flatten_names, tree_map
from lazydist_functional.trees import init_stacked

WORLD = 2
CASES = {  # name: (spec, members)
    "MAF-K4": (lambda: MAF(2, 1, transforms=2, hidden_features=[8]), 4),
    "NSF-K5-uneven": (lambda: NSF(2, 1, transforms=1, hidden_features=[8]), 5),
}


def _data(k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(k)
    return torch.randn(7, 2, generator=g), torch.randn(7, 1, generator=g), torch.randn(7, generator=g)


def _loss_and_grads(spec, params, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x, c, w = _data(k)
    params = tree_map(lambda t: t.detach().requires_grad_(), params)
    lp = mixture_log_prob(spec, params, x, c)
    (lp * w).sum().backward()  # a replicated loss, the same on every rank
    return lp.detach(), {name: t.grad for name, t in flatten_names(params).items()}


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for name, (make, k) in CASES.items():
            spec = make()
            results[name] = _loss_and_grads(spec, shard_tree(init_stacked(spec, k)), k)
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = str(tmp_path_factory.mktemp("distributed"))
    mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(CASES))
def test_sharded_mixture_equals_single_process(ranks, name):
    make, k = CASES[name]
    spec = make()
    lp, grads = _loss_and_grads(spec, init_stacked(spec, k), k)
    for rank, result in enumerate(ranks):
        lp_r, grads_r = result[name]
        torch.testing.assert_close(lp_r, lp, atol=1e-5, rtol=0)
        start, stop = shard_range(k, rank, WORLD)
        assert sorted(grads_r) == sorted(grads)
        for key, g in grads.items():
            assert grads_r[key].shape[0] == stop - start
            torch.testing.assert_close(grads_r[key], g[start:stop], atol=1e-5, rtol=0)


def test_single_process_mixture_is_logmeanexp_of_members():
    spec = MAF(2, 1, hidden_features=[8])
    params = init_stacked(spec, 3)
    x, c, _ = _data(3)
    lp = member_log_probs(spec, params, x, c)
    expected = torch.logsumexp(lp, 0) - torch.log(torch.tensor(3.0))
    torch.testing.assert_close(mixture_log_prob(spec, params, x, c), expected)


def test_shards_cover_members_and_bad_input_raises():
    assert [shard_range(5, r, 3) for r in range(3)] == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(ValueError, match="expected k >= ranks"):
        shard_range(1, 0, 2)
    with pytest.raises(ValueError, match="rank must be in"):
        shard_range(4, 2, 2)
    with pytest.raises(ValueError, match="stacked on axis 0"):
        shard_tree({"a": torch.zeros(3, 2), "b": torch.zeros(4)}, 0, 2)
