r"""Sampling (inverse) speed of the monotonic flows: this library vs Zuko, same weights.

For NAF, UNAF, SOSPF, BPF and GF (3 features, Zuko's default sizes) a Zuko flow is
built, its ``state_dict`` loaded into this library's spec, and both draw 1024 samples
(``flow().sample((1024,))``, i.e. the inverse transform of base draws). Zuko inverts
by bisection (``ceil(log2(2B / 1e-6)) = 25`` steps per pass and feature group); this
library uses a fixed number of safeguarded Newton steps (``iterations``) and solves
each autoregressive group once.

Timings are interleaved (Zuko, ours, Zuko, ...) and reported as medians and ratios
measured side by side in one run. The round-trip error is
:math:`\max |f^{-1}(f(x)) - x|` over :math:`x \sim \mathcal{N}(0, I)` (1024 points)
and over a grid of :math:`[-5, 5]^3` diagonals.

Usage::

    python benchmarks/monotonic.py [--quick] [--device cpu|cuda] [--threads N] [--flows NAF,BPF]

Writes ``benchmarks/results/monotonic.json`` (``monotonic_<device>.json`` for a non-CPU
device) and prints a markdown table.
"""

from __future__ import annotations

import platform
import sys

import torch
import zuko
from common import compare, markdown_table, parser, setup, write_json

from lazydist_functional.catalogue import FLOWS


def roundtrip(transform, device) -> float:
    x = torch.randn(1024, 3, device=device)
    grid = torch.linspace(-5, 5, 201, device=device)[:, None].expand(201, 3)
    with torch.no_grad():
        return max(float((transform.inv(transform(v)) - v).abs().max()) for v in (x, grid))


def run(name: str, device: str, rounds: int, budget: float, settings: list[int | None]) -> list[dict]:
    torch.manual_seed(0)
    z = getattr(zuko.flows, name)(3).to(device)
    rows = []
    specs = {}
    for it in settings:
        kwargs = {} if it is None else {"iterations": it}
        spec = FLOWS[name].cls(3, **kwargs)
        params, state = spec.split_state_dict({k: v.detach() for k, v in z.state_dict().items()})
        specs[it] = (spec, params, state)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        z_rt = roundtrip(z().transform, device)
    for it, (spec, params, state) in specs.items():
        with torch.no_grad():
            t = compare({
                "zuko": lambda: (z().sample((1024,)), sync()),
                "ours": lambda: (spec.apply(params, state=state).sample((1024,)), sync()),
            }, budget, rounds)
        t_z, t_o = t["zuko"], t["ours"]
        rt = roundtrip(spec.apply(params, state=state).transform, device)
        rows.append({
            "flow": name,
            "iterations": "default" if it is None else it,
            "zuko_s": t_z,
            "ours_s": t_o,
            "speedup": t_z / t_o,
            "roundtrip_ours": rt,
            "roundtrip_zuko": z_rt,
        })
        print(f"  {name} iterations={rows[-1]['iterations']}: zuko {t_z * 1e3:.1f} ms, ours {t_o * 1e3:.1f} ms, "
              f"x{t_z / t_o:.2f}, round-trip {rt:.1e} (zuko {z_rt:.1e})", file=sys.stderr)
    return rows


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=float, default=None, help="seconds per adaptive measurement")
    p.add_argument("--flows", default="NAF,UNAF,SOSPF,BPF,GF")
    args = p.parse_args()
    budget = setup(args)
    budget = args.budget or budget
    rounds = 1 if args.quick else args.rounds

    rows = []
    for name in args.flows.split(","):
        rows += run(name, args.device, rounds, budget, [None] if args.quick else [None, 6])

    table = markdown_table(rows, ["flow", "iterations", "zuko_s", "ours_s", "speedup", "roundtrip_ours", "roundtrip_zuko"],
                           ["flow", "iterations", "zuko (s)", "ours (s)", "speed-up", "round-trip ours",
                            "round-trip zuko"])
    print(table)

    meta = {
        "task": "sample((1024,)) of 3 features, same weights (Zuko state_dict loaded)",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "zuko": zuko.__version__,
        "python": platform.python_version(),
        "rounds": rounds,
    }
    name = "monotonic" if args.device == "cpu" else f"monotonic_{args.device}"
    out = write_json(name, {"meta": meta, "results": rows, "table": table}, args.out)
    print(f"\nwritten {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
