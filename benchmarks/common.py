r"""Shared helpers of the benchmark scripts: one timer, one table printer, one JSON writer,
one plot helper and one argument parser.

Timings are medians from :mod:`torch.utils.benchmark`. :func:`compare` times several
callables side by side, alternating between them for ``rounds`` rounds and taking the
median of the per-round medians, so that a shared, noisy machine slows every candidate
alike: only ratios measured in one :func:`compare` call are meaningful.

Example:
    >>> t = compare({"a": lambda: sum(range(10)), "b": lambda: sum(range(20))}, min_run_time=0.001, rounds=1)
    >>> sorted(t)
    ['a', 'b']
    >>> print(markdown_table([{"flow": "MAF", "ratio": 1.234}], ["flow", "ratio"]))
    | flow | ratio |
    |---|---|
    | MAF | 1.23 |
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.utils.benchmark as tb

#: The catalogue's flows that Zuko 1.6 has too (the comparisons' flows): not planar, radial, Sylvester.
ZUKO_FLOWS = ("MAF", "NSF", "NCSF", "RealNVP", "NICE", "NAF", "UNAF", "SOSPF", "BPF", "GF", "CNF", "GMM")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def median_time(fn: Callable[[], Any], min_run_time: float = 0.2) -> float:
    r"""Median seconds of one call of ``fn``: one timed call when a call is longer than
    ``min_run_time`` (slow cases), else ``blocked_autorange``."""

    timer = tb.Timer("fn()", globals={"fn": fn})
    first = timer.timeit(1).median
    if first >= min_run_time:
        return first
    return timer.blocked_autorange(min_run_time=min_run_time).median


def compare(fns: Mapping[str, Callable[[], Any]], min_run_time: float = 0.2, rounds: int = 3) -> dict[str, float]:
    r"""Median seconds per call of each callable, timed alternately (a, b, ..., a, b, ...)
    over ``rounds`` rounds after one warm-up call each."""

    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            times[key].append(median_time(fn, min_run_time))
    return {key: statistics.median(ts) for key, ts in times.items()}


def fmt(value: Any) -> str:
    r"""A table cell: floats with 3 significant digits (scientific when tiny or huge)."""

    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        return f"{value:.1e}"
    return f"{value:.3g}" if abs(value) >= 100 else f"{value:.2f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    r"""A markdown table of ``rows`` (dicts) restricted to ``columns`` (missing cells empty)."""

    head = list(headers or columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row[c]) if c in row else "" for c in columns) + " |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    r"""What a reader needs to interpret the numbers: versions, threads, machine."""

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def write_json(name: str, payload: Mapping[str, Any], out: str = RESULTS) -> str:
    r"""Writes ``{"environment": ..., **payload}`` to ``out/name.json``; returns the path."""

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.json")
    with open(path, "w") as fh:
        json.dump({"environment": environment(), **payload}, fh, indent=1)
    return path


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    r"""Least-squares slope of :math:`\log y` against :math:`\log x` (the exponent
    :math:`a` of :math:`y \propto x^a`)."""

    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def figure(ncols: int = 1, width: float = 5.5, height: float = 4.0) -> tuple[Any, Any]:
    r"""A matplotlib figure with ``ncols`` axes (non-interactive backend)."""

    import matplotlib  # optional dependency: only the plotting scripts need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig: Any, name: str, out: str = RESULTS) -> str:
    r"""Saves ``fig`` as ``out/name.png``; returns the path."""

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def parser(doc: str) -> argparse.ArgumentParser:
    r"""An argument parser with the common ``--quick`` (runs in under a minute),
    ``--threads`` and ``--out`` options."""

    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes and short timings (< 1 min)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default=RESULTS, help="folder of the JSON and PNG results")
    p.add_argument("--min-run-time", type=float, default=None, help="seconds per timing (default 0.2; --quick 0.02)")
    return p


def setup(args: argparse.Namespace) -> float:
    r"""Applies ``--threads``, seeds torch and returns the timing budget
    (``min_run_time``) implied by ``--quick``."""

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args.min_run_time or (0.02 if args.quick else 0.2)
