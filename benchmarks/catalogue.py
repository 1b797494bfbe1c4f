r"""Every flow of the catalogue against Zuko 1.6, same weights, side by side in one run.

For each flow (3 features, 2 context features, Zuko's defaults) and N = 1024:
``log_prob`` time ours / Zuko (module path), and vmap of the pure apply over
per-sample contexts / our module path. Zuko's ``vmap`` is not timed: it fails for
most of these flows (``benchmarks/zuko_failures.py``).

Usage: ``python benchmarks/catalogue.py [--quick]``; writes ``results/catalogue.json``.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.utils.benchmark as tb
import zuko
from torch.func import vmap

import lazydist_functional.adapters as Z
from lazydist_functional.pytree import tree_map

FLOWS = ["MAF", "NSF", "NCSF", "RealNVP", "NICE", "SOSPF", "BPF", "NAF", "UNAF", "GF", "CNF", "GMM"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    t_min = 0.05 if args.quick else 0.3
    torch.manual_seed(0)
    rows = []
    for name in FLOWS:
        ref, ours = getattr(zuko.flows, name)(3, 2), getattr(Z.flows, name)(3, 2)
        ours.load_state_dict(ref.state_dict())
        c = torch.randn(args.n, 2)
        x = (torch.rand(args.n, 3) * 2 - 1) * 3 if name == "NCSF" else torch.randn(args.n, 3)
        spec = ours.spec
        params, state = ours.trees()
        params = tree_map(lambda t: t.detach(), params)
        env = dict(ref=ref, ours=ours, c=c, x=x, vmap=vmap, spec=spec, p=params, s=state)
        with torch.no_grad():
            err = float((ours(c).log_prob(x) - ref(c).log_prob(x)).abs().max())
            t = {key: tb.Timer(stmt, globals=env).blocked_autorange(min_run_time=t_min).median for key, stmt in {
                "zuko": "ref(c).log_prob(x)",
                "ours": "ours(c).log_prob(x)",
                "vmap": "vmap(lambda c, x: spec.apply(p, c, state=s).log_prob(x))(c, x)",
            }.items()}
        rows.append({"flow": name, "n": args.n, "max_abs_diff": err, **t,
                     "ours_over_zuko": t["ours"] / t["zuko"], "vmap_over_module": t["vmap"] / t["ours"]})
        print(f"{name:8s} ours/zuko {t['ours'] / t['zuko']:5.2f}  vmap/module {t['vmap'] / t['ours']:5.2f}  "
              f"|diff| {err:.1e}", flush=True)
    print("\n| flow | log_prob ours / Zuko | vmap / module | max abs diff vs Zuko |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['flow']} | {r['ours_over_zuko']:.2f} | {r['vmap_over_module']:.2f} | {r['max_abs_diff']:.0e} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "catalogue.json"), "w") as f:
        json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
