r"""What breaks in Zuko 1.6 under torch.func, flow by flow, and the same calls here.

For each flow: does ``functional_call(flow, params, (c,))`` honour ``params``; does
``vmap`` of ``log_prob`` run; does ``vmap(randomness="different")`` of ``sample`` run.
Prints a markdown table (the one quoted in README.md).
"""

from __future__ import annotations

import warnings

import torch
import zuko
from torch.func import functional_call, vmap

import lazydist_functional.adapters as ours

FLOWS = ["MAF", "NSF", "RealNVP", "NICE", "NCSF", "NAF", "UNAF", "SOSPF", "BPF", "GF", "CNF", "GMM"]


def probe(lib: object, name: str) -> tuple[str, str, str]:
    if not hasattr(lib.flows, name):
        return ("n/a",) * 3
    flow = getattr(lib.flows, name)(3, 2)
    c, x = torch.randn(2), torch.randn(3).clamp(-3, 3)
    params = {k: v.detach() + 1.0 for k, v in flow.named_parameters()}
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
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    print(f"zuko {zuko.__version__}, torch {torch.__version__}")
    print("| flow | zuko functional_call | zuko vmap log_prob | zuko vmap sample | ours functional_call | ours vmap log_prob | ours vmap sample |")
    print("|---|---|---|---|---|---|---|")
    for name in FLOWS:
        print(f"| {name} | " + " | ".join(probe(zuko, name) + probe(ours, name)) + " |")


if __name__ == "__main__":
    main()
