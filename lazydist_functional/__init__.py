r"""lazydist-functional: probability distributions and normalizing flows, the functional way.

Specs are pure: ``spec.init(generator) -> params`` (a pytree of tensors) and
``spec.apply(params, c) -> Distribution``. Every flow works under ``torch.func``
(``vmap``, ``grad``, ``jacrev``, ``functional_call``) and ``torch.compile``.
The stateful, Zuko-compatible side lives in :mod:`lazydist_functional.adapters`.
"""

__version__ = "0.1.0"

from . import bayesian, catalogue, distributed, distributions, flows, nn, random, transforms
from .checks import ConfigError, ContextError, DtypeError, InputTypeError, LazydistError, ParamTreeError, ShapeError
from .pytree import NAMESPACE, Partial, flatten_names, register_pytree_class, unflatten_names
from .spec import Spec
from .trees import (
    init_stacked,
    tree_add,
    tree_cast,
    tree_check_same,
    tree_combine,
    tree_partition,
    tree_axpy,
    tree_scale,
    tree_stack,
    tree_sub,
    tree_unstack,
)

__all__ = [
    "NAMESPACE",
    "ConfigError",
    "ContextError",
    "DtypeError",
    "InputTypeError",
    "LazydistError",
    "ParamTreeError",
    "ShapeError",
    "Partial",
    "Spec",
    "bayesian",
    "catalogue",
    "distributed",
    "distributions",
    "flatten_names",
    "flows",
    "init_stacked",
    "nn",
    "random",
    "register_pytree_class",
    "transforms",
    "tree_add",
    "tree_cast",
    "tree_check_same",
    "tree_combine",
    "tree_partition",
    "tree_axpy",
    "tree_scale",
    "tree_stack",
    "tree_sub",
    "tree_unstack",
    "unflatten_names",
]
