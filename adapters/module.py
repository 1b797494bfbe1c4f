r"""The bridge: a spec plus a parameter tree becomes Zuko's own ``nn.Module`` tree.

A :class:`SpecModule` is built from a core spec: its own tensors are registered as
``nn.Parameter``\ s and buffers under the tree's keys, and every part of the spec that is
itself parametric (a network such as ``hyper``, a monotonic network such as ``univariate``)
becomes a child module of the class Zuko has there (an ``nn.Sequential`` of ``Linear``
layers and activation modules, callable). So ``named_parameters()`` are the tree's dotted
paths, and checkpoints load both ways.

Calling a module *binds* the tensors it reads at that moment (:func:`bind`):

* a child left as it was built (the same child objects, the same tensor names, no hooks,
  no parametrization) contributes its current tensors to the tree, and the pure core
  computes: ``functional_call(module, params, (c,))`` is ``module.spec.apply(params, c)``,
  operation for operation;
* any other child (a user's module, a parametrized layer, a pruned one, one with hooks, an
  edited ``nn.Sequential``) is *captured*: its current parameters and buffers are read now
  and it is run later through :func:`torch.func.functional_call` on them, so its forward,
  hooks and parametrizations run where Zuko runs them, on the tensors of this call.

Nothing is cached across calls: an edit of the module tree is seen by the next call, and
importing this module changes nothing in torch.
"""

from __future__ import annotations

__all__ = ["NoSpecError", "ParameterNode", "SpecModule", "adopt_univariate", "bind", "custom_hooks", "module_class",
           "module_settings", "module_trees", "runs_as_zuko", "spec_of", "to_module"]

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ..nn import Network
from ..pytree import unflatten_names
from ..spec import Parametric, Spec
from .capture import CapturedNetwork, CapturedUnivariate


class NoSpecError(TypeError):
    r"""Raised when a module without a pure spec (a module outside this library, or one
    whose children were replaced or edited) is asked for its spec."""


#: The public API of specs, which modules do not answer (``flow.init`` is not an attribute).
_SPEC_API = frozenset({"init", "init_state", "apply", "apply_checked", "check", "init_trees", "param_shapes",
                       "state_shapes", "default_state", "split_state_dict", "parts", "from_parts", "name"})


def module_settings(module: nn.Module) -> tuple[tuple[str, Any], ...]:
    r"""The public configuration a module holds (an activation's ``negative_slope``, ...)."""

    return tuple((k, v) for k, v in vars(module).items() if not k.startswith("_") and k != "training")


def _unchanged(d: dict[str, Any], settings: tuple[tuple[str, Any], ...]) -> bool:
    for k, v in settings:
        if d.get(k, _MISSING) != v:
            return False
    return True


_MISSING = object()


def _layout(module: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, nn.Module], tuple]:
    return tuple(module._parameters), tuple(module._buffers), dict(module._modules), module_settings(module)


def _freeze(module: nn.Module) -> None:
    r"""Records the module's layout as built (tensor names, child objects): :func:`_gather`
    takes the pure path only while it is unchanged."""

    module.__dict__["_built_layout"] = _layout(module)


def custom_hooks(module: nn.Module) -> tuple[str, ...]:
    r"""Which of Zuko's overridable methods (a class's ``_zuko_hooks``: ``meta``, ``f``,
    ``g``) the module redefines: a subclass (a user's) that defines one of them without
    declaring ``_zuko_hooks`` itself, or a function set on the instance, changes the
    computation, which then runs through those methods as in Zuko.

    Example:
        >>> from lazydist_functional.adapters.flows import MaskedAutoregressiveTransform
        >>> class Doubled(MaskedAutoregressiveTransform):
        ...     def meta(self, c, x):
        ...         return super().meta(c, x)
        >>> custom_hooks(Doubled(3)), custom_hooks(MaskedAutoregressiveTransform(3))
        (('meta',), ())
    """

    cls = type(module)
    names = getattr(cls, "_zuko_hooks", ())
    if not names:  # the hot path (every module of a tree, at every call): nothing to look up
        return ()
    # a function set on the instance (``t.meta = my_meta``) is looked up by Zuko's call too
    return tuple(n for n in names if n in module.__dict__ or "_zuko_hooks" not in vars(_owner(cls, n)))


def adopt_univariate(module: nn.Module, univariate: Any) -> None:
    r"""Registers a module given as a transform's ``univariate`` (an ``MNN``, a user's
    module) as its child ``univariate``, as Zuko does: its parameters then train and save
    with the transform's, and the transform runs as Zuko's does (:func:`runs_as_zuko`)."""

    if isinstance(univariate, nn.Module):
        children = dict(module._modules)
        module._modules.clear()  # Zuko registers ``univariate`` before ``hyper``: same state_dict order
        module._modules["univariate"] = univariate
        module._modules.update(children)


def runs_as_zuko(module: nn.Module) -> bool:
    r"""Whether a transform module computes through Zuko's methods (``meta``, its children)
    rather than its pure spec: its class overrides one of them (:func:`custom_hooks`), or
    it holds a module given as ``univariate`` (:func:`adopt_univariate`)."""

    if custom_hooks(module):
        return True
    if "univariate" not in module._modules:
        return False
    spec = module.__dict__.get("_spec")
    return spec is not None and spec.part("univariate") is None


def _owner(cls: type, name: str) -> type:
    r"""The class of ``cls``'s MRO that defines ``name``."""

    return next(c for c in cls.__mro__ if name in vars(c))


def _gather(module: nn.Module) -> tuple[dict[str, Any], dict[str, Any]] | None:
    r"""The module's current ``(params, state)`` trees if it is as built (see
    :func:`_freeze`), has no hooks and does not run through Zuko's methods (see
    :func:`runs_as_zuko`), else ``None``."""

    d = module.__dict__
    built = d.get("_built_layout")
    P, B, M = d["_parameters"], d["_buffers"], d["_modules"]
    if (built is None or d["_forward_hooks"] or d["_forward_pre_hooks"] or d["_backward_hooks"]
            or d["_backward_pre_hooks"]):  # a hook would run if it were called (then it must be)
        return None
    if (getattr(type(module), "_zuko_hooks", None) or "univariate" in M) and runs_as_zuko(module):
        return None  # (runs_as_zuko needs one of the two: most modules skip the call)
    pkeys, bkeys, children, settings = built
    if len(M) != len(children) or tuple(P) != pkeys or tuple(B) != bkeys:
        return None
    if not (P or B or M):
        return ({}, {}) if _unchanged(d, settings) else None  # an activation, unless edited in place
    params = {k: v for k, v in P.items() if v is not None}
    state = {k: v for k, v in B.items() if v is not None}
    for name, child in M.items():
        if children.get(name) is not child:
            return None
        sub = _gather(child)
        if sub is None:
            return None
        p, s = sub
        if p:
            params[name] = p
        if s:
            state[name] = s
    return params, state


def _global_hooks() -> bool:
    m = nn.modules.module
    return bool(m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks
                or m._global_backward_pre_hooks)


def bind(module: nn.Module, part: Parametric) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    r"""``(part, params, state)`` for one child of a module at call time.

    ``part`` is the spec's sub-spec the child was built from. While the child is as built,
    it is that part with the child's current tensors; otherwise a captured stand-in (a
    network or univariate spec that runs the child through ``functional_call`` on the
    tensors read now).
    """

    trees = None if _global_hooks() else _gather(module)
    if trees is not None:
        return part, trees[0], trees[1]
    captured = CapturedNetwork(module) if isinstance(part, Network) else CapturedUnivariate(module)
    return captured, *captured.capture()


def _container(params: Mapping[str, Any], state: Mapping[str, Any]) -> nn.Module:
    r"""A child holding a nested tree that is not a network: an ``nn.ParameterList`` for
    positional keys (Zuko's ``phi``), else a :class:`ParameterNode`."""

    keys = list(dict.fromkeys([*params, *state]))
    positional = keys == [str(i) for i in range(len(keys))]
    if positional and not state and all(isinstance(v, Tensor) for v in params.values()):
        child: nn.Module = nn.ParameterList(nn.Parameter(_own(params[k])) for k in keys)
    elif positional and all(isinstance(params.get(k, state.get(k)), Mapping) for k in keys):
        child = nn.ModuleList(_container(params.get(k, {}), state.get(k, {})) for k in keys)
    else:
        child = ParameterNode()
        _register(child, None, params, state)
    _freeze(child)
    return child


def _own(t: Any) -> Tensor:
    return torch.as_tensor(t).detach().clone()


def _register(module: nn.Module, spec: Parametric | None, params: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    r"""Registers the trees on ``module``: tensors as parameters / buffers, parametric parts
    of ``spec`` as child modules of their registered class, other nested trees as containers."""

    for key in dict.fromkeys([*params, *state]):
        p, s = params.get(key), state.get(key)
        part = None if spec is None else spec.part(key)
        if part is not None:
            module.add_module(key, to_module(part, p or {}, s or {}))
        elif isinstance(p, Mapping) or isinstance(s, Mapping):
            module.add_module(key, _container(p or {}, s or {}))
        else:
            if p is not None:
                module.register_parameter(key, nn.Parameter(_own(p)))
            if s is not None:
                module.register_buffer(key, _own(s))


def _configuration(spec: Parametric) -> list[str]:
    r"""The names of the configuration values a spec holds as instance attributes (``features``,
    ``passes``, ``shapes``, ...), which a module answers as Zuko's modules hold them: not private,
    not the spec's API, not a root of its trees (a tensor or child is the module's own), not a
    tensor or a part."""

    roots = _tree_roots(spec)
    return [k for k, v in vars(spec).items() if not k.startswith("_") and k not in _SPEC_API and k not in roots
            and not isinstance(v, (Tensor, Parametric))]


def _tree_roots(spec: Parametric) -> set[str]:
    r"""The top-level keys of a spec's parameter and state trees (the module's own names)."""

    return {name.split(".")[0] for name in (*spec.param_shapes, *spec.state_shapes)}


class ParameterNode(nn.Module):
    r"""A container for one level of a nested tree that is neither a network nor a
    positional list (used by specs without a Zuko counterpart); it is read, not called."""

    def extra_repr(self) -> str:
        tensors = {**self._parameters, **self._buffers}
        return ", ".join(f"{k}: {tuple(v.shape)}" for k, v in tensors.items() if v is not None)


def module_trees(module: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    r"""The module's current ``(params, state)`` trees (parameters, buffers) by dotted names."""

    params = unflatten_names(dict(module.named_parameters()))
    state = unflatten_names(dict(module.named_buffers()))
    return params, state


def zero_width_context(c: Any, context: int | None) -> torch.Size | None:
    r"""The batch shape of a context with no features, ``c`` of shape :math:`(*, 0)`, given to an
    unconditional module (``context == 0``), else ``None``. Zuko's flows take it (code that always
    passes a context, built with zero features): it sets the batch shape, as a context does.

    Example:
        >>> zero_width_context(torch.zeros(5, 0), 0), zero_width_context(torch.zeros(5, 2), 2)
        (torch.Size([5]), None)
    """

    if context == 0 and isinstance(c, Tensor) and c.dim() >= 1 and c.shape[-1] == 0:
        return c.shape[:-1]
    return None


def expand_to(out: Any, batch: torch.Size) -> Any:
    r"""A distribution expanded to the batch shape of a zero-width context; a transform as it is
    (its batch comes from its input)."""

    return out.expand(batch) if isinstance(out, torch.distributions.Distribution) else out


class SpecModule(nn.Module):
    r"""An ``nn.Module`` built from a core spec, whose call is the spec's pure function on
    the tensors the module holds when it is called (see the module docstring).

    Arguments:
        spec: a spec (see :class:`~lazydist_functional.Spec`) or a network.
        params: the parameter tree (default: ``spec.init(generator)``).
        state: the state tree (default: ``spec.init_state()``).
        generator: the random generator used when ``params`` is omitted.

    Example:
        >>> from lazydist_functional.flows import MaskedAutoregressiveTransform
        >>> spec = MaskedAutoregressiveTransform(3, 2)
        >>> module = SpecModule(spec, spec.init())
        >>> type(module.hyper).__name__, module.hyper(torch.randn(5)).shape
        ('MaskedMLP', torch.Size([6]))
    """

    def __init__(
        self,
        spec: Parametric | None = None,
        params: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        nn.Module.__init__(self)
        if spec is not None:
            self._populate(spec, params, state, generator)

    def _populate(self, spec: Parametric, params: Mapping[str, Any] | None, state: Mapping[str, Any] | None,
                  generator: torch.Generator | None) -> None:
        params, state = spec.init_trees(params, state, generator)
        self.__dict__["_spec"] = spec
        _register(self, spec, params, state)
        _freeze(self)

    def __getattr__(self, name: str) -> Any:
        r"""Parameters, buffers and submodules first (``nn.Module``); then the configuration
        the spec holds as instance attributes (``features``, ``passes``, ``shapes``, ...),
        which Zuko's modules hold as attributes. The spec's API is not forwarded."""

        try:
            return super().__getattr__(name)
        except AttributeError:
            spec = self.__dict__.get("_spec")
            if spec is None or name not in _configuration(spec):
                raise
            return vars(spec)[name]

    def __setattr__(self, name: str, value: Any) -> None:
        r"""A configuration attribute (``flow.transform.atol = 1e-8``, ``exact = False``) replaces
        the spec's value, read at the next call as Zuko's modules read theirs; anything else is
        ``nn.Module``'s (a parameter or buffer set to ``None`` leaves the layout as built)."""

        spec = self.__dict__.get("_spec")
        if (spec is not None and name in vars(spec) and not isinstance(value, (Tensor, nn.Module))
                and name in _configuration(spec)):
            self.__dict__["_spec"] = spec.with_configuration({name: value})
            return
        removed = value is None and (self._parameters.get(name) is not None or self._buffers.get(name) is not None)
        super().__setattr__(name, value)
        if removed:  # ``layer.bias = None``: computed through the module as it is now (see _gather)
            self.__dict__.pop("_built_layout", None)

    def __dir__(self) -> list[str]:
        r"""``nn.Module``'s names and the configuration attributes :meth:`__getattr__` answers."""

        spec = self.__dict__.get("_spec")
        return sorted({*super().__dir__(), *(() if spec is None else _configuration(spec))})

    def _bind(self) -> tuple[Parametric, dict[str, Any], dict[str, Any]]:
        r"""``(spec, params, state)`` of this call: the spec (with captured stand-ins for
        children that are not as built) and the tensors the module holds now."""

        spec = self._built_spec
        params = {k: v for k, v in self._parameters.items() if v is not None}
        state = {k: v for k, v in self._buffers.items() if v is not None}
        replaced: dict[str, Any] = {}
        for name, child in self._modules.items():
            part = spec.part(name)
            if part is not None:  # a network or univariate: bound (or captured)
                used, params[name], state[name] = bind(child, part)
                if used is not part:
                    replaced[name] = used
                continue
            p, s = _gather(child) or module_trees(child)  # a container of tensors (``phi``): read
            if p:
                params[name] = p
            if s:
                state[name] = s
        return (spec.with_parts(replaced) if replaced else spec), params, state

    @property
    def _built_spec(self) -> Parametric:
        r"""The spec this module was built from."""

        spec = self.__dict__.get("_spec")
        if spec is None:
            raise NoSpecError(
                f"{type(self).__name__} was not built from a spec. If it was unpickled from a file that "
                "Zuko itself saved (torch.save(flow)), it holds Zuko's internals: build the flow with the "
                "same arguments here and load the weights, flow.load_state_dict(loaded.state_dict())"
            )
        return spec

    @property
    def spec(self) -> Parametric:
        r"""The pure spec this module applies: the one it was built from, while its module
        tree is as built (:class:`NoSpecError` otherwise)."""

        spec = self._built_spec
        if _global_hooks() or _gather(self) is None:
            raise NoSpecError(f"{type(self).__name__}'s module tree was edited (a child replaced, a hook or a "
                              f"parametrization added): it has no pure spec")
        return spec

    def trees(self) -> tuple[dict[str, Any], dict[str, Any]]:
        r"""The current ``(params, state)`` trees: the tensors now held by the module,
        including those substituted by :func:`torch.func.functional_call`."""

        return module_trees(self)

    def forward(self, c: Tensor | None = None) -> Any:
        r"""Returns :math:`p(X | c)` (or the transform :math:`f(\cdot | c)`)."""

        batch = zero_width_context(c, getattr(self._built_spec, "context", None))
        if batch is not None:
            return expand_to(self.forward(None), batch)
        spec, params, state = self._bind()
        if self.training and isinstance(spec, Spec):  # batch-norm layers: batch statistics, buffers updated
            return spec.apply_checked(params, c, state, update_buffers=True)
        return spec.apply_checked(params, c, state)

    @classmethod
    def from_spec(
        cls,
        spec: Parametric,
        params: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> SpecModule:
        r"""An instance of this class holding ``spec`` and its trees, without calling the
        class's own (Zuko-signature) constructor."""

        module = object.__new__(cls)
        SpecModule.__init__(module, spec, params, state, generator)
        return module


def spec_of(module: nn.Module) -> Spec | None:
    r"""The spec a module applies, or ``None`` for modules outside this library (or edited)."""

    try:
        return module.spec if isinstance(module, SpecModule) else None
    except NoSpecError:
        return None


_MODULES: dict[type, type] = {}


def module_class(spec_cls: type) -> Callable[[type], type]:
    r"""Class decorator: modules of this class represent specs of ``spec_cls`` (and of
    its subclasses, unless a subclass has its own)."""

    def register(cls: type) -> type:
        _MODULES[spec_cls] = cls
        return cls

    return register


def to_module(
    spec: Parametric,
    params: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    r"""The adapter module of a spec (or network), holding ``params``/``state`` (default:
    fresh init).

    The module class is the one registered for the spec's class (nearest in its MRO):
    ``to_module(flows.MAF(3))`` is a ``zuko.flows.MAF`` whose ``.spec`` is that very
    spec; its children are the modules Zuko has at the same paths.

    Example:
        >>> from lazydist_functional import flows
        >>> spec = flows.NSF(2, 1)
        >>> module = to_module(spec, spec.init())
        >>> type(module).__name__, module.spec is spec, sorted(module.state_dict())[0]
        ('NSF', True, 'base.loc')
    """

    for cls in type(spec).__mro__:
        if cls in _MODULES:
            return _MODULES[cls].from_spec(spec, params, state, generator)
    raise TypeError(f"no adapter module is registered for specs of type {type(spec).__name__}")
