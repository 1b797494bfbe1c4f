r"""The adapter is Zuko's own module tree: callable children, parametrizations, hooks,
pruning, user modules and structure edits behave as on Zuko's modules (Zuko is the
oracle: the same edit on a Zuko flow holding the same weights gives the same log_prob)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import zuko
from torch._dynamo.testing import CompileCounter
from torch.func import functional_call, grad
from torch.nn.utils import parametrizations, prune

import lazydist_functional.adapters as ours
from lazydist_functional import random
from lazydist_functional.adapters.module import NoSpecError


def pair(name: str = "MAF", **kwargs):
    r"""A Zuko flow and ours of the same configuration holding the same weights."""

    torch.manual_seed(0)
    theirs = getattr(zuko.flows, name)(3, 2, hidden_features=[8, 8], **kwargs)
    mine = getattr(ours.flows, name)(3, 2, hidden_features=[8, 8], **kwargs)
    mine.load_state_dict(theirs.state_dict())
    return theirs, mine


def same_log_prob(theirs, mine, atol=1e-5):
    torch.manual_seed(1)
    c, x = torch.randn(6, 2), torch.randn(6, 3)
    a, b = theirs(c).log_prob(x), mine(c).log_prob(x)
    assert torch.allclose(a, b, atol=atol), (a - b).abs().max()
    return b


def hyper(flow, i=0):
    return flow.transform.transforms[i].hyper


@pytest.mark.parametrize("name", ["MAF", "NSF", "RealNVP"])
def test_children_are_zukos_modules_and_callable(name):
    theirs, mine = pair(name)
    for (pa, a), (pb, b) in zip(theirs.named_modules(), mine.named_modules(), strict=True):
        assert pa == pb and type(a).__name__ == type(b).__name__, (pa, type(a), type(b))
    x = torch.randn(4, hyper(theirs)[0].in_features)
    assert torch.allclose(hyper(mine)(x), hyper(theirs)(x), atol=1e-6)
    assert torch.allclose(hyper(mine)[0](x), hyper(theirs)[0](x), atol=1e-6)
    assert isinstance(hyper(mine)[0], nn.Linear) == isinstance(hyper(theirs)[0], nn.Linear)


@pytest.mark.parametrize("param", [
    lambda m: parametrizations.weight_norm(m),
    lambda m: parametrizations.spectral_norm(m),
], ids=["weight_norm", "spectral_norm"])
def test_parametrizations_of_a_layer(param):
    theirs, mine = pair()
    for flow in (theirs, mine):
        param(hyper(flow)[2])
        flow.eval()  # spectral_norm's power iteration updates only in training mode
    mine.load_state_dict(theirs.state_dict())
    same_log_prob(theirs, mine)


def test_orthogonal_parametrization_on_a_square_layer():
    theirs, mine = pair()
    for flow in (theirs, mine):
        parametrizations.orthogonal(hyper(flow)[2])
    mine.load_state_dict(theirs.state_dict())
    same_log_prob(theirs, mine)
    # it trains: gradients reach the parametrization's original
    loss = -mine(torch.randn(2)).log_prob(torch.randn(3))
    loss.backward()
    assert hyper(mine)[2].parametrizations.weight.original.grad.abs().sum() > 0


def test_weight_norm_under_functional_call_uses_the_given_tensors():
    _, mine = pair()
    parametrizations.weight_norm(hyper(mine)[0])
    params = {k: v.detach().clone() for k, v in mine.named_parameters()}
    c, x = torch.randn(2), torch.randn(3)

    def loss(p):
        return functional_call(mine, p, (c,)).log_prob(x)

    g = grad(loss)(params)
    key = "transform.transforms.0.hyper.0.parametrizations.weight.original0"  # the norms g
    assert g[key].abs().sum() > 0
    scaled = dict(params)
    scaled[key] = params[key] * 2
    assert not torch.allclose(loss(scaled), loss(params))
    # the distribution holds the tensors of its call, not those the module holds later
    d = functional_call(mine, scaled, (c,))
    assert torch.allclose(d.log_prob(x), loss(scaled))


def test_forward_hooks_and_pre_hooks_fire_and_act_as_on_zuko():
    theirs, mine = pair()
    calls = {"pre": 0, "post": 0}

    def pre(module, args):
        calls["pre"] += 1
        return (args[0] * 0.5,)

    def post(module, args, out):
        calls["post"] += 1
        return out * 0.9

    for flow in (theirs, mine):
        hyper(flow)[0].register_forward_pre_hook(pre)
        hyper(flow, 1).register_forward_hook(post)
    zuko_calls = dict(calls)
    same_log_prob(theirs, mine)
    assert calls["pre"] > 0 and calls["post"] > 0
    assert zuko_calls == {"pre": 0, "post": 0}


def test_pruning():
    theirs, mine = pair()
    for flow in (theirs, mine):
        prune.l1_unstructured(hyper(flow)[0], "weight", amount=0.5)
    mine.load_state_dict(theirs.state_dict())
    same_log_prob(theirs, mine)


def test_a_users_sequential_in_place_of_hyper():
    theirs, mine = pair()
    net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 6))
    theirs.transform.transforms[1].hyper = net
    mine.transform.transforms[1].hyper = copy.deepcopy(net)
    same_log_prob(theirs, mine)
    with pytest.raises(NoSpecError):
        mine.spec


def test_an_edited_sequential_layer():
    theirs, mine = pair()
    for flow in (theirs, mine):
        hyper(flow)[1] = nn.Tanh()
        hyper(flow, 2).append(nn.Identity())
    same_log_prob(theirs, mine)


def shift_class(base: type) -> type:
    r"""A user's lazy transform (a torch affine transform), written against ``base``."""

    class Shift(base):
        def __init__(self):
            super().__init__()
            self.shift = nn.Parameter(torch.ones(3))

        def forward(self, c=None):
            return torch.distributions.AffineTransform(self.shift, 1.0)

    return Shift


def test_a_users_lazy_transform_and_torch_transform():
    theirs, mine = pair()
    theirs.transform.transforms.append(shift_class(zuko.lazy.LazyTransform)())
    mine.transform.transforms.append(shift_class(ours.lazy.LazyTransform)())
    same_log_prob(theirs, mine)


@pytest.mark.parametrize("edit", ["del", "pop", "insert", "append", "assign", "assign_list"])
def test_structure_edits_are_seen_on_the_next_call(edit):
    theirs, mine = pair()
    same_log_prob(theirs, mine)  # called once before the edit
    new = {f: getattr(f, "transform").transforms[0] for f in (theirs, mine)}
    for flow in (theirs, mine):
        ts = flow.transform.transforms
        if edit == "del":
            del ts[1]
        elif edit == "pop":
            ts.pop(1)
        elif edit == "insert":
            ts.insert(0, copy.deepcopy(new[flow]))
        elif edit == "append":
            ts.append(copy.deepcopy(new[flow]))
        elif edit == "assign":
            ts[2] = copy.deepcopy(new[flow])
        else:
            flow.transform.transforms = nn.ModuleList(list(ts)[:1])
    same_log_prob(theirs, mine)


def test_load_state_dict_assign_and_in_place_updates():
    theirs, mine = pair()
    same_log_prob(theirs, mine)
    torch.manual_seed(3)
    other = zuko.flows.MAF(3, 2, hidden_features=[8, 8])
    mine.load_state_dict(other.state_dict(), assign=True)
    same_log_prob(other, mine)
    with torch.no_grad():
        for p in (other.parameters(), mine.parameters()):
            for t in p:
                t.mul_(1.1)
    same_log_prob(other, mine)


def test_modules_answer_zukos_attributes_not_the_specs_api():
    flow = ours.flows.MAF(3, 2)
    t = flow.transform.transforms[0]
    assert (t.features, t.passes, t.total) == (3, 3, 2)
    for name in ("init", "init_state", "param_shapes", "split_state_dict", "apply_checked"):
        assert not hasattr(flow, name) and not hasattr(t, name), name
    assert flow.apply.__func__ is nn.Module.apply  # nn.Module's, as on Zuko's modules
    assert type(flow.spec).__module__.startswith("lazydist_functional.flows")


def test_no_process_wide_hooks_or_counters():
    import lazydist_functional.adapters.module as module

    m = nn.modules.module
    for hooks in ("_global_module_registration_hooks", "_global_parameter_registration_hooks",
                  "_global_buffer_registration_hooks", "_global_forward_hooks", "_global_forward_pre_hooks"):
        assert len(getattr(m, hooks)) == 0, hooks
    assert not hasattr(module, "_STRUCTURE_VERSION")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MAF", "BPF"])
def test_compiled_module_does_not_recompile_for_unrelated_modules_or_updates(name):
    flow = getattr(ours.flows, name)(3, 2, hidden_features=[8])
    counter = CompileCounter()

    @torch.compile(backend=counter, dynamic=True)
    def log_prob(c, x):
        return flow(c).log_prob(x)

    c, x = torch.randn(5, 2), torch.randn(5, 3)
    expected = flow(c).log_prob(x)
    assert torch.allclose(log_prob(c, x), expected, atol=1e-5)
    nn.Linear(2, 2)
    flow.eval()
    with torch.no_grad():
        next(flow.parameters()).add_(0.01)
    flow(c).log_prob(x)  # eager between compiled calls
    log_prob(torch.randn(7, 2), torch.randn(7, 3))
    assert torch.allclose(log_prob(c, x), flow(c).log_prob(x), atol=1e-5)
    log_prob(torch.randn(9, 2), torch.randn(9, 3))
    assert counter.frame_count <= 2  # the first shapes, then one dynamic graph


def test_an_activation_edited_in_place():
    from functools import partial

    theirs, mine = pair(activation=partial(nn.LeakyReLU, 0.2))
    same_log_prob(theirs, mine)
    for flow in (theirs, mine):
        hyper(flow)[1].negative_slope = 0.5
    same_log_prob(theirs, mine)


def test_backward_hooks_of_a_layer_fire():
    theirs, mine = pair()
    seen = {"zuko": 0, "ours": 0}
    for key, flow in (("zuko", theirs), ("ours", mine)):
        hyper(flow)[2].register_full_backward_hook(lambda m, gi, go, key=key: seen.__setitem__(key, seen[key] + 1))
        flow(torch.randn(2)).log_prob(torch.randn(3)).backward()
    assert seen["ours"] > 0 and seen["ours"] == seen["zuko"]


def test_global_forward_hooks_see_the_layers_called():
    theirs, mine = pair()
    calls = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, a, o: calls.append(type(m).__name__))
    try:
        same_log_prob(theirs, mine)
    finally:
        handle.remove()
    assert "MaskedLinear" in calls


def test_a_replaced_parameter_list_is_read():
    torch.manual_seed(0)
    theirs, mine = zuko.mixtures.GMM(3, components=2), ours.mixtures.GMM(3, components=2)
    phi = nn.ParameterList(nn.Parameter(p.detach() + 0.1) for p in theirs.phi)
    theirs.phi, mine.phi = phi, copy.deepcopy(phi)
    x = torch.randn(5, 3)
    assert torch.allclose(theirs().log_prob(x), mine().log_prob(x), atol=1e-5)


@pytest.mark.parametrize("name, net", [("NAF", "network"), ("UNAF", "integrand")])
def test_a_parametrized_monotonic_network(name, net):
    torch.manual_seed(0)
    kwargs = {"transforms": 2, "hidden_features": [8], "network": {"hidden_features": [8]}}
    theirs, mine = getattr(zuko.flows, name)(3, 2, **kwargs), getattr(ours.flows, name)(3, 2, **kwargs)
    for flow in (theirs, mine):
        parametrizations.weight_norm(getattr(flow.transform.transforms[0].univariate, net)[0])
    mine.load_state_dict(theirs.state_dict())
    same_log_prob(theirs, mine, atol=1e-4)
    d, key = mine(torch.randn(16, 2)), random.key(0)
    x, log_p = d.rsample_and_log_prob(key=key)
    z = d.base.sample(key=key)
    reachable = (d.transform(x) - z).abs().amax(-1) < 1e-3  # base points inside the flow's image
    assert reachable.any()
    torch.testing.assert_close(log_p[reachable], d.log_prob(x)[reachable], atol=1e-3, rtol=1e-3)


def torch_linears(model: nn.Module) -> None:
    r"""Replaces every ``zuko.nn.Linear``-like layer by a plain ``nn.Linear`` sharing its
    tensors (a pattern of published code that prepares Zuko flows for other tools)."""

    for name, child in model.named_children():
        torch_linears(child)
        if type(child).__name__ == "Linear" and not isinstance(child, nn.Linear):
            plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            plain.weight = child.weight
            if child.bias is not None:
                plain.bias = child.bias
            setattr(model, name, plain)


@pytest.mark.parametrize("name", ["CNF", "GMM"])
def test_layers_replaced_by_plain_linears(name):
    theirs, mine = pair(name)
    for flow in (theirs, mine):
        torch_linears(flow)
    assert not any(type(m).__name__ == "Linear" and not isinstance(m, nn.Linear) for m in mine.modules())
    same_log_prob(theirs, mine, atol=1e-4)  # CNF: its hand-written JVP knew only its own MLP


@pytest.mark.parametrize("covariance_type", ["full", "diagonal"])
def test_gmm_initialize_on_an_edited_tree_writes_where_zuko_writes(covariance_type):
    edited, plain = pair("GMM", covariance_type=covariance_type)[1], pair("GMM", covariance_type=covariance_type)[1]
    torch_linears(edited)
    with pytest.raises(NoSpecError):
        edited.spec
    x = torch.randn(40, 3)
    for flow in (edited, plain):
        torch.manual_seed(2)
        flow.initialize(x, "kmeans")
    assert edited.covariance_type == covariance_type
    c, y = torch.randn(6, 2), torch.randn(6, 3)
    torch.testing.assert_close(edited(c).log_prob(y), plain(c).log_prob(y))


@pytest.mark.parametrize("edit", ["bias_none", "buffer_to_parameter"])
def test_a_tensor_removed_or_moved_between_parameters_and_buffers_as_zukos(edit):
    # layer.bias = None (a network without that bias), base.scale = nn.Parameter(...) (a base's
    # buffer made trainable): the next call computes with the edited module, as Zuko's does
    torch.manual_seed(0)
    theirs = zuko.flows.MAF(3, 2)
    mine = ours.flows.MAF(3, 2)
    mine.load_state_dict(theirs.state_dict())
    for flow in (theirs, mine):
        if edit == "bias_none":
            flow.transform.transforms[0].hyper[4].bias = None
        else:
            flow.base.scale = torch.nn.Parameter(2 * torch.ones(3))
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    lp = mine(c).log_prob(x)
    torch.testing.assert_close(lp, theirs(c).log_prob(x), atol=1e-5, rtol=1e-5)
    if edit == "buffer_to_parameter":
        lp.sum().backward()
        assert mine.base.scale.grad is not None and mine.base.scale.grad.abs().sum() > 0
