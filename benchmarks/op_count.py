r"""ATen operations of one ``log_prob`` call per flow: batched module, vmapped per-sample
path, and Zuko 1.6 (issue 15, item 2).

A :class:`~torch.utils._python_dispatch.TorchDispatchMode` counts every operation that
reaches the ATen dispatcher (under ``vmap``, after the batching rules: the operations that
actually run). For each flow of :data:`lazydist_functional.catalogue.FLOWS` (5 features,
4 context features, Zuko's default sizes, Zuko's weights) and N samples:

(a) ``flow(c).log_prob(x)`` (our adapter module, batched),
(b) ``vmap(lambda c, x: spec.apply(p, c).log_prob(x))(C, X)``,
(e) ``zuko_flow(c).log_prob(x)``,

with the time of (a) and (b) side by side and the time the vmap machinery adds per
operation of (b), :math:`(t_b - t_a) / \text{ops}_b`.

Usage: ``python benchmarks/op_count.py [--quick] [--flows MAF,NSF] [--n 256]``; writes
``results/op_count.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import zuko
from common import ZUKO_FLOWS, compare, markdown_table, parser, setup, write_json
from torch.func import vmap
from torch.utils._python_dispatch import TorchDispatchMode

import lazydist_functional.adapters as Z
from lazydist_functional.catalogue import FLOWS, sample_input

FEATURES, CONTEXT = 5, 4


class OpCounter(TorchDispatchMode):
    r"""Counts the ATen operations (by overload packet) dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.counts[str(func.overloadpacket).removeprefix("aten.")] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], Any]) -> Counter[str]:
    r"""The ATen operations of one call of ``fn``."""

    with torch.no_grad(), OpCounter() as counter:
        fn()
    return counter.counts


def bench_flow(name: str, n: int, t_min: float, rounds: int) -> dict:
    spec = FLOWS[name].cls(FEATURES, CONTEXT)
    ref = getattr(zuko.flows, name)(FEATURES, CONTEXT)
    params, state = spec.split_state_dict({k: v.detach() for k, v in ref.state_dict().items()})
    module = Z.flows.to_module(spec, params, state)
    c, x = torch.randn(n, CONTEXT), sample_input(name, (n, FEATURES))
    fns = {
        "module": lambda: module(c).log_prob(x),
        "vmap": lambda: vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(c, x),
        "zuko": lambda: ref(c).log_prob(x),
    }
    counts = {k: count_ops(fn) for k, fn in fns.items()}
    with torch.no_grad():
        t = compare({k: fns[k] for k in ("module", "vmap")}, t_min, rounds)
    ops = {k: sum(v.values()) for k, v in counts.items()}
    extra = ops["vmap"] - ops["module"]
    per_op = (t["vmap"] - t["module"]) / ops["vmap"]
    diff = counts["vmap"] - counts["module"]
    row = {"flow": name, "n": n, "ops_module": ops["module"], "ops_vmap": ops["vmap"], "ops_zuko": ops["zuko"],
           "extra_ops": extra, "module_us": t["module"] * 1e6, "vmap_us": t["vmap"] * 1e6,
           "vmap_over_module": t["vmap"] / t["module"], "us_per_extra_op": per_op * 1e6,
           "vmap_only_ops": " ".join(f"{k}x{v}" for k, v in diff.most_common(6)),
           "counts": {k: dict(v.most_common()) for k, v in counts.items()}}
    print(f"{name:8s} ops module {ops['module']:4d} vmap {ops['vmap']:4d} zuko {ops['zuko']:4d}  "
          f"vmap/module {row['vmap_over_module']:.2f}  {row['vmap_only_ops']}", flush=True)
    return row


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--flows", default=",".join(ZUKO_FLOWS))
    p.add_argument("--n", type=int, default=256)
    args = p.parse_args()
    t_min = setup(args)
    rows = [bench_flow(name, args.n, t_min, 1 if args.quick else 3) for name in args.flows.split(",")]
    print()
    print(markdown_table(rows, ["flow", "ops_module", "ops_vmap", "ops_zuko", "module_us", "vmap_us", "vmap_over_module",
                                "us_per_extra_op", "vmap_only_ops"],
                         ["flow", "ops (a) module", "ops (b) vmap", "ops Zuko", "(a) µs", "(b) µs", "(b)/(a)",
                          "vmap overhead µs per op of (b)", "ops only in (b)"]))
    write_json("op_count", {"quick": args.quick, "n": args.n, "features": FEATURES, "context": CONTEXT, "rows": rows},
               args.out)


if __name__ == "__main__":
    main()
