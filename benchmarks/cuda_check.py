r"""CUDA correctness and speed check (run on a GPU machine; CI never runs it).

For every flow of the catalogue on ``cuda`` (Zuko's default sizes, Zuko's weights loaded
with ``spec.split_state_dict``): the adapter module on the GPU gives the same
``log_prob`` as on the CPU and as Zuko on the GPU; vmap over contexts and over stacked
params equals the batched call / a loop; sampling under ``vmap(randomness="different")``
gives distinct draws on the GPU. For the flows of ``--timed`` it then times, as ratios
in one run with CUDA synchronisation, issue 15's eager tables on the device: (a) our module
path against (b) vmap of the pure apply at each N of ``--sizes`` (item 2), ``sample()`` of
our module against Zuko's (item 3), (d) K=32 params vmap against a loop (item 4), and (a)
against (e) Zuko's ``log_prob``.

Usage: ``python benchmarks/cuda_check.py [--quick] [--timed MAF,NSF,RealNVP,NICE | all] [--sizes 256,1024,4096]``;
writes ``results/cuda.json`` (rewritten after each timed flow).
"""

from __future__ import annotations

import torch
import zuko
from common import ZUKO_FLOWS, compare, markdown_table, parser, setup, write_json
from torch.func import vmap

import lazydist_functional.adapters as Z
from lazydist_functional.catalogue import FLOWS, sample_input
from lazydist_functional.trees import init_stacked, tree_unstack

FEATURES, CONTEXT = 5, 4


def check(name: str, dev: torch.device, n: int) -> tuple[dict, dict]:
    zf = getattr(zuko.flows, name)(FEATURES, CONTEXT)
    spec = FLOWS[name].cls(FEATURES, CONTEXT)
    params, state = spec.split_state_dict({k: v.detach() for k, v in zf.state_dict().items()})
    ours = Z.flows.to_module(spec, params, state)
    c, x = torch.randn(n, CONTEXT), sample_input(name, (n, FEATURES))
    with torch.no_grad():
        lp_cpu = ours(c).log_prob(x)
    zf.to(dev), ours.to(dev)
    cd, xd = c.to(dev), x.to(dev)
    params, state = ours.trees()
    with torch.no_grad():
        lp_gpu = ours(cd).log_prob(xd)
        lp_vmap = vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(cd, xd)
        P = init_stacked(spec, 8, device=dev)
        lp_P = vmap(lambda p, ci, xi: spec.apply(p, ci, state=state).log_prob(xi))(P, cd[:8], xd[:8])
        lp_loop = torch.stack([spec.apply(p, cd[i], state=state).log_prob(xd[i]) for i, p in enumerate(tree_unstack(P))])
        s = vmap(lambda p, ci: spec.apply(p, ci, state=state).sample(), randomness="different")(P, cd[:8])
        checks = {
            "cpu_vs_gpu": float((lp_cpu.to(dev) - lp_gpu).abs().max()),
            "zuko_vs_ours_gpu": float((zf(cd).log_prob(xd) - lp_gpu).abs().max()),
            "vmap_vs_batched": float((lp_vmap - lp_gpu).abs().max()),
            "vmap_params_vs_loop": float((lp_P - lp_loop).abs().max()),
            "vmap_samples_distinct": bool((s[0] != s[1]).any()),
            "samples_on_cuda": s.device.type,
        }
    env = {"ours": ours, "zf": zf, "c": cd, "x": xd, "spec": spec, "params": params, "state": state}
    return checks, env


def timings(name: str, env: dict, t_min: float, rounds: int, sizes: list[int], k: int = 32, m: int = 64) -> dict:
    ours, zf, c, x, spec, params, state = (env[key] for key in ("ours", "zf", "c", "x", "spec", "params", "state"))
    dev = c.device
    P = init_stacked(spec, k, device=dev)
    Ps = tree_unstack(P)
    C, X = torch.randn(k, m, CONTEXT, device=dev), sample_input(name, (k, m, FEATURES)).to(dev)

    def synced(fn):
        return (lambda: (fn(), torch.cuda.synchronize())) if dev.type == "cuda" else fn

    def vmapped(ci, xi):
        return spec.apply(params, ci, state=state).log_prob(xi)

    row: dict = {"flow": name}
    with torch.no_grad():
        for n in sizes:  # item 2: eager vmap / batched module call, per N
            cn, xn = c[:n], x[:n]
            t = compare({"a": synced(lambda: ours(cn).log_prob(xn)), "b": synced(lambda: vmap(vmapped)(cn, xn))},
                        t_min, rounds)
            row[f"b_over_a_{n}"] = t["b"] / t["a"]
        t = compare({key: synced(fn) for key, fn in {
            "a_module": lambda: ours(c).log_prob(x),
            "e_zuko": lambda: zf(c).log_prob(x),
            "sample_ours": lambda: ours(c).sample(),
            "sample_zuko": lambda: zf(c).sample(),
            "d_vmap_params": lambda: vmap(lambda p, ci, xi: spec.apply(p, ci, state=state).log_prob(xi))(P, C, X),
            "d_loop": lambda: [spec.apply(p, C[i], state=state).log_prob(X[i]) for i, p in enumerate(Ps)],
        }.items()}, t_min, rounds)
    return {**row, **t, "ours_over_zuko": t["a_module"] / t["e_zuko"],
            "sample_zuko_over_ours": t["sample_zuko"] / t["sample_ours"],
            "loop_over_vmap_params": t["d_loop"] / t["d_vmap_params"]}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--timed", default="MAF,NSF,RealNVP,NICE", help="comma-separated flows, or 'all'")
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--sizes", default="256,1024,4096", help="batch sizes of the eager vmap/module ratio (<= --n)")
    p.add_argument("--device", default="cuda", help="'cpu' runs the same checks (a dry run without a GPU)")
    args = p.parse_args()
    t_min = setup(args)
    dev = torch.device(args.device)
    checks, rows = {}, []
    sizes = [int(n) for n in args.sizes.split(",")]
    stem = "cuda" if dev.type == "cuda" else "cuda_check_cpu"
    for name in ZUKO_FLOWS:
        checks[name], env = check(name, dev, args.n)
        print(name, checks[name], flush=True)
        if args.timed == "all" or name in args.timed.split(","):
            rows.append(timings(name, env, t_min, 1 if args.quick else 3, sizes))
            write_json(stem, {"quick": args.quick, "complete": False, "checks": checks, "rows": rows}, args.out)
    print(f"device: {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}, torch {torch.__version__}")
    print(markdown_table(rows, ["flow", *(f"b_over_a_{n}" for n in sizes), "ours_over_zuko", "sample_zuko_over_ours",
                                "loop_over_vmap_params"],
                         ["flow", *(f"vmap/module N={n}" for n in sizes), "log_prob ours/zuko",
                          f"sample zuko/ours N={args.n}", "K=32 loop/vmap"]))
    write_json(stem, {"quick": args.quick, "complete": True, "checks": checks, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
