r"""CNF speed: ours (fixed-step RK4, torch.func-safe) vs Zuko 1.6 (adaptive Dormand-Prince), same weights.

For ``CNF(features, context)`` with Zuko's default network, Zuko's weights are loaded
into our adapter module and both are timed side by side in one run
(``torch.utils.benchmark``) on

* ``log_prob``: ``flow(c).log_prob(x)`` under ``no_grad``;
* ``log_prob+backward``: ``-flow(c).log_prob(x).mean()`` and ``backward()``
  (Zuko: adaptive checkpoint adjoint; ours: backprop through the solver);
* ``sample``: ``flow(c).sample()``.

Ratios are ``ours / zuko`` (below 1: ours is faster). Our accuracy knob is the number
of solver steps (``steps``; ``adaptive``: our Dormand-Prince at Zuko's tolerances, not
vmap-able); Zuko runs at its defaults (``atol=1e-6``, ``rtol=1e-5``).
The maximum ``|log_prob|`` difference from Zuko is measured in the same run. Prints a
markdown table and writes JSON.

Usage: ``python benchmarks/cnf.py [--quick] [--batch 256 1024] [--steps 16 32 adaptive] [--threads 2]
[--min-time 0.5] [--device cpu] [--out benchmarks/results]``
"""

from __future__ import annotations

import torch
import zuko
from common import compare, markdown_table, parser, setup, write_json

import lazydist_functional.adapters as Z


def _log_prob(f, c, x):
    with torch.no_grad():
        return f(c).log_prob(x)


def _backward(f, c, x):
    f.zero_grad()
    (-f(c).log_prob(x).mean()).backward()


def _sample(f, c, x):
    with torch.no_grad():
        return f(c).sample()


CASES = {"log_prob": _log_prob, "log_prob+backward": _backward, "sample": _sample}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--features", type=int, default=3)
    p.add_argument("--context", type=int, default=2)
    p.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--steps", nargs="+", default=["16", "32", "adaptive"],
                        help="fixed step counts, or 'adaptive' (Dormand-Prince at Zuko's tolerances)")
    p.add_argument("--min-time", type=float, default=None, help="seconds per measurement")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.quick:
        args.batch, args.steps = [256], ["16"]
    min_time = setup(args)
    min_time = args.min_time or min_time
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    D, C = args.features, args.context

    zf = zuko.flows.CNF(D, C).to(dev)
    ours = {s: Z.flows.CNF(D, C, steps=None if s == "adaptive" else int(s)).to(dev) for s in args.steps}
    for module in ours.values():
        module.load_state_dict(zf.state_dict())

    rows = []
    for n in args.batch:
        c, x = torch.randn(n, C, device=dev), torch.randn(n, D, device=dev)
        with torch.no_grad():
            ref = zf(c).log_prob(x)
        for steps, flow in ours.items():
            with torch.no_grad():
                err = (flow(c).log_prob(x) - ref).abs().max().item()
            for case, fn in CASES.items():
                t = compare({"ours": lambda: (fn(flow, c, x), sync()), "zuko": lambda: (fn(zf, c, x), sync())},
                            min_time, 1 if args.quick else 3)
                t_ours, t_zuko = t["ours"], t["zuko"]
                rows.append({
                    "case": case, "batch": n, "steps": steps,
                    "ours_s": t_ours, "zuko_s": t_zuko, "ours_over_zuko": t_ours / t_zuko,
                    "max_abs_log_prob_diff": err,
                })

    print(f"CNF({D}, {C}), zuko default MLP [64, 64], {dev}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print()
    print(markdown_table(rows, ["case", "batch", "steps", "ours_s", "zuko_s", "ours_over_zuko", "max_abs_log_prob_diff"],
                         ["case", "batch", "our steps", "ours (s)", "zuko (s)", "ours / zuko", "max abs log_prob diff"]))
    path = write_json("cnf" if dev.type == "cpu" else f"cnf_{dev.type}", {
        "benchmark": "cnf", "flow": f"CNF({D}, {C})", "zuko": zuko.__version__, "quick": args.quick,
        "note": "ratios measured side by side in one run; ours/zuko < 1 means ours is faster",
        "rows": rows,
    }, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
