r"""ATen operations of one ``log_prob`` call per flow, and where the eager vmap/module
ratio's floor lies (issue 15, item 2).

For each flow of :data:`lazydist_functional.catalogue.FLOWS` (5 features, 4 context
features, Zuko's default sizes; Zuko's weights for the flows Zuko has) and each N:

(a) ``flow(c).log_prob(x)`` (our adapter module, batched),
(b) ``vmap(lambda c, x: spec.apply(p, c).log_prob(x))(C, X)`` as it runs: folded
    (:mod:`lazydist_functional.distributions.vmap_fold`: the per-sample call inside the
    ``vmap`` runs as the batched call on the physical tensors),
(b0) the same under ``vmap_fold.disabled()``: every operation through its batching rule,
(e) ``zuko_flow(c).log_prob(x)``.

Counts: a :class:`~torch.utils._python_dispatch.TorchDispatchMode` counts the operations
that reach the ATen dispatcher (under ``vmap``, after the batching rules); a
:class:`~torch.overrides.TorchFunctionMode` counts the calls of (b) that still take a
batched tensor (compute only, not ``.shape``/``.dim()`` reads): those pay a batching rule.

Floor model of (b): what the folded call cannot avoid,

.. math:: t_a + t_\text{vmap} + t_\text{rebuild} + n_\text{batched} \, c_\text{op}

with :math:`t_\text{vmap}` the ``vmap`` machinery (a ``vmap`` of two sums on the same
inputs, less the two sums), :math:`t_\text{rebuild}` the second, physical apply the fold
makes (``spec._apply`` on the batched context; 0 where the distribution is built once,
GMM, or nothing folds), :math:`n_\text{batched}` the calls of (b) still batched and
:math:`c_\text{op} = (t_{b0} - t_a - t_\text{vmap}) / \text{ops}_{b0}` the per-operation
cost of the batching rules measured on this flow. Times are medians of alternating
rounds (``--timer thread``: the calling thread's CPU time, which waiting for a core on a
shared machine does not inflate).

Usage: ``python benchmarks/op_count.py [--quick] [--flows MAF,NSF] [--n 256,1024]
[--timer wall|thread]``; writes ``results/op_count.json``.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.utils.benchmark as tb
import zuko
from common import ZUKO_FLOWS, markdown_table, parser, setup, write_json
from torch._C._functorch import is_batchedtensor
from torch.func import vmap
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import lazydist_functional.adapters as Z
from lazydist_functional.catalogue import FLOWS, sample_input
from lazydist_functional.distributions import vmap_fold

FEATURES, CONTEXT = 5, 4
#: Tensor methods that read metadata only (no batching rule runs).
METADATA = {"dim", "__get__", "size", "is_floating_point", "is_complex", "numel", "stride", "is_contiguous"}


class OpCounter(TorchDispatchMode):
    r"""Counts the ATen operations (by overload packet) dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.counts[str(func.overloadpacket).removeprefix("aten.")] += 1
        return func(*args, **(kwargs or {}))


class BatchedCalls(TorchFunctionMode):
    r"""Counts the torch calls that take a batched tensor (they run a batching rule)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = getattr(func, "__name__", str(func))
        if name not in METADATA and any(
            isinstance(t, torch.Tensor) and is_batchedtensor(t) for t in tree_leaves((args, kwargs or {}))
        ):
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def count(fn: Callable[[], Any], mode: type = OpCounter) -> Counter[str]:
    r"""The operations (or batched calls) of one call of ``fn``."""

    with torch.no_grad(), mode() as counter:
        fn()
    return counter.counts


def compare(fns: Mapping[str, Callable[[], Any]], t_min: float, rounds: int, timer: Callable[[], float]) -> dict:
    r"""Median seconds per call, alternating between the callables for ``rounds`` rounds."""

    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = tb.Timer("fn()", globals={"fn": fn}, timer=timer)
            times[k].append(t.blocked_autorange(min_run_time=t_min).median)
    return {k: statistics.median(v) for k, v in times.items()}


def _unfolded(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with vmap_fold.disabled():
            return fn()

    return run


def bench_flow(name: str, n: int, t_min: float, rounds: int, timer: Callable[[], float]) -> dict:
    spec = FLOWS[name].cls(FEATURES, CONTEXT)
    ref = getattr(zuko.flows, name)(FEATURES, CONTEXT) if name in ZUKO_FLOWS else None
    if ref is not None:  # Zuko's weights
        params, state = spec.split_state_dict({k: v.detach() for k, v in ref.state_dict().items()})
    else:
        params, state = spec.init(torch.Generator().manual_seed(0)), spec.init_state()
    module = Z.flows.to_module(spec, params, state)
    c, x = torch.randn(n, CONTEXT), sample_input(name, (n, FEATURES))
    plans = []

    def per_sample(ci: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        d = spec.apply(params, ci, state=state)
        plans.append(getattr(d, "_fold_plan", None))
        return d.log_prob(xi)

    fold = lambda: vmap(per_sample)(c, x)  # noqa: E731
    fns = {
        "module": lambda: module(c).log_prob(x),
        "vmap": fold,
        "vmap_nofold": _unfolded(fold),
        "trivial_vmap": lambda: vmap(lambda ci, xi: ci.sum() + xi.sum())(c, x),
        "trivial": lambda: c.sum() + x.sum(),
        "rebuild": lambda: spec._apply(params, c, state),
    }
    counts = {k: count(fns[k]) for k in ("module", "vmap", "vmap_nofold")}
    if ref is not None:
        counts["zuko"] = count(lambda: ref(c).log_prob(x))
    batched = count(fold, BatchedCalls)
    plans.clear()
    with torch.no_grad():
        fold()
        plan = plans[-1]
        t = compare(fns, t_min, rounds, timer)
    ops = {k: sum(v.values()) for k, v in counts.items()}
    t_vmap = max(t["trivial_vmap"] - t["trivial"], 0.0)
    t_rebuild = t["rebuild"] if plan is not None and plan.rebuild is not None else 0.0
    per_op = max(t["vmap_nofold"] - t["module"] - t_vmap, 0.0) / ops["vmap_nofold"]
    n_batched = sum(batched.values())
    floor = t["module"] + t_vmap + t_rebuild + n_batched * per_op
    diff = counts["vmap_nofold"] - counts["module"]
    row = {
        "flow": name, "n": n, "folds": plan is not None,
        "ops_module": ops["module"], "ops_vmap": ops["vmap"], "ops_vmap_nofold": ops["vmap_nofold"],
        "ops_zuko": ops.get("zuko", "-"), "batched_calls": n_batched,
        "module_us": t["module"] * 1e6, "vmap_us": t["vmap"] * 1e6, "vmap_nofold_us": t["vmap_nofold"] * 1e6,
        "vmap_minus_module_us": (t["vmap"] - t["module"]) * 1e6, "vmap_over_module": t["vmap"] / t["module"],
        "nofold_over_module": t["vmap_nofold"] / t["module"],
        "vmap_machinery_us": t_vmap * 1e6, "rebuild_us": t_rebuild * 1e6, "us_per_batched_op": per_op * 1e6,
        "floor_us": floor * 1e6, "floor_over_module": floor / t["module"],
        "nofold_only_ops": " ".join(f"{k}x{v}" for k, v in diff.most_common(5)),
        "batched_calls_by_name": " ".join(f"{k}x{v}" for k, v in batched.most_common(5)),
        "counts": {k: dict(v.most_common()) for k, v in counts.items()},
    }
    print(f"{name:9s} N={n:5d} ops a {ops['module']:4d} b {ops['vmap']:4d} b0 {ops['vmap_nofold']:4d} "
          f"zuko {row['ops_zuko']!s:>4s} batched {n_batched:3d}  b/a {row['vmap_over_module']:.2f} "
          f"b0/a {row['nofold_over_module']:.2f} floor/a {row['floor_over_module']:.2f}", flush=True)
    return row


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--flows", default=",".join(FLOWS))
    p.add_argument("--n", default="256,1024", help="comma-separated batch sizes")
    p.add_argument("--timer", choices=("wall", "thread"), default="thread")
    args = p.parse_args()
    t_min = setup(args)
    timer = time.thread_time if args.timer == "thread" else time.perf_counter
    sizes = [int(v) for v in args.n.split(",")]
    rows = [bench_flow(name, n, t_min, 1 if args.quick else 3, timer) for name in args.flows.split(",") for n in sizes]
    print()
    print(markdown_table(
        rows,
        ["flow", "n", "ops_module", "ops_vmap", "ops_vmap_nofold", "ops_zuko", "batched_calls", "module_us",
         "vmap_us", "vmap_minus_module_us", "vmap_over_module", "nofold_over_module", "vmap_machinery_us",
         "rebuild_us", "us_per_batched_op", "floor_over_module", "nofold_only_ops"],
        ["flow", "N", "ops (a) module", "ops (b) vmap", "ops (b0) no fold", "ops Zuko", "calls of (b) batched",
         "(a) µs", "(b) µs", "(b)-(a) µs", "(b)/(a)", "(b0)/(a)", "vmap machinery µs", "rebuild µs",
         "µs per batched op", "floor/(a)", "ops only in (b0)"],
    ))
    write_json("op_count", {"quick": args.quick, "n": sizes, "features": FEATURES, "context": CONTEXT,
                            "timer": args.timer, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
