r"""Meta-learning, ensembles, hypernetworks, per-sample gradients: vmapped vs loops (issue 4).

(i)   MAML meta-gradient, T=16 tasks, k=5 inner SGD steps: vmap over tasks vs a loop
      over tasks; beside it Zuko + ``functional_call`` (runs, but ignores the params:
      zero meta-gradient) and ``higher`` (cannot wrap a Zuko-style module: MRO clash).
(ii)  Ensemble of K=32 flows, one training step: vmap over stacked params + functional
      Adam vs a loop over 32 modules with ``torch.optim.Adam``.
(iii) Hypernetwork conditioning at N=4096: per-sample params in one vmap vs the
      shared-params batched path.
(iv)  Per-sample gradients, N=256: vmap(grad) vs a loop of backward passes.
(v)   The meta-learning experiment: held-out query NLL vs number of adaptation steps,
      meta-trained init vs pretrained init (plot ``results/meta.png``).

Usage: ``python benchmarks/meta.py [--quick]``; writes ``results/meta.json``.
"""

from __future__ import annotations

import math

import torch
import zuko
from common import figure, markdown_table, median_time, parser, save_figure, setup, write_json
from torch.func import functional_call, grad, vmap

import lazydist_functional as L
import lazydist_functional.adapters as Z
import lazydist_functional.meta as M
from lazydist_functional.flows import MAF
from lazydist_functional.nn import MLP
from lazydist_functional.optim import adam


def tasks(k: int, shots: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    angle = 2 * math.pi * torch.rand(k, 1, 1, generator=gen)
    mu = 2 * torch.cat((angle.cos(), angle.sin()), dim=-1)
    return mu + 0.3 * torch.randn(k, shots, 2, generator=gen), mu + 0.3 * torch.randn(k, shots, 2, generator=gen)


def bench_maml(t_min: float) -> dict:
    spec = MAF(2, 0, transforms=2, hidden_features=[32, 32])
    params = spec.init(torch.Generator().manual_seed(0))
    s, q = tasks(16, 16, torch.Generator().manual_seed(0))

    def vmapped():
        return grad(lambda p: M.maml_loss(spec, p, None, s, None, q, inner_steps=5, inner_lr=0.1))(params)

    def loop():
        def loss(p):
            total = 0.0
            for t in range(16):
                total = total + M.nll(spec, M.adapt(spec, p, None, s[t], 5, 0.1), None, q[t])
            return total / 16
        return grad(loss)(params)

    zf = zuko.flows.MAF(2, 0, transforms=2, hidden_features=[32, 32])
    zp = {k: v.detach().clone().requires_grad_() for k, v in zf.named_parameters()}

    def zuko_functional_call():
        total = 0.0
        for t in range(16):
            fast = dict(zp)
            for _ in range(5):
                loss = -functional_call(zf, fast, ()).log_prob(s[t]).mean()
                gs = torch.autograd.grad(loss, list(fast.values()), create_graph=True, allow_unused=True)
                fast = {k: v - 0.1 * (g if g is not None else 0) for (k, v), g in zip(fast.items(), gs)}
            total = total + -functional_call(zf, fast, ()).log_prob(q[t]).mean()
        gs = torch.autograd.grad(total / 16, list(zp.values()), allow_unused=True)
        return gs

    zero = all(g is None or float(g.abs().sum()) == 0 for g in zuko_functional_call())
    try:
        import higher  # noqa: F401

        opt = torch.optim.SGD(zf.parameters(), lr=0.1)
        with higher.innerloop_ctx(zf, opt):
            higher_status = "wrapped"
    except ImportError:
        higher_status = "not installed (pip install higher): it fails with 'Cannot create a consistent MRO for bases Module, ABC'"
    except TypeError as e:
        higher_status = f"fails: {str(e).splitlines()[0]}"
    g_v, g_l = L.flatten_names(vmapped()), L.flatten_names(loop())
    err = max(float((g_v[k] - g_l[k]).abs().max()) for k in g_v)
    t_v, t_l, t_z = median_time(vmapped, t_min), median_time(loop, t_min), median_time(zuko_functional_call, t_min)
    return {"vmap_s": t_v, "loop_s": t_l, "zuko_functional_call_s": t_z, "loop_over_vmap": t_l / t_v,
            "max_abs_diff_vs_loop": err, "zuko_functional_call_meta_grad_all_zero": zero, "higher": higher_status}


def bench_ensemble(t_min: float) -> dict:
    spec = MAF(2, 1, transforms=3, hidden_features=[64, 64])
    stacked = M.ensemble_init(spec, 32)
    opt = adam(1e-3)
    opt_state = vmap(opt.init)(stacked)
    c, x = torch.randn(128, 1), torch.randn(128, 2)
    modules = [Z.flows.to_module(spec, p) for p in L.tree_unstack(stacked)]
    optims = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in modules]

    def vmapped():
        return M.ensemble_step(spec, opt, stacked, opt_state, c, x)

    def loop():
        for m, o in zip(modules, optims):
            loss = -m(c).log_prob(x).mean()
            o.zero_grad()
            loss.backward()
            o.step()

    t_v, t_l = median_time(vmapped, t_min), median_time(loop, t_min)
    return {"vmap_s": t_v, "loop_s": t_l, "loop_over_vmap": t_l / t_v}


def bench_hypernet(t_min: float, n: int = 4096) -> dict:
    per_sample = MAF(2, 0, transforms=3, hidden_features=[32])
    shared = MAF(2, 3, transforms=3, hidden_features=[32])
    hyper = MLP(3, M.param_count(per_sample), [64])
    psi = hyper.init(torch.Generator().manual_seed(0))
    shared_params = shared.init(torch.Generator().manual_seed(0))
    c, x = torch.randn(n, 3), torch.randn(n, 2)
    with torch.no_grad():
        flat = 0.1 * hyper.apply(psi, c)  # (n, param_count): every sample's own flow parameters
        P = M.unravel(per_sample, flat)
        t_flow = median_time(lambda: vmap(lambda p, xi: per_sample.apply(p).log_prob(xi))(P, x), t_min)
        t_all = median_time(lambda: M.hypernet_log_prob(per_sample, lambda p, ci: 0.1 * hyper.apply(p, ci), psi, c, x), t_min)
        t_s = median_time(lambda: shared.apply(shared_params, c).log_prob(x), t_min)
    return {"n": n, "params_per_sample": M.param_count(per_sample), "per_sample_flow_vmap_s": t_flow,
            "hypernet_and_flow_vmap_s": t_all, "shared_batched_s": t_s,
            "per_sample_flow_over_shared": t_flow / t_s, "hypernet_and_flow_over_shared": t_all / t_s}


def bench_per_sample(t_min: float, n: int = 256) -> dict:
    spec = MAF(2, 1, transforms=3, hidden_features=[64, 64])
    params = spec.init(torch.Generator().manual_seed(0))
    module = Z.flows.to_module(spec, params)
    c, x = torch.randn(n, 1), torch.randn(n, 2)

    def loop():
        out = []
        for i in range(n):
            module.zero_grad()
            module(c[i]).log_prob(x[i]).backward()
            out.append([p.grad.clone() for p in module.parameters()])
        return out

    t_v, t_l = median_time(lambda: M.per_sample_grads(spec, params, c, x), t_min), median_time(loop, t_min)
    return {"n": n, "vmap_s": t_v, "loop_s": t_l, "loop_over_vmap": t_l / t_v}


def experiment(meta_steps: int, out: str) -> dict:
    spec = MAF(2, 0, transforms=2, hidden_features=[32, 32])
    opt = adam(3e-3)
    gen = torch.Generator().manual_seed(0)

    def train(objective):
        p = spec.init(torch.Generator().manual_seed(1))
        state = opt.init(p)
        for _ in range(meta_steps):
            s, q = tasks(8, 16, gen)
            p, state = opt.update(grad(objective)(p, s, q), state, p)
        return p

    inits = {
        "meta-trained (MAML, k=3)": train(lambda p, s, q: M.maml_loss(spec, p, None, s, None, q, inner_steps=3)),
        "pretrained (pooled tasks)": train(lambda p, s, q: M.nll(spec, p, None, torch.cat((s, q)).reshape(-1, 2))),
    }
    s, q = tasks(64, 16, torch.Generator().manual_seed(123))
    steps = list(range(0, 5))
    curves = {name: [float(M.maml_loss(spec, p, None, s, None, q, inner_steps=k)) for k in steps]
              for name, p in inits.items()}
    fig, (ax,) = figure(width=6)
    for name, curve in curves.items():
        ax.plot(steps, curve, "o-", label=name)
    ax.axvline(3, color="k", lw=0.6, ls=":")
    ax.set(xlabel="SGD adaptation steps on 16 support points (lr 0.1)", ylabel="held-out query NLL",
           title="64 held-out tasks (2-D Gaussians, mean on a circle)")
    ax.legend()
    save_figure(fig, "meta", out)
    return {"steps": steps, "curves": curves}


def main() -> None:
    args = parser(__doc__).parse_args()
    t_min = setup(args) * 2.5
    results = {
        "maml_T16_k5": bench_maml(t_min),
        "ensemble_K32_step": bench_ensemble(t_min),
        "hypernet_N4096": bench_hypernet(t_min),
        "per_sample_grads_N256": bench_per_sample(t_min),
    }
    results["experiment"] = experiment(30 if args.quick else 200, args.out)
    r = results
    h = r["hypernet_N4096"]
    print(markdown_table([
        {"benchmark": "MAML meta-gradient, T=16, k=5: loop over tasks / vmap",
         "ratio": r["maml_T16_k5"]["loop_over_vmap"], "target": ">= 10x"},
        {"benchmark": "ensemble K=32, one Adam step: loop over modules / vmap",
         "ratio": r["ensemble_K32_step"]["loop_over_vmap"], "target": ">= 5x"},
        {"benchmark": f"N=4096, each sample its own {h['params_per_sample']} flow params (vmap) / shared params batched",
         "ratio": h["per_sample_flow_over_shared"], "target": "<= 2"},
        {"benchmark": "same, including the hypernetwork that produces them",
         "ratio": h["hypernet_and_flow_over_shared"], "target": ""},
        {"benchmark": "per-sample grads N=256: loop / vmap(grad)",
         "ratio": r["per_sample_grads_N256"]["loop_over_vmap"], "target": ""},
    ], ["benchmark", "ratio", "target"]))
    print(f"zuko + functional_call MAML: runs in {r['maml_T16_k5']['zuko_functional_call_s'] * 1e3:.0f} ms but the "
          f"meta-gradient is all zero: {r['maml_T16_k5']['zuko_functional_call_meta_grad_all_zero']}")
    print(f"higher: {r['maml_T16_k5']['higher']}")
    curves = r["experiment"]["curves"]
    for name, curve in curves.items():
        print(f"{name}: held-out query NLL after 0/3/4 steps = {curve[0]:.3f} / {curve[3]:.3f} / {curve[4]:.3f}")
    write_json("meta", {"quick": args.quick, **results}, args.out)


if __name__ == "__main__":
    main()
