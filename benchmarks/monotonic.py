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

    python benchmarks/monotonic.py [--device cpu|cuda] [--threads N] [--flows NAF,BPF]

Writes ``benchmarks/results/monotonic.json`` (``monotonic_<device>.json`` for a non-CPU
device) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch
import zuko
from torch.utils.benchmark import Timer

from lazydist_functional import flows, unflatten_names

RESULTS = Path(__file__).parent / "results"


def split(spec, state_dict):
    ps, ss = spec.param_shapes, spec.state_shapes
    params = unflatten_names({k: v for k, v in state_dict.items() if k in ps})
    state = unflatten_names({k: v for k, v in state_dict.items() if k in ss})
    return params, state


def median_time(stmt: str, env: dict, budget: float) -> float:
    r"""Median seconds of one call, by ``torch.utils.benchmark`` (adaptive for fast
    calls, single timed calls for slow ones)."""

    timer = Timer(stmt, globals=env)
    first = timer.timeit(1).median
    if first * 5 > budget:
        return first
    return timer.blocked_autorange(min_run_time=budget).median


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
        spec = getattr(flows, name)(3, **kwargs)
        params, state = split(spec, z.state_dict())
        specs[it] = (spec, params, state)

    sync = "torch.cuda.synchronize()" if device == "cuda" else "pass"
    z_env = {"flow": z, "torch": torch}
    z_stmt = f"flow().sample((1024,)); {sync}"
    with torch.no_grad():
        z_rt = roundtrip(z().transform, device)
    slow = median_time(z_stmt, z_env, 0.0) > 5  # also the warm-up
    for it, (spec, params, state) in specs.items():
        env = {"spec": spec, "p": params, "s": state, "torch": torch}
        stmt = f"spec.apply(p, state=s).sample((1024,)); {sync}"
        median_time(stmt, env, 0.0)  # warm-up
        if slow:
            rounds = 1
        tz, to = [], []
        for _ in range(rounds):
            tz.append(median_time(z_stmt, z_env, budget))
            to.append(median_time(stmt, env, budget))
        t_z, t_o = statistics.median(tz), statistics.median(to)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.5, help="seconds per adaptive measurement")
    parser.add_argument("--flows", default="NAF,UNAF,SOSPF,BPF,GF")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for name in args.flows.split(","):
        rows += run(name, args.device, args.rounds, args.budget, [None, 6])

    lines = [
        "| flow | iterations | zuko (ms) | ours (ms) | speed-up | round-trip ours | round-trip zuko |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['flow']} | {r['iterations']} | {r['zuko_s'] * 1e3:.1f} | {r['ours_s'] * 1e3:.1f} | "
            f"{r['speedup']:.2f}x | {r['roundtrip_ours']:.1e} | {r['roundtrip_zuko']:.1e} |"
        )
    table = "\n".join(lines)
    print(table)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("monotonic.json" if args.device == "cpu" else f"monotonic_{args.device}.json")
    meta = {
        "task": "sample((1024,)) of 3 features, same weights (Zuko state_dict loaded)",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "zuko": zuko.__version__,
        "python": platform.python_version(),
        "rounds": args.rounds,
    }
    out.write_text(json.dumps({"meta": meta, "results": rows, "table": table}, indent=2))
    print(f"\nwritten {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
