r"""``print(module)`` shows what Zuko 1.6 shows for the same construction; a seeded
construction gives Zuko's initial weights, and building and printing draw the same
numbers from torch's global generator (a seeded script prints a flow, then samples)."""

import pytest
import torch
import zuko

import lazydist_functional.adapters as A

CASES = [
    (name, dict(features=3, context=2)) for name in
    ["MAF", "NSF", "NCSF", "SOSPF", "BPF", "NAF", "UNAF", "GF", "GMM", "CNF", "RealNVP", "NICE"]
] + [
    ("MAF", dict(features=12, context=0)),
    ("MAF", dict(features=5, context=1, passes=2)),
    ("NSF", dict(features=1, context=3, bins=4)),
    ("RealNVP", dict(features=13, context=0)),
    ("NAF", dict(features=2, context=0, signal=4, network={"hidden_features": (8, 8)})),
    ("BPF", dict(features=2, context=1, degree=5)),
    ("GF", dict(features=1, context=0, components=3)),
    ("GMM", dict(features=2, context=0, components=4)),
    # residual blocks: Zuko's constructor draws layers it drops (pocomc, amplfi build so)
    ("MAF", dict(features=4, context=2, residual=True, hidden_features=[16, 16, 16])),
    ("NSF", dict(features=3, context=0, residual=True, hidden_features=[8, 16, 16], passes=2)),
    ("NAF", dict(features=2, context=1, residual=True, hidden_features=[16])),
]


@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_flow_repr_weights_and_rng_match_zuko(name, kwargs):
    torch.manual_seed(0)
    ours = getattr(A.flows, name)(**kwargs)
    ours_repr = repr(ours)
    after_ours = torch.randn(4)
    torch.manual_seed(0)
    theirs = getattr(zuko.flows, name)(**kwargs)
    theirs_repr = repr(theirs)
    after_theirs = torch.randn(4)
    assert ours_repr == theirs_repr
    assert torch.equal(after_ours, after_theirs)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()  # same seed, same initial weights
    assert ours_state.keys() == theirs_state.keys()
    assert all(torch.equal(ours_state[k], theirs_state[k]) for k in theirs_state)


def test_custom_flow_repr_matches_zuko():
    def build(z):
        return z.lazy.Flow(
            transform=[
                z.lazy.UnconditionalTransform(z.transforms.AffineTransform, torch.tensor(0.5), torch.tensor(2.0),
                                              buffer=True),
                z.flows.MaskedAutoregressiveTransform(features=5, context=8, adjacency=torch.eye(5, dtype=bool)
                                                      | torch.randn(5, 5).gt(0).tril()),
                z.flows.GeneralCouplingTransform(features=5, context=8, univariate=z.transforms.MonotonicRQSTransform,
                                                 shapes=([8], [8], [7]), activation=torch.nn.ELU).inv,
                z.lazy.UnconditionalTransform(z.transforms.RotationTransform, torch.randn(5, 5)),
            ],
            base=z.lazy.UnconditionalDistribution(z.distributions.BoxUniform, torch.full([5], -3.0),
                                                  torch.full([5], 3.0), buffer=True),
        )

    torch.manual_seed(1)
    ours = repr(build(A))
    torch.manual_seed(1)
    theirs = repr(build(zuko))
    assert ours == theirs


def test_hand_built_neural_layer_repr_matches_zuko():
    def build(z):
        return z.flows.MaskedAutoregressiveTransform(
            3, 2, univariate=z.flows.neural.UMNN(signal=4, stack=3, hidden_features=[8]), shapes=[(4,), ()])

    torch.manual_seed(2)
    ours = build(A)
    ours_repr = repr(ours)
    torch.manual_seed(2)
    theirs = build(zuko)
    assert ours_repr == repr(theirs)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))


def test_linear_repr_matches_zuko():
    for args in [(3, 4), (3, 4, False), (3, 4, True, 5)]:
        assert repr(A.nn.Linear(*args)) == repr(zuko.nn.Linear(*args))
        assert repr(A.nn.MonotonicLinear(*args)) == repr(zuko.nn.MonotonicLinear(*args))
