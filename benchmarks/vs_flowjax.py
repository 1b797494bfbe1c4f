r"""This library (eager and compiled) against FlowJAX (``jax.jit``), same architecture,
timed side by side and alternating in one run (issue 9).

Architecture: 3 features, 5 context features, 3 transforms, hidden [64, 64] (FlowJAX:
``nn_width=64, nn_depth=2``), N = 1024; MAF (affine) and NSF (rational-quadratic
spline, 8 bins, bound 5). Cases: ``log_prob``, one gradient of the mean NLL
(ours: ``torch.func.grad``, eager and ``torch.compile``; FlowJAX: ``eqx.filter_jit`` of
``eqx.filter_grad``) and K=32 parameter sets x 64 samples in one ``vmap`` (FlowJAX:
``eqx.filter_vmap`` over flows built by ``eqx.filter_vmap`` of the constructor). Ratios are ours / FlowJAX (below 1: ours is faster). Issue 9's
goal: eager <= 1.5x, compiled <= 1.0x.

Needs the optional ``bench`` extra (``pip install "jax[cpu]" flowjax``); without it the
script says so and exits 0.

Usage: ``python benchmarks/vs_flowjax.py [--quick]``; writes ``results/flowjax.json`` (the file is not named ``flowjax.py``: it would shadow the package).
"""

from __future__ import annotations

import sys

import torch
from common import compare, markdown_table, parser, setup, write_json
from torch.func import grad, vmap

from lazydist_functional.catalogue import FLOWS
from lazydist_functional.trees import init_stacked

try:
    import equinox as eqx
    import flowjax
    import jax
    import jax.numpy as jnp
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import masked_autoregressive_flow
except ImportError as error:  # the optional `bench` extra is not installed
    MISSING: ImportError | None = error
else:
    MISSING = None

FEATURES, CONTEXT, TRANSFORMS, HIDDEN = 3, 5, 3, [64, 64]
K, M = 32, 64  # the ensemble case: K parameter sets x M samples each, one vmap


def ours(name: str, n: int) -> dict[str, dict]:
    kwargs = {"bins": 8} if name == "NSF" else {}
    spec = FLOWS[name].cls(FEATURES, CONTEXT, transforms=TRANSFORMS, hidden_features=HIDDEN, **kwargs)
    params, state = spec.init(torch.Generator().manual_seed(0)), spec.init_state()
    c, x = torch.randn(n, CONTEXT), torch.randn(n, FEATURES)

    def log_prob(p):
        return spec.apply(p, c, state=state).log_prob(x)

    def grad_step(p):
        return grad(lambda q: -log_prob(q).mean())(p)

    stacked = init_stacked(spec, K)
    cs, xs = torch.randn(K, M, CONTEXT), torch.randn(K, M, FEATURES)

    def ensemble(p):
        return vmap(lambda q, ci, xi: spec.apply(q, ci, state=state).log_prob(xi))(p, cs, xs)

    cases = {"log_prob": (log_prob, params), "grad": (grad_step, params), f"K={K}x{M} vmap": (ensemble, stacked)}
    return {case: {"eager": (lambda f=f, a=a: f(a)), "compiled": (lambda g=torch.compile(f), a=a: g(a))}
            for case, (f, a) in cases.items()}


def theirs(name: str, n: int) -> dict[str, object]:
    transformer = RationalQuadraticSpline(knots=8, interval=5) if name == "NSF" else None

    def make(key):
        return masked_autoregressive_flow(
            key, base_dist=Normal(jnp.zeros(FEATURES)), transformer=transformer,
            cond_dim=CONTEXT, flow_layers=TRANSFORMS, nn_width=HIDDEN[0], nn_depth=len(HIDDEN),
        )

    flow = make(jax.random.key(0))
    flows = eqx.filter_vmap(make)(jax.random.split(jax.random.key(2), K))
    cs, xs = jax.random.normal(jax.random.key(3), (K, M, CONTEXT)), jax.random.normal(jax.random.key(4), (K, M, FEATURES))
    ensemble = eqx.filter_jit(eqx.filter_vmap(lambda f, ci, xi: f.log_prob(xi, condition=ci)))
    kx, kc = jax.random.split(jax.random.key(1))
    x, c = jax.random.normal(kx, (n, FEATURES)), jax.random.normal(kc, (n, CONTEXT))
    log_prob = eqx.filter_jit(lambda f: f.log_prob(x, condition=c))
    grad_step = eqx.filter_jit(eqx.filter_grad(lambda f: -f.log_prob(x, condition=c).mean()))
    return {"log_prob": lambda: jax.block_until_ready(log_prob(flow)),
            "grad": lambda: jax.block_until_ready(grad_step(flow)),
            f"K={K}x{M} vmap": lambda: jax.block_until_ready(ensemble(flows, cs, xs))}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=1024)
    args = p.parse_args()
    if MISSING is not None:
        print(f"skipped: FlowJAX comparison needs the `bench` extra (pip install 'jax[cpu]' flowjax): {MISSING}")
        sys.exit(0)
    t_min = setup(args)
    rounds = 1 if args.quick else 5
    rows = []
    for name in ("MAF", "NSF"):
        mine, other = ours(name, args.n), theirs(name, args.n)
        for case in mine:
            t = compare({"eager": mine[case]["eager"], "compiled": mine[case]["compiled"], "flowjax": other[case]},
                        t_min, rounds)
            rows.append({"flow": name, "case": case, "n": args.n, **{f"{k}_s": v for k, v in t.items()},
                         "eager_over_flowjax": t["eager"] / t["flowjax"],
                         "compiled_over_flowjax": t["compiled"] / t["flowjax"]})
            print(f"{name} {case}: eager/flowjax {rows[-1]['eager_over_flowjax']:.2f}, "
                  f"compiled/flowjax {rows[-1]['compiled_over_flowjax']:.2f}", flush=True)
    print()
    print(markdown_table(rows, ["flow", "case", "n", "eager_over_flowjax", "compiled_over_flowjax"],
                         ["flow", "case", "N", "ours eager / FlowJAX jit", "ours compiled / FlowJAX jit"]))
    write_json("flowjax", {"quick": args.quick, "jax": jax.__version__, "flowjax": flowjax.__version__,
                           "rows": rows}, args.out)


if __name__ == "__main__":
    main()
