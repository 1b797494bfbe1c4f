r"""The adapter's overhead against Zuko 1.6, same configuration and weights (issue 13).

For each of the 12 flows (5 features, 4 context features, ``hidden_features=[64, 64]``)
and both libraries, timed alternately in one run:

* **build**: ``flow(c)`` (one context);
* **log_prob N=1**: ``flow(c).log_prob(x)``, one sample (overhead-bound);
* **log_prob N=4096**: ``flow(c).log_prob(x)``, a batch of 4096;
* **train step**: ``loss = -flow(c).log_prob(x).mean()``, backward, Adam step, N=256.

Issue 13's goal: every ratio ours / Zuko <= 1.1.

Usage: ``python benchmarks/adapter.py [--quick] [--flows MAF,NSF]``; writes ``results/adapter.json``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import zuko
from common import ZUKO_FLOWS, compare, markdown_table, parser, setup, write_json

import lazydist_functional.adapters as ours
from lazydist_functional.catalogue import sample_input

FEATURES, CONTEXT, HIDDEN = 5, 4, [64, 64]


def flow_class(library, name: str) -> type:
    return library.mixtures.GMM if name == "GMM" else getattr(library.flows, name)


def make_pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    kwargs = {} if name == "GMM" else {"hidden_features": HIDDEN}
    theirs = flow_class(zuko, name)(FEATURES, CONTEXT, **kwargs)
    mine = flow_class(ours, name)(FEATURES, CONTEXT, **kwargs)
    mine.load_state_dict(theirs.state_dict())
    return theirs, mine


def cases(flow: torch.nn.Module, name: str) -> dict[str, Callable[[], object]]:
    c1, x1 = torch.randn(CONTEXT), sample_input(name, (FEATURES,))
    cn, xn = torch.randn(4096, CONTEXT), sample_input(name, (4096, FEATURES))
    ct, xt = torch.randn(256, CONTEXT), sample_input(name, (256, FEATURES))
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-6)

    def step() -> None:
        loss = -flow(ct).log_prob(xt).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return fn()

        return run

    return {
        "build": no_grad(lambda: flow(c1)),
        "log_prob N=1": no_grad(lambda: flow(c1).log_prob(x1)),
        "log_prob N=4096": no_grad(lambda: flow(cn).log_prob(xn)),
        "train step": step,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--flows", default=",".join(ZUKO_FLOWS))
    args = p.parse_args()
    t_min = setup(args)
    rows = []
    for name in args.flows.split(","):
        theirs, mine = make_pair(name)
        ours_cases, zuko_cases = cases(mine, name), cases(theirs, name)
        row: dict[str, object] = {"flow": name}
        for key in ours_cases:
            if name == "CNF" and key != "build" and args.quick:
                continue
            t = compare({"ours": ours_cases[key], "zuko": zuko_cases[key]}, min_run_time=t_min, rounds=3)
            row[f"{key} ours (ms)"] = t["ours"] * 1e3
            row[f"{key} ratio"] = t["ours"] / t["zuko"]
        rows.append(row)
        print(name, {k: round(v, 3) for k, v in row.items() if k.endswith("ratio")}, flush=True)
    keys = ["build", "log_prob N=1", "log_prob N=4096", "train step"]
    columns = ["flow", *[f"{k} ratio" for k in keys]]
    print(markdown_table(rows, columns, ["flow", *[f"{k} ours/Zuko" for k in keys]]))
    write_json("adapter", {"goal": "ours/Zuko <= 1.1 for every flow and case", "rows": rows}, args.out)


if __name__ == "__main__":
    main()
