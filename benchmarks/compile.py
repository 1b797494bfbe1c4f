r"""Eager vs compiled (``torch.compile``, inductor) ``log_prob`` for every flow of the catalogue.

For each flow of :data:`lazydist_functional.catalogue.FLOWS` (5 features, 4 context
features, Zuko's default sizes) and N samples (default 1024), the pure path
``spec.apply(params, c, state=state).log_prob(x)`` is timed eagerly and compiled
(``torch.compile(fn, backend=..., dynamic=False)``, warm: compilation is timed
separately), side by side in one run. A flow whose compilation fails is reported with
its error. Issue 9's goal: compiled <= eager everywhere.

Usage: ``python benchmarks/compile.py [--quick] [--flows MAF,NSF] [--n 1024]``; writes
``results/compile.json`` and ``results/compile.png``.
"""

from __future__ import annotations

import time
import warnings

import torch
import torch._dynamo
from common import compare, figure, markdown_table, parser, save_figure, setup, write_json

from lazydist_functional.catalogue import FLOWS, sample_input

FEATURES, CONTEXT = 5, 4


def bench_flow(name: str, n: int, backend: str, t_min: float, rounds: int) -> dict:
    torch._dynamo.reset()
    spec = FLOWS[name].cls(FEATURES, CONTEXT)
    params, state = spec.init(torch.Generator().manual_seed(0)), spec.init_state()
    c, x = torch.randn(n, CONTEXT), sample_input(name, (n, FEATURES))

    def eager(p, ci, xi):
        return spec.apply(p, ci, state=state).log_prob(xi)

    compiled = torch.compile(eager, backend=backend, dynamic=False)
    row: dict = {"flow": name, "n": n, "backend": backend}
    with torch.no_grad():
        start = time.perf_counter()
        try:
            out = compiled(params, c, x)
        except Exception as e:  # noqa: BLE001 - report whatever fails to compile
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            print(f"{name:8s} compile failed: {row['error']}", flush=True)
            return row
        row["compile_s"] = time.perf_counter() - start
        row["max_abs_diff"] = float((out - eager(params, c, x)).abs().max())
        t = compare({"eager": lambda: eager(params, c, x), "compiled": lambda: compiled(params, c, x)}, t_min, rounds)
    row.update(eager_s=t["eager"], compiled_s=t["compiled"], compiled_over_eager=t["compiled"] / t["eager"])
    print(f"{name:8s} N={n} compiled/eager {row['compiled_over_eager']:5.2f} (compile {row['compile_s']:.0f} s, "
          f"|diff| {row['max_abs_diff']:.1e})", flush=True)
    return row


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--flows", default=None, help="comma-separated (default: all; --quick: MAF,NSF)")
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--backend", default="inductor")
    args = p.parse_args()
    t_min = setup(args)
    warnings.filterwarnings("ignore", category=FutureWarning)  # inductor's own deprecations
    names = (args.flows or ("MAF,NSF" if args.quick else ",".join(FLOWS))).split(",")
    rows = [bench_flow(name, args.n, args.backend, t_min, 1 if args.quick else 3) for name in names]
    print()
    print(markdown_table(rows, ["flow", "n", "eager_s", "compiled_s", "compiled_over_eager", "compile_s", "error"],
                         ["flow", "N", "eager (s)", "compiled (s)", "compiled / eager", "compile time (s)", "error"]))
    write_json("compile", {"quick": args.quick, "features": FEATURES, "context": CONTEXT, "rows": rows}, args.out)
    ok = [r for r in rows if "compiled_over_eager" in r]
    fig, (ax,) = figure(width=7)
    ax.bar([r["flow"] for r in ok], [r["compiled_over_eager"] for r in ok])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(ylabel="compiled / eager (lower is better)", title=f"log_prob, N={args.n}, {args.backend}")
    save_figure(fig, "compile", args.out)


if __name__ == "__main__":
    main()
