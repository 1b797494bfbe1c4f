r"""Vmapped per-sample conditioning vs the module path, and vs Zuko 1.6 (issue 2, section 6).

For each flow (MAF, NSF, RealNVP, NICE; 5 features, 4 context features, Zuko's
defaults otherwise) and N in {256, 1024, 4096}:

(a) our adapter module, batched:       ``flow(c).log_prob(x)``
(b) vmap of the pure apply over (c_i, x_i): ``vmap(lambda c, x: spec.apply(p, c).log_prob(x))(C, X)``
(c) a per-sample Python loop over the module (timed on 64 samples, scaled to N)
(e) Zuko 1.6 with the same weights:    ``zuko_flow(c).log_prob(x)``

and (d) K=32 parameter sets x 64 samples: one vmap over stacked params vs a loop
over 32 modules. Times are medians from ``torch.utils.benchmark``; only ratios
measured side by side in this one run are meaningful (shared, noisy machines).

Usage: ``python benchmarks/conditioning.py [--quick] [--out benchmarks/results]``
"""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.utils.benchmark as tb
import zuko
from torch.func import vmap

import lazydist_functional as L
import lazydist_functional.adapters as Z
from lazydist_functional.pytree import tree_map

FLOWS = ["MAF", "NSF", "RealNVP", "NICE"]


def median(stmt: str, env: dict, min_run_time: float) -> float:
    return tb.Timer(stmt, globals=env).blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings, N=256 only")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    sizes = [256] if args.quick else [256, 1024, 4096]
    t_min = 0.05 if args.quick else 0.3
    torch.manual_seed(0)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    rows = []
    for name in FLOWS:
        ref = getattr(zuko.flows, name)(5, 4)
        ours = getattr(Z.flows, name)(5, 4)
        ours.load_state_dict(ref.state_dict())
        spec = ours.spec
        params, state = ours.trees()
        params = tree_map(lambda t: t.detach(), params)
        for n in sizes:
            c, x = torch.randn(n, 4), torch.randn(n, 5)
            env = dict(ours=ours, ref=ref, c=c, x=x, vmap=vmap, spec=spec, p=params, s=state)
            with torch.no_grad():
                assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-4)
                t_a = median("ours(c).log_prob(x)", env, t_min)
                t_b = median("vmap(lambda c, x: spec.apply(p, c, state=s).log_prob(x))(c, x)", env, t_min)
                t_e = median("ref(c).log_prob(x)", env, t_min)
                t_c = median("[ours(c[i]).log_prob(x[i]) for i in range(64)]", env, t_min) * n / 64
            rows.append(dict(flow=name, n=n, a_module=t_a, b_vmap=t_b, c_loop=t_c, e_zuko=t_e,
                             b_over_a=t_b / t_a, c_over_a=t_c / t_a, ours_over_zuko=t_a / t_e))
            print(f"{name:8s} N={n:5d}  (b)/(a)={t_b / t_a:5.2f}  (c)/(a)={t_c / t_a:7.1f}  ours/zuko={t_a / t_e:5.2f}",
                  flush=True)
        # (d): K parameter sets, 64 samples each
        k, m = 32, 64
        P = L.init_stacked(spec, k)
        modules = [Z.flows.to_module(spec, p, state) for p in L.tree_unstack(P)]
        C, X = torch.randn(k, m, 4), torch.randn(k, m, 5)
        env = dict(vmap=vmap, spec=spec, P=P, s=state, C=C, X=X, modules=modules)
        with torch.no_grad():
            lp_v = vmap(lambda p, c, x: spec.apply(p, c, state=state).log_prob(x))(P, C, X)
            lp_l = torch.stack([mod(C[i]).log_prob(X[i]) for i, mod in enumerate(modules)])
            assert torch.allclose(lp_v, lp_l, atol=1e-4)
            t_dv = median("vmap(lambda p, c, x: spec.apply(p, c, state=s).log_prob(x))(P, C, X)", env, t_min)
            t_dl = median("[mod(C[i]).log_prob(X[i]) for i, mod in enumerate(modules)]", env, t_min)
        rows.append(dict(flow=name, n=f"K={k}x{m}", d_vmap=t_dv, d_loop=t_dl, loop_over_vmap=t_dl / t_dv))
        print(f"{name:8s} K={k}x{m}  loop/vmap={t_dl / t_dv:5.1f}", flush=True)

    print()
    print("| flow | N | (b)/(a) vmap vs module | (c)/(a) loop vs module | ours/zuko (a)/(e) |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "b_over_a" in r:
            print(f"| {r['flow']} | {r['n']} | {r['b_over_a']:.2f} | {r['c_over_a']:.0f} | {r['ours_over_zuko']:.2f} |")
    print()
    print("| flow | (d) K=32 params x 64: loop / vmap |")
    print("|---|---|")
    for r in rows:
        if "loop_over_vmap" in r:
            print(f"| {r['flow']} | {r['loop_over_vmap']:.1f}x |")

    os.makedirs(args.out, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick}
    with open(os.path.join(args.out, "conditioning.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    plot(rows, sizes, os.path.join(args.out, "conditioning.png"))


def plot(rows: list[dict], sizes: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in FLOWS:
        rs = [r for r in rows if r["flow"] == name and "b_over_a" in r]
        axes[0].plot([r["n"] for r in rs], [r["b_over_a"] for r in rs], "o-", label=f"{name} (b)/(a)")
        axes[0].plot([r["n"] for r in rs], [r["ours_over_zuko"] for r in rs], "s--", label=f"{name} ours/zuko")
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("N")
    axes[0].set_ylabel("time ratio")
    axes[0].set_title("vmap vs module path, ours vs Zuko (lower is better)")
    axes[0].legend(fontsize=7)
    ds = [r for r in rows if "loop_over_vmap" in r]
    axes[1].bar([r["flow"] for r in ds], [r["loop_over_vmap"] for r in ds])
    axes[1].axhline(5.0, color="r", lw=0.8, label="target 5x")
    axes[1].set_title("K=32 param sets: loop over modules / vmap (higher is better)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
