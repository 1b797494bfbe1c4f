r"""Cost growth of ``log_prob`` and the distance to the bare GEMM cost (issue 9).

(i)   N samples, 64 -> 65,536 (MAF, NSF; 5 features, 4 context, Zuko's default sizes);
(ii)  K stacked parameter sets vmapped, 1 -> 256 (64 samples each);
(iii) features, 2 -> 256 (N = 1024);

each timed, plotted on log-log axes with the least-squares slope :math:`a` of
:math:`t \propto x^a` (past the overhead-dominated small sizes, the expected slope is 1
in N and K; in features, the masked networks' first and last layers grow linearly).

(iv)  Large-batch ``log_prob`` against the bare GEMM cost of the same networks: every
      linear layer of the flow's parameters (2-D ``weight`` with its ``bias``) run as one
      ``addmm`` on an input of the right width, N rows each; the ratio is what the flow
      spends beyond its matrix products (activations, masks, the transforms and their
      log-determinants), eager and compiled (inductor). Issue 15's goal: compiled within
      1.5x. ``--floor`` adds the same compiled call with every CPU kernel vectorized
      (:data:`FLOOR_OPTIONS`): what the element-wise work costs once vectorized. For
      NAF/UNAF the floor also holds the GEMMs of their monotonic networks (weights
      stacked over features, one batched matmul per layer): the first layer's
      signal part once on N rows, the other layers on R N rows, R = 2 for NAF (value and
      tangent) and R = 33 for UNAF (32 Gauss-Legendre nodes and g(x)); their last column is
      the compiled call against those GEMMs plus one in-place ELU over every hidden output
      of the monotonic networks (the activation pass any evaluation of them needs: an exp
      per element), the floor that fits these flows. For GF (:data:`ELEMENTWISE_FLOOR`)
      ``--floor`` also times the element-wise work alone.

Usage: ``python benchmarks/scaling.py [--quick]``; writes ``results/scaling.json`` and
``results/scaling.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from common import compare, figure, loglog_slope, markdown_table, median_time, parser, save_figure, setup, write_json
from torch import Tensor
from torch.func import vmap

from lazydist_functional.catalogue import FLOWS, sample_input
from lazydist_functional.pytree import flatten_names
from lazydist_functional.trees import init_stacked

CONTEXT = 4


def log_prob_fn(name: str, features: int, n: int, k: int | None = None) -> Callable[[], Tensor]:
    r"""A no-argument call of ``log_prob`` on N samples (vmapped over K stacked params when given)."""

    spec = FLOWS[name].cls(features, CONTEXT)
    state = spec.init_state()
    if k is None:
        params = spec.init(torch.Generator().manual_seed(0))
        c, x = torch.randn(n, CONTEXT), sample_input(name, (n, features))
        return lambda: spec.apply(params, c, state=state).log_prob(x)
    stacked = init_stacked(spec, k)
    c, x = torch.randn(k, n, CONTEXT), sample_input(name, (k, n, features))
    return lambda: vmap(lambda p, ci, xi: spec.apply(p, ci, state=state).log_prob(xi))(stacked, c, x)


def sweep(name: str, axis: str, values: list[int], t_min: float) -> dict:
    times = []
    for v in values:
        fn = {"n": lambda: log_prob_fn(name, 5, v), "k": lambda: log_prob_fn(name, 5, 64, v),
              "features": lambda: log_prob_fn(name, v, 1024)}[axis]()
        with torch.no_grad():
            fn()
            times.append(median_time(fn, t_min))
    tail = len(values) // 2  # the slope of the large sizes, past the per-call overhead
    slope = loglog_slope(values[tail:], times[tail:])
    print(f"{name:8s} {axis:8s} slope {slope:.2f} (upper half), times {[f'{t:.1e}' for t in times]}", flush=True)
    return {"flow": name, "axis": axis, "values": values, "times_s": times, "slope": slope,
            "slope_all": loglog_slope(values, times)}


def linear_layers(params: Any) -> list[tuple[Tensor, Tensor | None]]:
    r"""Every ``(weight, bias)`` pair of a parameter tree whose weight is a matrix."""

    flat = flatten_names(params)
    return [(w, flat.get(key[: -len("weight")] + "bias")) for key, w in flat.items()
            if key.endswith("weight") and w.ndim == 2]


#: Evaluations of the stacked monotonic networks per sample (see (iv)).
EVALUATIONS = {"NAF": 2, "UNAF": 33}


def stacked_layers(params: Any) -> list[tuple[str, Tensor, Tensor | None]]:
    r"""Every ``(name, weight, bias)`` of a parameter tree whose weight is stacked (3-D)."""

    flat = flatten_names(params)
    return [(key, w, flat.get(key[: -len("weight")] + "bias")) for key, w in flat.items()
            if key.endswith("weight") and w.ndim == 3]


#: Inductor option of the ``--floor`` column: vectorize every CPU kernel (inductor's default
#: heuristic leaves scalar a kernel with 35 or more strided loads, e.g. 8 to 22 coefficients per
#: sample read from a network output), the cost a fully vectorized element-wise kernel would have.
FLOOR_OPTIONS = {"cpp.enable_tiling_heuristics": False}

#: Flows whose networks all run at ``apply`` (element-wise transforms of the context): with
#: ``--floor`` their element-wise work alone is timed too, ``log_prob`` of the distribution built
#: beforehand, compiled (no GEMM left in it but the :math:`D \times D` rotations); the floor is
#: (GEMMs + that) / GEMMs, what the compiled ``log_prob`` costs if nothing overlaps.
ELEMENTWISE_FLOOR = ("GF",)


def gemm_ratio(name: str, n: int, t_min: float, rounds: int, compiled: bool, floor: bool = False) -> dict:
    spec = FLOWS[name].cls(5, CONTEXT)
    params, state = spec.init(torch.Generator().manual_seed(0)), spec.init_state()
    layers = linear_layers(params)
    inputs = [torch.randn(n, w.shape[1]) for w, _ in layers]
    stacked = []
    for key, w, b in stacked_layers(params) if name in EVALUATIONS else []:
        first = key.endswith(".0.weight")  # the signal part only, once per sample
        w = w[..., 1:] if first else w
        rows = n if first else EVALUATIONS[name] * n
        stacked.append((w.mT.contiguous(), b, torch.randn(w.shape[0], rows, w.shape[-1])))
    c, x = torch.randn(n, CONTEXT), sample_input(name, (n, 5))

    def gemms() -> list[Tensor]:
        out = [torch.addmm(b, h, w.T) if b is not None else h @ w.T for (w, b), h in zip(layers, inputs)]
        return out + [torch.baddbmm(b[:, None], h, wt) if b is not None else torch.bmm(h, wt) for wt, b, h in stacked]

    def gemms_and_activations() -> list[Tensor]:
        # NAF/UNAF floor: their GEMMs, and the one activation pass (ELU, in place: an exp per
        # element) that every hidden output of their monotonic networks needs at least.
        out = gemms()
        for y, (wt, _, _) in zip(out[len(layers):], stacked):
            if wt.shape[-1] > 1:  # a hidden layer (the last one has one output)
                torch.nn.functional.elu_(y)
        return out

    def log_prob(c: Tensor, x: Tensor) -> Tensor:
        return spec.apply(params, c, state=state).log_prob(x)

    fns = {"log_prob": lambda: log_prob(c, x), "gemm": gemms}
    if stacked:
        fns["gemm_act"] = gemms_and_activations
    with torch.no_grad():
        if compiled:
            # every flow compiles ``log_prob``'s one code object: without a reset, dynamo's
            # recompilation limit (8) is passed at the ninth flow, which then runs eagerly
            torch._dynamo.reset()
            fast = torch.compile(log_prob, dynamic=False)
            fast(c, x)
            fns["compiled"] = lambda: fast(c, x)
            if floor:
                # its own function: a second entry per flow in the cache of ``log_prob``'s code would
                # pass dynamo's recompilation limit after 4 flows (and the rest would run eagerly)
                def all_vectorized(c: Tensor, x: Tensor) -> Tensor:
                    return spec.apply(params, c, state=state).log_prob(x)

                vectorized = torch.compile(all_vectorized, dynamic=False, options=FLOOR_OPTIONS)
                vectorized(c, x)
                fns["vectorized"] = lambda: vectorized(c, x)
            if floor and name in ELEMENTWISE_FLOOR:
                built = spec.apply(params, c, state=state)

                def elementwise(x: Tensor) -> Tensor:
                    return built.log_prob(x)

                alone = torch.compile(elementwise, dynamic=False)
                alone(x)
                fns["elementwise"] = lambda: alone(x)
        t = compare(fns, t_min, rounds)
    row = {"flow": name, "n": n, "layers": len(layers) + len(stacked), **{f"{k}_s": v for k, v in t.items()},
           "log_prob_over_gemm": t["log_prob"] / t["gemm"]}
    if compiled:
        row["compiled_over_gemm"] = t["compiled"] / t["gemm"]
    if "vectorized" in t:
        row["vectorized_over_gemm"] = t["vectorized"] / t["gemm"]
    if "elementwise" in t:
        row["floor_over_gemm"] = (t["gemm"] + t["elementwise"]) / t["gemm"]
        print(f"{name:8s} element-wise work alone (compiled) {t['elementwise'] / t['gemm']:.2f} x the GEMMs: "
              f"floor (GEMMs + it) / GEMMs {row['floor_over_gemm']:.2f}", flush=True)
    if "gemm_act" in t and compiled:
        row["compiled_over_gemm_act"] = t["compiled"] / t["gemm_act"]
    print(f"{name:8s} N={n} log_prob/GEMM {row['log_prob_over_gemm']:6.2f}, compiled "
          f"{row.get('compiled_over_gemm', float('nan')):6.2f}, all kernels vectorized "
          f"{row.get('vectorized_over_gemm', float('nan')):6.2f}, compiled / (GEMMs + ELUs) "
          f"{row.get('compiled_over_gemm_act', float('nan')):6.2f} ({row['layers']} layers)", flush=True)
    return row


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--flows", default="MAF,NSF", help="flows of the growth sweeps")
    p.add_argument("--gemm-flows", default=None, help="flows of the GEMM table (default: all; --quick: MAF,NSF)")
    p.add_argument("--no-compile", action="store_true", help="GEMM table without the compiled column")
    p.add_argument("--only-gemm", action="store_true", help="skip the growth sweeps")
    p.add_argument("--floor", action="store_true",
                   help="GEMM table: also compiled with every CPU kernel vectorized (inductor's heuristic off)")
    args = p.parse_args()
    t_min = setup(args)
    q = args.quick
    grids = {
        "n": [2**i for i in range(6, 17, 2 if q else 1)][: 5 if q else None],
        "k": [1, 4, 16, 64] if q else [1, 2, 4, 8, 16, 32, 64, 128, 256],
        "features": [2, 8, 32] if q else [2, 4, 8, 16, 32, 64, 128, 256],
    }
    names = args.flows.split(",")[: 1 if q else None]
    sweeps = [] if args.only_gemm else [sweep(name, axis, values, t_min) for name in names for axis, values in grids.items()]
    gemm_names = (args.gemm_flows or ("MAF,NSF" if q else ",".join(FLOWS))).split(",")
    gemm = [gemm_ratio(name, 4096 if q else 16384, t_min, 1 if q else 3, not args.no_compile, args.floor)
            for name in gemm_names]
    print()
    print(markdown_table(sweeps, ["flow", "axis", "slope", "slope_all"],
                         ["flow", "growth in", "log-log slope (upper half)", "slope (all sizes)"]))
    print()
    print(markdown_table(gemm, ["flow", "n", "layers", "log_prob_s", "gemm_s", "log_prob_over_gemm", "compiled_over_gemm",
                                "vectorized_over_gemm", "floor_over_gemm", "compiled_over_gemm_act"],
                         ["flow", "N", "linear layers", "log_prob (s)", "GEMMs (s)", "eager / GEMM", "compiled / GEMM",
                          "compiled, all kernels vectorized / GEMM (--floor)",
                          "(GEMMs + compiled element-wise work alone) / GEMM (--floor, GF)",
                          "compiled / (GEMMs + hidden ELUs), NAF/UNAF"]))
    write_json("scaling" if sweeps else "scaling_gemm", {"quick": q, "sweeps": sweeps, "gemm": gemm}, args.out)
    if not sweeps:
        return
    fig, axes = figure(ncols=3, width=4.5)
    for ax, axis in zip(axes, grids):
        for s in (s for s in sweeps if s["axis"] == axis):
            ax.loglog(s["values"], s["times_s"], "o-", label=f"{s['flow']} (slope {s['slope']:.2f})")
        ax.set(xlabel={"n": "N samples", "k": "K parameter sets (64 samples)", "features": "features (N=1024)"}[axis],
               ylabel="log_prob time (s)")
        ax.legend(fontsize=8)
    save_figure(fig, "scaling", args.out)


if __name__ == "__main__":
    main()
