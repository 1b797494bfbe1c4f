r"""Keyed random numbers against torch's generator: ``random.normal(key, (N,))`` vs
``torch.randn(N)``, eager and compiled (inductor), N = 1e3..1e7, and sampling a flow with a
key vs without at N = 4096. Where jax is installed, ``jax.random.normal`` under ``jit``.

Goals: compiled within 1.5x of ``torch.randn`` at N >= 1e5, eager within 5x; a flow's
keyed sampling within 1.1x of unkeyed at N = 4096.

Usage: ``python benchmarks/random_keys.py [--quick] [--device cuda]``; writes ``results/random_keys.json``
(named so that it does not shadow the standard library's ``random`` for the scripts beside it).
"""

from __future__ import annotations

import importlib.util

import torch
from common import compare, markdown_table, parser, setup, write_json

from lazydist_functional import random
from lazydist_functional.catalogue import make_spec


def _sync(device: str):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def normals(sizes: list[int], device: str, t_min: float) -> list[dict]:
    sync = _sync(device)
    key = random.key(0, device=device)
    compiled = torch.compile(lambda k, n: random.normal(k, (n,)), dynamic=False)
    randn_c = torch.compile(lambda n: torch.randn(n, device=device), dynamic=False)
    jax_normal = None
    if importlib.util.find_spec("jax") is not None and device == "cpu":
        import jax

        jax_normal = jax.jit(lambda k, n: jax.random.normal(k, (n,)), static_argnums=1)
        jkey = jax.random.key(0)
    rows = []
    for n in sizes:
        fns = {
            "randn": lambda: (torch.randn(n, device=device), sync()),
            "keyed": lambda: (random.normal(key, (n,)), sync()),
            "randn_compiled": lambda: (randn_c(n), sync()),
            "keyed_compiled": lambda: (compiled(key, n), sync()),
        }
        if jax_normal is not None:
            fns["jax"] = lambda: jax_normal(jkey, n).block_until_ready()
        t = compare(fns, min_run_time=t_min, rounds=3)
        row = {"N": n, **{f"{k}_us": v * 1e6 for k, v in t.items()}}
        row["eager_ratio"] = t["keyed"] / t["randn"]
        row["compiled_ratio"] = t["keyed_compiled"] / t["randn_compiled"]
        row["compiled_vs_randn"] = t["keyed_compiled"] / t["randn"]
        if "jax" in t:
            row["compiled_vs_jax"] = t["keyed_compiled"] / t["jax"]
        rows.append(row)
        print(markdown_table([row], list(row)), flush=True)
    return rows


def flow_sampling(device: str, t_min: float, n: int = 4096) -> list[dict]:
    sync = _sync(device)
    rows = []
    for name in ("MAF", "NSF"):
        spec = make_spec(name, 8, 0)
        params = spec.init(torch.Generator().manual_seed(0), device=device)
        d = spec.apply(params)
        key = random.key(0, device=device)
        t = compare(
            {"torch": lambda: (d.sample((n,)), sync()), "key": lambda: (d.sample((n,), key=key), sync())},
            min_run_time=t_min,
            rounds=3,
        )
        rows.append({"flow": name, "N": n, "torch_ms": t["torch"] * 1e3, "key_ms": t["key"] * 1e3, "ratio": t["key"] / t["torch"]})
    return rows


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    t_min = setup(args)
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6, 10**7]
    rows = normals(sizes, args.device, t_min)
    cols = [c for c in rows[0] if c != "N"]
    print(f"\n### normal(key, (N,)) vs torch.randn(N) on {args.device}\n")
    print(markdown_table(rows, ["N", *cols]))
    flows = flow_sampling(args.device, t_min)
    print(f"\n### flow.sample((4096,), key=k) vs flow.sample((4096,)) on {args.device}\n")
    print(markdown_table(flows, list(flows[0])))
    name = "random_keys" if args.device == "cpu" else f"random_keys_{args.device}"
    write_json(name, {"quick": args.quick, "device": args.device, "normal": rows, "flows": flows}, args.out)


if __name__ == "__main__":
    main()
