r"""CUDA correctness and speed check (run on a GPU machine; CI never runs it).

Checks, for MAF/NSF/RealNVP/NICE on ``cuda``: adapter ``.to("cuda")`` gives the same
``log_prob`` as on CPU; vmap over contexts and over stacked params equals the batched
call; sampling under ``vmap(randomness="different")``; Zuko parity on the GPU. Then
times (a) our module path, (b) vmap of the pure apply, (d) K=32 params vmap vs loop,
(e) Zuko, as ratios in one run, with CUDA synchronisation (torch.utils.benchmark).

Usage: ``python benchmarks/cuda_check.py [--out results/cuda.json]``
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.utils.benchmark as tb
import zuko
from torch.func import vmap

import lazydist_functional as L
import lazydist_functional.adapters as Z


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results/cuda.json")
    args = parser.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    rows, checks = [], {}
    for name in ["MAF", "NSF", "RealNVP", "NICE"]:
        zf = getattr(zuko.flows, name)(5, 4)
        ours = getattr(Z.flows, name)(5, 4)
        ours.load_state_dict(zf.state_dict())
        c, x = torch.randn(4096, 4), torch.randn(4096, 5)
        lp_cpu = ours(c).log_prob(x)
        zf.to(dev), ours.to(dev)
        cd, xd = c.to(dev), x.to(dev)
        lp_gpu = ours(cd).log_prob(xd)
        spec = ours.spec
        params, state = ours.trees()
        params = {k: v.detach() for k, v in L.flatten_names(params).items()}
        params = L.unflatten_names(params)
        lp_vmap = vmap(lambda c, x: spec.apply(params, c, state=state).log_prob(x))(cd, xd)
        P = L.init_stacked(spec, 32, device=dev)
        C, X = torch.randn(32, 64, 4, device=dev), torch.randn(32, 64, 5, device=dev)
        lp_P = vmap(lambda p, c, x: spec.apply(p, c, state=state).log_prob(x))(P, C, X)
        lp_loop = torch.stack([spec.apply(p, C[i], state=state).log_prob(X[i]) for i, p in enumerate(L.tree_unstack(P))])
        s = vmap(lambda c: spec.apply(params, c, state=state).rsample(), randomness="different")(cd[:8])
        checks[name] = {
            "cpu_vs_gpu": (lp_cpu.to(dev) - lp_gpu).abs().max().item(),
            "zuko_vs_ours_gpu": (zf(cd).log_prob(xd) - lp_gpu).abs().max().item(),
            "vmap_vs_batched": (lp_vmap - lp_gpu).abs().max().item(),
            "vmap_params_vs_loop": (lp_P - lp_loop).abs().max().item(),
            "vmap_samples_distinct": bool((s[0] != s[1]).any()),
            "samples_on_cuda": s.device.type,
        }
        with torch.no_grad():
            env = dict(ours=ours, zf=zf, c=cd, x=xd, vmap=vmap, spec=spec, params=params, state=state,
                       P=P, C=C, X=X, Ps=L.tree_unstack(P))
            t = {}
            t["a_module"] = tb.Timer("ours(c).log_prob(x)", globals=env).blocked_autorange(min_run_time=1).median
            t["b_vmap"] = tb.Timer(
                "vmap(lambda c, x: spec.apply(params, c, state=state).log_prob(x))(c, x)", globals=env
            ).blocked_autorange(min_run_time=1).median
            t["e_zuko"] = tb.Timer("zf(c).log_prob(x)", globals=env).blocked_autorange(min_run_time=1).median
            t["d_vmap_params"] = tb.Timer(
                "vmap(lambda p, c, x: spec.apply(p, c, state=state).log_prob(x))(P, C, X)", globals=env
            ).blocked_autorange(min_run_time=1).median
            t["d_loop"] = tb.Timer(
                "[spec.apply(p, C[i], state=state).log_prob(X[i]) for i, p in enumerate(Ps)]", globals=env
            ).blocked_autorange(min_run_time=1).median
        rows.append({"flow": name, **t,
                     "b_over_a": t["b_vmap"] / t["a_module"],
                     "ours_over_zuko": t["a_module"] / t["e_zuko"],
                     "loop_over_vmap_params": t["d_loop"] / t["d_vmap_params"]})
    # every flow of the catalogue: CUDA log_prob equals CPU and Zuko; vmap over params and sampling on CUDA
    for name in ["NCSF", "SOSPF", "BPF", "NAF", "UNAF", "GF", "CNF", "GMM"]:
        zf = getattr(zuko.flows, name)(3, 2)
        ours = getattr(Z.flows, name)(3, 2)
        ours.load_state_dict(zf.state_dict())
        c, x = torch.randn(512, 2), (torch.rand(512, 3) * 2 - 1) * 3
        lp_cpu = ours(c).log_prob(x).detach()
        zf.to(dev), ours.to(dev)
        cd, xd = c.to(dev), x.to(dev)
        spec = ours.spec
        _, state = ours.trees()
        P = L.init_stacked(spec, 8, device=dev)
        lp_P = vmap(lambda p, c, x: spec.apply(p, c, state=state).log_prob(x))(P, cd[:8], xd[:8])
        lp_loop = torch.stack([spec.apply(p, cd[i], state=state).log_prob(xd[i]) for i, p in enumerate(L.tree_unstack(P))])
        s = vmap(lambda p, c: spec.apply(p, c, state=state).sample(), randomness="different")(P, cd[:8])
        checks[name] = {
            "cpu_vs_gpu": (lp_cpu.to(dev) - ours(cd).log_prob(xd)).abs().max().item(),
            "zuko_vs_ours_gpu": (zf(cd).log_prob(xd) - ours(cd).log_prob(xd)).abs().max().item(),
            "vmap_params_vs_loop": (lp_P - lp_loop).abs().max().item(),
            "vmap_samples_distinct": bool((s[0] != s[1]).any()),
            "samples_on_cuda": s.device.type,
        }
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(json.dumps(checks, indent=1))
    print("| flow | (b)/(a) vmap/module | ours/zuko | K=32 loop/vmap |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['flow']} | {r['b_over_a']:.2f} | {r['ours_over_zuko']:.2f} | {r['loop_over_vmap_params']:.1f} |")
    with open(args.out, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "checks": checks, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
