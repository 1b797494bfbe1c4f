r"""What breaks in Zuko 1.6 under torch.func, flow by flow, and the same calls here.

For each flow of the catalogue: does ``functional_call(flow, params, (c,))`` honour
``params``; does ``vmap`` of ``log_prob`` run; does ``vmap(randomness="different")`` of
``sample`` run. Prints a markdown table (the one quoted in README.md) and writes
``results/zuko_failures.json``.

Usage: ``python benchmarks/zuko_failures.py [--quick]`` (always quick: no timings).
"""

from __future__ import annotations

import warnings

import torch
import zuko
from common import markdown_table, parser, setup, write_json
from torch.func import functional_call, vmap

import lazydist_functional.adapters as ours
from lazydist_functional.catalogue import FLOWS

CALLS = ("functional_call", "vmap log_prob", "vmap sample")


def probe(lib: object, name: str) -> tuple[str, str, str]:
    if not hasattr(lib.flows, name):
        return ("n/a",) * 3
    flow = getattr(lib.flows, name)(3, 2)
    c, x = torch.randn(2), torch.randn(3).clamp(-3, 3)
    params = {k: v.detach() + 0.1 for k, v in flow.named_parameters()}  # small: +1 makes the CNF stiff
    try:
        same = torch.allclose(functional_call(flow, params, (c,)).log_prob(x), flow(c).log_prob(x))
        fc = "IGNORES params" if same else "ok"
    except Exception as e:  # noqa: BLE001 - report whatever breaks
        fc = f"error ({type(e).__name__})"
    out = [fc]
    for call in (
        lambda: vmap(lambda c, x: flow(c).log_prob(x))(torch.randn(4, 2), torch.randn(4, 3)),
        lambda: vmap(lambda c: flow(c).sample(), randomness="different")(torch.randn(4, 2)),
    ):
        try:
            call()
            out.append("ok")
        except Exception as e:  # noqa: BLE001
            out.append(f"fails: {str(e).splitlines()[0][:50]}")
    return tuple(out)


def main() -> None:
    args = parser(__doc__).parse_args()
    setup(args)
    warnings.filterwarnings("ignore")
    rows = []
    for name in FLOWS:
        row = {"flow": name}
        for lib, who in ((zuko, "zuko"), (ours, "ours")):
            row.update({f"{who} {call}": v for call, v in zip(CALLS, probe(lib, name))})
        rows.append(row)
    print(f"zuko {zuko.__version__}, torch {torch.__version__}")
    print(markdown_table(rows, ["flow"] + [f"{who} {call}" for who in ("zuko", "ours") for call in CALLS]))
    write_json("zuko_failures", {"zuko": zuko.__version__, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
