r"""Every flow of the catalogue against Zuko 1.6, same weights, side by side in one run.

For each flow of :data:`lazydist_functional.catalogue.FLOWS` (3 features, 2 context
features, Zuko's default sizes; Zuko's weights loaded with ``spec.split_state_dict``)
and N = 1024: ``log_prob`` time ours / Zuko (module path), vmap of the pure apply
over per-sample contexts / our module path, and ``sample()`` of the N contexts' flows
(one draw per context, i.e. the inverse with per-sample parameters) ours / Zuko (module
path; same weights, not the same random numbers). Zuko's ``vmap`` is not timed: it fails
for most of these flows (``benchmarks/zuko_failures.py``).

Usage: ``python benchmarks/catalogue.py [--quick]``; writes ``results/catalogue.json``.
"""

from __future__ import annotations

import torch
import zuko
from common import ZUKO_FLOWS, compare, markdown_table, parser, setup, write_json
from torch.func import vmap

import lazydist_functional.adapters as Z
from lazydist_functional.catalogue import FLOWS, sample_input


def bench(name: str, n: int, t_min: float, rounds: int) -> dict:
    spec = FLOWS[name].cls(3, 2)
    ref = getattr(zuko.flows, name)(3, 2)
    params, state = spec.split_state_dict({k: v.detach() for k, v in ref.state_dict().items()})
    ours = Z.flows.to_module(spec, params, state)
    c, x = torch.randn(n, 2), sample_input(name, (n, 3))
    with torch.no_grad():
        err = float((ours(c).log_prob(x) - ref(c).log_prob(x)).abs().max())
        t = compare({
            "zuko": lambda: ref(c).log_prob(x),
            "ours": lambda: ours(c).log_prob(x),
            "vmap": lambda: vmap(lambda ci, xi: spec.apply(params, ci, state=state).log_prob(xi))(c, x),
        }, t_min, rounds)
        s = compare({"zuko": lambda: ref(c).sample(), "ours": lambda: ours(c).sample()}, t_min, rounds)
    row = {"flow": name, "n": n, "max_abs_diff": err, **{f"{k}_s": v for k, v in t.items()},
           "ours_over_zuko": t["ours"] / t["zuko"], "vmap_over_module": t["vmap"] / t["ours"],
           "sample_zuko_s": s["zuko"], "sample_ours_s": s["ours"], "sample_ours_over_zuko": s["ours"] / s["zuko"]}
    print(f"{name:8s} ours/zuko {row['ours_over_zuko']:5.2f}  vmap/module {row['vmap_over_module']:5.2f}  "
          f"sample ours/zuko {row['sample_ours_over_zuko']:5.2f}  |diff| {err:.1e}", flush=True)
    return row


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=1024)
    args = p.parse_args()
    t_min = setup(args)
    rows = [bench(name, args.n, t_min, 1 if args.quick else 3) for name in ZUKO_FLOWS]
    print()
    print(markdown_table(rows, ["flow", "ours_over_zuko", "vmap_over_module", "sample_ours_over_zuko", "max_abs_diff"],
                         ["flow", "log_prob ours / Zuko", "vmap / module", "sample ours / Zuko",
                          "max abs diff vs Zuko"]))
    write_json("catalogue", {"quick": args.quick, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
