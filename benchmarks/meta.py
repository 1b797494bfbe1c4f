r"""Meta-learning, ensembles, hypernetworks, per-sample gradients: vmapped vs loops (issue 4).

(i)   MAML meta-gradient, T=16 tasks, k=5 inner SGD steps: vmap over tasks vs a loop
      over tasks; beside it Zuko + ``functional_call`` (runs, but ignores the params:
      zero meta-gradient) and ``higher`` (cannot wrap a Zuko-style module: MRO clash).
(ii)  Ensemble of K=32 flows, one training step: vmap over stacked params + functional
      Adam vs a loop over 32 modules with ``torch.optim.Adam`` (CPU time, as (iii)).
(iii) Hypernetwork conditioning at N=4096: per-sample params in one vmap vs the
      shared-params batched path, beside the floor (the bare per-sample GEMVs vs the
      shared GEMMs) and, unless ``--quick``, both compiled with inductor.
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
from conditioning import cpu_compare
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

    def loop():
        for m, o in zip(modules, optims):
            loss = -m(c).log_prob(x).mean()
            o.zero_grad()
            loss.backward()
            o.step()

    def grads():
        return grad(lambda p: vmap(lambda q: M.nll(spec, q, c, x))(p).sum())(stacked)

    g = grads()
    update = getattr(opt, "update_stacked", None) or vmap(opt.update)  # (also runs on older versions)
    t = cpu_compare({"loop": loop, "vmap": lambda: M.ensemble_step(spec, opt, stacked, opt_state, c, x),
                     "vmap_grad": grads, "stacked_adam": lambda: update(g, opt_state, stacked)}, t_min, 5)
    return {"vmap_s": t["vmap"], "loop_s": t["loop"], "loop_over_vmap": t["loop"] / t["vmap"],
            "grad_only_s": t["vmap_grad"], "stacked_adam_s": t["stacked_adam"],
            "loop_over_grad_only": t["loop"] / t["vmap_grad"]}


def bench_hypernet(t_min: float, n: int = 4096, compiled: bool = True) -> dict:
    r"""Per-sample flow parameters (N parameter sets, vmap) vs one shared set on the batch,
    beside the floors: the bare GEMMs of both (N batched matrix-vector products of
    the per-sample masked weights, one ``baddbmm`` per layer, vs one ``addmm`` per layer)
    and one read of every per-sample weight (the memory floor)."""

    per_sample = MAF(2, 0, transforms=3, hidden_features=[32])
    shared = MAF(2, 3, transforms=3, hidden_features=[32])
    hyper = MLP(3, M.param_count(per_sample), [64])
    psi = hyper.init(torch.Generator().manual_seed(0))
    shared_params = shared.init(torch.Generator().manual_seed(0))
    c, x = torch.randn(n, 3), torch.randn(n, 2)
    layers = [(32, 2), (4, 32)] * 3  # per-sample (out, in) of the 3 MADEs; shared: in + 3 context features first
    W = [torch.randn(n, o, i) for o, i in layers]
    B = [torch.randn(n, o) for o, _ in layers]
    S = [(torch.randn(o, i + (3 if i == 2 else 0)), torch.randn(o)) for o, i in layers]
    rows = {i: torch.randn(n, i) for i in (2, 5, 32)}

    def per_sample_gemms():
        return [torch.baddbmm(b.unsqueeze(2), w, rows[w.shape[2]].unsqueeze(2)) for w, b in zip(W, B)]

    def shared_gemms():
        return [torch.addmm(b, rows[w.shape[1]], w.T) for w, b in S]

    def read_weights():
        return [w.sum() for w in W]

    def flow(P, xs):
        return vmap(lambda p, xi: per_sample.apply(p).log_prob(xi))(P, xs)

    def shared_flow(p, cs, xs):
        return shared.apply(p, cs).log_prob(xs)

    with torch.no_grad():
        flat = 0.1 * hyper.apply(psi, c)  # (n, param_count): every sample's own flow parameters
        P = M.unravel(per_sample, flat)
        fns = {
            "flow": lambda: flow(P, x),
            "all": lambda: M.hypernet_log_prob(per_sample, lambda p, ci: 0.1 * hyper.apply(p, ci), psi, c, x),
            "shared": lambda: shared_flow(shared_params, c, x),
            "per_sample_gemms": per_sample_gemms, "shared_gemms": shared_gemms, "read_weights": read_weights,
        }
        if compiled:
            # samples-last: the same parameters as (P, N) (as a hypernetwork's last layer
            # W h^T gives them), vmapped over their last axis, so that inductor's fused
            # loops run over contiguous samples
            P_last = M.unravel(per_sample, flat.mT.contiguous(), dim=0)
            flow_last = vmap(lambda p, xi: per_sample.apply(p).log_prob(xi), in_dims=(-1, 0))
            flow_c, last_c, shared_c = torch.compile(flow), torch.compile(flow_last), torch.compile(shared_flow)
            fns["flow_compiled"] = lambda: flow_c(P, x)
            fns["flow_last_compiled"] = lambda: last_c(P_last, x)
            fns["shared_compiled"] = lambda: shared_c(shared_params, c, x)
        t = cpu_compare(fns, t_min, 5)
    floor = t["shared"] - t["shared_gemms"] + t["per_sample_gemms"]
    out = {"n": n, "params_per_sample": M.param_count(per_sample), "per_sample_flow_vmap_s": t["flow"],
           "hypernet_and_flow_vmap_s": t["all"], "shared_batched_s": t["shared"],
           "per_sample_gemms_s": t["per_sample_gemms"], "shared_gemms_s": t["shared_gemms"],
           "read_per_sample_weights_s": t["read_weights"], "floor_s": floor,
           "per_sample_flow_over_shared": t["flow"] / t["shared"], "hypernet_and_flow_over_shared": t["all"] / t["shared"],
           "per_sample_gemms_over_shared_gemms": t["per_sample_gemms"] / t["shared_gemms"],
           "floor_over_shared": floor / t["shared"], "per_sample_flow_over_floor": t["flow"] / floor}
    if compiled:
        # compiled floor: the compiled shared flow plus one read of every per-sample weight
        # (11 MB at N=4096, which no schedule avoids)
        floor_c = t["shared_compiled"] + t["read_weights"]
        out.update({"per_sample_flow_compiled_s": t["flow_compiled"], "shared_compiled_s": t["shared_compiled"],
                    "per_sample_flow_samples_last_compiled_s": t["flow_last_compiled"],
                    "compiled_per_sample_over_compiled_shared": t["flow_compiled"] / t["shared_compiled"],
                    "compiled_per_sample_over_eager_shared": t["flow_compiled"] / t["shared"],
                    "compiled_samples_last_over_compiled_shared": t["flow_last_compiled"] / t["shared_compiled"],
                    "compiled_samples_last_over_eager_shared": t["flow_last_compiled"] / t["shared"],
                    "compiled_floor_over_compiled_shared": floor_c / t["shared_compiled"],
                    "compiled_samples_last_over_compiled_floor": t["flow_last_compiled"] / floor_c})
    return out


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
        "hypernet_N4096": bench_hypernet(t_min, compiled=not args.quick),
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
        {"benchmark": "same, gradients alone (no optimizer update)",
         "ratio": r["ensemble_K32_step"]["loop_over_grad_only"], "target": ""},
        {"benchmark": f"N=4096, each sample its own {h['params_per_sample']} flow params (vmap) / shared params batched",
         "ratio": h["per_sample_flow_over_shared"], "target": "<= 2"},
        {"benchmark": "floor: N per-sample GEMVs (baddbmm) / the shared GEMMs (addmm), bare",
         "ratio": h["per_sample_gemms_over_shared_gemms"], "target": ""},
        {"benchmark": "floor: shared flow with its GEMMs swapped for the per-sample ones / shared flow",
         "ratio": h["floor_over_shared"], "target": ""},
        {"benchmark": "per-sample flow / that floor",
         "ratio": h["per_sample_flow_over_floor"], "target": ""},
        *([{"benchmark": "per-sample flow compiled (inductor), params (N, P) / shared compiled (inductor)",
            "ratio": h["compiled_per_sample_over_compiled_shared"], "target": ""},
           {"benchmark": "per-sample flow compiled, params samples-last (P, N) / shared eager",
            "ratio": h["compiled_samples_last_over_eager_shared"], "target": "<= 2"},
           {"benchmark": "per-sample flow compiled, params samples-last (P, N) / shared compiled",
            "ratio": h["compiled_samples_last_over_compiled_shared"], "target": "<= 2"},
           {"benchmark": "compiled floor: (shared compiled + one read of the per-sample weights) / shared compiled",
            "ratio": h["compiled_floor_over_compiled_shared"], "target": ""},
           {"benchmark": "per-sample flow compiled, samples-last / that compiled floor",
            "ratio": h["compiled_samples_last_over_compiled_floor"], "target": ""}]
          if "compiled_per_sample_over_compiled_shared" in h else []),
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
