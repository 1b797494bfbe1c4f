r"""The stateful side: Zuko-compatible ``nn.Module`` lazy distributions.

A drop-in for Zuko 1.6's namespace (``lazy``, ``flows``, ``distributions``,
``transforms``, ``nn``, ``utils``) for what exists so far::

    import lazydist_functional.adapters as zuko

    flow = zuko.flows.NSF(3, 4)
    loss = -flow(c).log_prob(x).mean()

Every module computes its forward with the pure spec, so
``torch.func.functional_call(module, params, (c,))`` equals ``spec.apply(params, c)``.
"""

from . import bayesian, distributions, flows, lazy, mixtures, nn, transforms, utils
from .functional import from_zuko, to_functional
from .module import SpecModule

__version__ = "1.6.0"

__all__ = [
    "SpecModule",
    "bayesian",
    "distributions",
    "flows",
    "from_zuko",
    "lazy",
    "mixtures",
    "nn",
    "to_functional",
    "transforms",
    "utils",
]
