r"""Compiled vmap vs the compiled batched module call, every flow (issue 15, item 1).

For each flow of :data:`lazydist_functional.catalogue.FLOWS` (5 features, 4 context
features, Zuko's default sizes) and N in {256, 1024, 4096}, both compiled with
``torch.compile(..., dynamic=True)`` (inductor by default), warm, side by side:

(a) the batched module call:        ``module(c).log_prob(x)``
(b) vmap of the per-sample apply:   ``vmap(lambda c, x: spec.apply(p, c).log_prob(x))(C, X)``

and the same for ``sample()`` (``vmap(..., randomness="different")``; ``--sample``), and
for one training step of the hypernetwork case (each sample's flow parameters produced
by a hypernetwork from its own context, gradient w.r.t. the hypernetwork): the flow
vmapped per sample against the same flow applied once to the parameter tree with a
leading dimension N (batched parameters, no ``vmap``). Goal: (b)/(a) <= 1.05.

The vmapped side's parameter tensors are marked static (``torch._dynamo.mark_static``), as
dynamo treats the module's parameters: with ``dynamic=True`` every dim of a closed-over tensor
would otherwise be symbolic (the flow's feature and hidden sizes too), which costs the vmapped
graph 10-25% against the module's static-parameter graph.

Each compiled callable is compiled once per batch size it has to re-specialize for; the
table prints the number of graphs each one compiled across the three sizes (goal: <= 2),
the guard that failed (why it recompiled) and any graph break (``torch._dynamo``
counters); for a miss (> 1.05), the heavy operations whose counts differ between the two
graphs inductor receives (e.g. ``bmm 9->0, sum.dim_IntList 6->15``: GEMMs lowered to
reduction loops under vmap).

On a GPU (``--device cuda``), ``--mode reduce-overhead`` compiles both sides with CUDA graphs
(issue 15, item 7: the small-N case, where launches dominate); outputs are cloned on the
first call, as CUDA-graph outputs are overwritten by the next replay.

Usage: ``python benchmarks/compiled_vmap.py [--quick] [--flows MAF,NSF,hypernet] [--sizes 256,1024]
[--sample | --sample-only] [--device cuda] [--mode reduce-overhead] [--deadline 300]``;
writes ``results/compiled_vmap.json`` and ``results/compiled_vmap.png`` (``compiled_vmap_<device>[_<mode>]``
off the CPU's default mode), rewritten after each flow so that a run stopped at ``--deadline``
or killed keeps what it measured.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch._dynamo
import torch._inductor.config as inductor_config
from common import compare, figure, markdown_table, parser, save_figure, setup, write_json
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.utils import counters, guard_failures
from torch._inductor.decomposition import select_decomp_table
from torch.func import grad, vmap

import lazydist_functional.adapters as Z
import lazydist_functional.meta as M
from lazydist_functional.catalogue import FLOWS, sample_input
from lazydist_functional.flows import MAF
from lazydist_functional.nn import MLP
from lazydist_functional.pytree import tree_leaves, tree_map

FEATURES, CONTEXT = 5, 4


def uses_cudagraphs(mode: str | None) -> bool:
    r"""Whether ``torch.compile``'s ``mode`` records CUDA graphs (``reduce-overhead`` and its variants)."""

    return mode is not None and "reduce-overhead" in mode


class Compiled:
    r"""A ``torch.compile``\ d callable that records its compilations, graph breaks and the
    guards that made it recompile."""

    def __init__(self, fn: Callable[..., Any], backend: str, mode: str | None = None) -> None:
        self.fn = torch.compile(fn, backend=backend, dynamic=True, mode=mode)
        self.cudagraphs = uses_cudagraphs(mode)
        self.graphs, self.breaks, self.compile_s = 0, set(), 0.0
        self.errors: list[str] = []

    def first_call(self, *args: Any) -> Any:
        graphs, breaks = counters["stats"]["unique_graphs"], set(counters["graph_break"])
        start = time.perf_counter()
        out = self.fn(*args)
        if self.cudagraphs:  # the next replay overwrites a CUDA graph's outputs
            out = tree_map(torch.clone, out)
        self.compile_s += time.perf_counter() - start
        self.graphs += counters["stats"]["unique_graphs"] - graphs
        self.breaks |= set(counters["graph_break"]) - breaks
        return out

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def aten_ops(fn: Callable[..., Any], args: tuple) -> Counter:
    r"""The aten operations of the forward graph(s) inductor would receive for ``fn(*args)``
    (``dynamic=True``, inductor's decompositions), counted by name."""

    graphs: list[Any] = []

    def record(gm: Any, inputs: Any) -> Callable[..., Any]:
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=aot_autograd(fw_compiler=record, decompositions=select_decomp_table()),
                  dynamic=True)(*args)
    return Counter(str(n.target).removeprefix("aten.").removesuffix(".default")
                   for gm in graphs for n in gm.graph.nodes if n.op == "call_function")


#: Operations whose count differing between the two graphs says where the time goes.
HEAVY = ("mm", "addmm", "bmm", "baddbmm", "sum.dim_IntList", "clone", "expand", "cat", "index.Tensor",
         "gather", "scatter", "where.self", "cumsum", "searchsorted.Tensor")


def op_difference(case: dict) -> str:
    r"""Why a compiled vmap is slower than the batched call, as the difference of the two
    graphs' heavy operations (e.g. ``bmm 9->0, sum 6->15``: a GEMM lowered to reductions)."""

    ops = {k: aten_ops(fn, case["args"]) for k, fn in case["fns"].items()}
    diff = [f"{op} {ops['module'][op]}->{ops['vmap'][op]}" for op in HEAVY if ops["module"][op] != ops["vmap"][op]]
    total = f"ops {sum(ops['module'].values())}->{sum(ops['vmap'].values())}"
    return ", ".join([*diff, total])


def guard_reasons() -> list[str]:
    r"""The guard failures recorded since the last ``torch._dynamo.reset()`` (first line each)."""

    return sorted({str(r).strip().splitlines()[0][:100] for reasons in guard_failures.values() for r in reasons})


def run_pair(name: str, part: str, sizes: list[int], make: Callable[[int], dict], backend: str,
             t_min: float, rounds: int, mode: str | None = None, explain: bool = True) -> list[dict]:
    r"""Compiles the two callables of ``make(n)`` (keys ``"module"`` and ``"vmap"``), times them
    at every size of ``sizes`` and returns one row per size."""

    torch._dynamo.reset()
    counters.clear()
    guard_failures.clear()
    first = make(sizes[0])
    fns = {k: Compiled(v, backend, mode) for k, v in first["fns"].items()}
    rows = []
    for n in sizes:
        case = make(n)
        args = case["args"]
        try:
            outs = {k: fn.first_call(*args) for k, fn in fns.items()}
        except Exception as e:  # noqa: BLE001 - report what fails to compile
            err = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120]}"
            print(f"{name:8s} {part:9s} N={n}: {err}", flush=True)
            rows.append({"flow": name, "part": part, "n": n, "error": err})
            break
        if case.get("check"):
            case["check"](outs)
        t = compare({k: (lambda fn=fn: fn(*args)) for k, fn in fns.items()}, t_min, rounds)
        rows.append({"flow": name, "part": part, "n": n, **{f"{k}_s": v for k, v in t.items()},
                     "vmap_over_module": t["vmap"] / t["module"]})
        print(f"{name:8s} {part:9s} N={n:5d} compiled vmap / compiled batched {rows[-1]['vmap_over_module']:5.2f}",
              flush=True)
    reasons = guard_reasons()
    if explain and any(r.get("vmap_over_module", 0) > 1.05 for r in rows):  # a miss: which operations differ
        why = op_difference(make(sizes[0]))
        for row in rows:
            if row.get("vmap_over_module", 0) > 1.05:
                row["op_difference"] = why
    for row in rows:
        row.update(graphs_module=fns["module"].graphs, graphs_vmap=fns["vmap"].graphs,
                   compile_s=sum(fn.compile_s for fn in fns.values()),
                   graph_breaks="; ".join(sorted(fns["vmap"].breaks | fns["module"].breaks))[:200],
                   recompile_reason=reasons[0] if reasons else "")
    return rows


def static_parameters(tree: Any, cudagraphs: bool = False) -> None:
    r"""Marks a closed-over parameter tree as dynamo treats an ``nn.Module``'s parameters:
    static sizes (``dynamic=True`` would make every dim symbolic) and, under CUDA graphs,
    a static address (else every replay first copies each leaf into the graph's buffer)."""

    for leaf in tree_leaves(tree):
        torch._dynamo.mark_static(leaf)
        if cudagraphs:
            torch._dynamo.mark_static_address(leaf)


def flow_case(name: str, part: str, device: str = "cpu", cudagraphs: bool = False) -> Callable[[int], dict]:
    spec = FLOWS[name].cls(FEATURES, CONTEXT)
    params, state = spec.init(torch.Generator().manual_seed(0)), spec.init_state()
    params, state = tree_map(lambda t: t.to(device), (params, state))
    module = Z.flows.to_module(spec, params, state).to(device)
    # ``dynamic=True`` makes every dim of every tensor the vmapped function closes over
    # symbolic, the parameters' feature and hidden sizes included (inductor then compiles
    # generic loops: RealNVP's vmap 1.18x the batched call at N = 4096, against 0.93x with
    # static parameters), while dynamo keeps an ``nn.Module``'s parameters static. The
    # parameter tree is marked static as the module's is; only the batch size is dynamic.
    static_parameters((params, state), cudagraphs)

    def make(n: int) -> dict:
        c = torch.randn(n, CONTEXT, device=device)
        if part == "log_prob":
            x = sample_input(name, (n, FEATURES)).to(device)

            def check(outs: dict) -> None:
                err = float((outs["vmap"] - outs["module"]).abs().max())
                if not err < 1e-3:
                    raise AssertionError(f"{name}: compiled vmap and module differ by {err}")

            return {"args": (c, x), "check": check, "fns": {
                "module": lambda c, x: module(c).log_prob(x),
                "vmap": lambda c, x: vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(c, x),
            }}
        return {"args": (c,), "fns": {
            "module": lambda c: module(c).sample(),
            "vmap": lambda c: vmap(lambda ci: spec.apply(params, ci, state=state).sample(), randomness="different")(c),
        }}

    return make


def hypernet_case(device: str = "cpu", cudagraphs: bool = False) -> Callable[[int], dict]:
    r"""One gradient step of the hypernetwork case: each sample's MAF parameters come from a
    hypernetwork of its context; the flow runs per sample in a ``vmap``
    (:func:`~lazydist_functional.meta.hypernet_log_prob`), or batched, on the parameter
    tree with a leading dimension N (the spec's stacked-parameters path, no ``vmap``). The
    hypernetwork's parameters are marked static on both sides, as a module's would be."""

    per_sample = MAF(2, 0, transforms=3, hidden_features=[32])
    hyper = MLP(3, M.param_count(per_sample), [64])
    psi = tree_map(lambda t: t.to(device), hyper.init(torch.Generator().manual_seed(0)))
    static_parameters(psi, cudagraphs)

    def vmap_loss(psi, c, x):
        return -M.hypernet_log_prob(per_sample, lambda p, ci: 0.1 * hyper.apply(p, ci), psi, c, x).mean()

    def batched_loss(psi, c, x):
        return -per_sample.apply(M.unravel(per_sample, 0.1 * hyper.apply(psi, c))).log_prob(x).mean()

    def check(outs: dict) -> None:
        err = max(float((a - b).abs().max()) for a, b in zip(tree_leaves(outs["vmap"]), tree_leaves(outs["module"])))
        if not err < 1e-4:
            raise AssertionError(f"hypernetwork: vmapped and batched gradients differ by {err}")

    def make(n: int) -> dict:
        return {"args": (torch.randn(n, 3, device=device), torch.randn(n, 2, device=device)), "check": check, "fns": {
            "module": lambda c, x: grad(batched_loss)(psi, c, x),
            "vmap": lambda c, x: grad(vmap_loss)(psi, c, x),
        }}

    return make


def report(rows: list[dict], args: Any, name: str, final: bool) -> None:
    r"""Writes the JSON (after every flow, so that a stopped run keeps its rows); at the end
    also the table and the plot."""

    write_json(name, {"quick": args.quick, "backend": args.backend, "mode": args.mode, "device": args.device,
                      "fallback_random": args.fallback_random,
                      "features": FEATURES, "context": CONTEXT, "complete": final, "rows": rows}, args.out)
    if not final:
        return
    print()
    cols = ["flow", "part", "n", "vmap_over_module", "graphs_module", "graphs_vmap", "compile_s", "recompile_reason",
            "graph_breaks", "op_difference", "error"]
    print(markdown_table(rows, cols, ["flow", "call", "N", "compiled vmap / compiled batched", "graphs (batched)",
                                      "graphs (vmap)", "compile s", "recompiled because", "graph breaks",
                                      "miss: ops batched->vmap", "error"]))
    fig, (ax,) = figure(width=7)
    for key in dict.fromkeys((r["flow"], r["part"]) for r in rows):
        rs = [r for r in rows if (r["flow"], r["part"]) == key and "vmap_over_module" in r]
        ax.plot([r["n"] for r in rs], [r["vmap_over_module"] for r in rs], "o-", label=" ".join(key))
    ax.axhline(1.05, color="k", lw=0.8, ls=":")
    where = f"{args.backend}{', ' + args.mode if args.mode else ''}, {args.device}"
    ax.set(xscale="log", xlabel="N", ylabel="compiled vmap / compiled batched", title=f"torch.compile ({where})")
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, name, args.out)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--flows", default=None,
                   help="comma-separated flows, 'hypernet' for the training step (default: all and hypernet; "
                        "--quick: MAF,NSF,hypernet)")
    p.add_argument("--sizes", default=None, help="comma-separated batch sizes (default 256,1024,4096; --quick: 256,1024)")
    p.add_argument("--sample", action="store_true", help="also compile and time sample()")
    p.add_argument("--sample-only", action="store_true", help="only sample() (no log_prob rows)")
    p.add_argument("--backend", default="inductor")
    p.add_argument("--device", default="cpu")
    p.add_argument("--mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--deadline", type=float, default=None, help="seconds after which no new flow is started")
    p.add_argument("--no-explain", action="store_true", help="skip the op difference of a miss (one more compile)")
    p.add_argument("--fallback-random", action="store_true",
                   help="torch._inductor.config.fallback_random: random draws by eager's kernels, not inductor's")
    args = p.parse_args()
    if args.fallback_random:
        inductor_config.fallback_random = True
    t_min = setup(args)
    warnings.filterwarnings("ignore")
    names = (args.flows or ("MAF,NSF,hypernet" if args.quick else ",".join([*FLOWS, "hypernet"]))).split(",")
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else [256, 1024] if args.quick else [256, 1024, 4096]
    rounds = 1 if args.quick else 3
    out_name = "compiled_vmap" + ("" if args.device == "cpu" else f"_{args.device}") \
        + (f"_{args.mode.replace('-', '_')}" if args.mode else "")
    parts = ([] if args.sample_only else ["log_prob"]) + (["sample"] if args.sample or args.sample_only else [])
    jobs = list(dict.fromkeys((name, "grad step" if name == "hypernet" else part) for part in parts for name in names))
    cudagraphs = uses_cudagraphs(args.mode)
    start, rows = time.perf_counter(), []
    for name, part in jobs:
        if args.deadline is not None and time.perf_counter() - start > args.deadline:
            print(f"deadline: {name} {part} not run", flush=True)
            rows.append({"flow": name, "part": part, "error": "not run (deadline)"})
            continue
        make = hypernet_case(args.device, cudagraphs) if name == "hypernet" else \
            flow_case(name, part, args.device, cudagraphs)
        with torch.no_grad() if name != "hypernet" else torch.enable_grad():
            rows += run_pair(name, part, sizes, make, args.backend, t_min, rounds, args.mode, not args.no_explain)
        report(rows, args, out_name, final=False)
    report(rows, args, out_name, final=True)


if __name__ == "__main__":
    main()
