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

Usage: ``python benchmarks/cnf.py [--batch 256 1024] [--steps 16 32 adaptive] [--threads 2]
[--min-time 0.5] [--device cpu] [--out benchmarks/results/cnf.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch
import torch.utils.benchmark as tb
import zuko

import lazydist_functional.adapters as Z


def _time(stmt: str, env: dict, min_time: float) -> float:
    return tb.Timer(stmt, globals=env).blocked_autorange(min_run_time=min_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--context", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--steps", nargs="+", default=["16", "32", "adaptive"],
                        help="fixed step counts, or 'adaptive' (Dormand-Prince at Zuko's tolerances)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "cnf.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = "torch.cuda.synchronize()" if dev.type == "cuda" else "pass"
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
            env = {"ours": flow, "zf": zf, "c": c, "x": x, "torch": torch}
            cases = {
                "log_prob": ("with torch.no_grad(): {f}(c).log_prob(x); " + sync),
                "log_prob+backward": ("{f}.zero_grad(); (-{f}(c).log_prob(x).mean()).backward(); " + sync),
                "sample": ("with torch.no_grad(): {f}(c).sample(); " + sync),
            }
            for case, stmt in cases.items():
                t_ours = _time(stmt.format(f="ours"), env, args.min_time)
                t_zuko = _time(stmt.format(f="zf"), env, args.min_time)
                rows.append({
                    "case": case, "batch": n, "steps": steps,
                    "ours_s": t_ours, "zuko_s": t_zuko, "ours_over_zuko": t_ours / t_zuko,
                    "max_abs_log_prob_diff": err,
                })

    print(f"CNF({D}, {C}), zuko default MLP [64, 64], {dev}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print()
    print("| case | batch | our steps | ours (ms) | zuko (ms) | ours / zuko | max abs log_prob diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['batch']} | {r['steps']} | {1e3 * r['ours_s']:.1f} | {1e3 * r['zuko_s']:.1f} "
              f"| {r['ours_over_zuko']:.2f} | {r['max_abs_log_prob_diff']:.1e} |")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({
            "benchmark": "cnf",
            "flow": f"CNF({D}, {C})",
            "device": torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "zuko": zuko.__version__,
            "threads": torch.get_num_threads(),
            "note": "ratios measured side by side in one run; ours/zuko < 1 means ours is faster",
            "rows": rows,
        }, fh, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
