"""How much a task's support set says about its architecture: the first inner step's predicted effect on the
query loss, from alpha's step against the weights' step.

    python benchmarks/arch_signal.py RUN [--families F1,F2,...] [--tasks 300] [--output-dir runs] [--seed S]

For each test task of each family, at the warm start: ``g_s``, the support loss's gradient, and ``g_q``, the
query loss's. The first inner step ``-lr g_s`` (the warm start's ``inner.lr`` and ``inner.lr_alpha``, or its
meta-learned alpha steps) changes the query loss by ``-lr <g_s, g_q>`` to first order. Printed per family, for
alpha and for the weights: that predicted decrease (mean over tasks ± 95% CI), the cosine of ``g_s`` and
``g_q`` (does the support set point where the query set wants to go?), and alpha's share of the predicted
decrease (how much the architecture's step moves the query loss next to the weights' step), and that share per
alpha tensor (which choice has the leverage: ``alpha_op``, ``alpha_width``, ...). A first-order
picture of the first step only: the predicted decreases overshoot the real ones, their ratio is the point.
"""

from __future__ import annotations

import argparse

import torch
from torch.func import grad, vmap

from metanas import api
from metanas.data import get_tasksets, load_family
from metanas.estimation.seeds import TEST_SEED
from metanas.estimation.stats import mean_ci95
from metanas.meta.inner import LEARNED_LR, loss_fn
from metanas.space import alphas_of, is_alpha

SUITE = ["omniglot-5way", "omniglot-5way-shift-blur", "omniglot-5way-shift-elastic", "omniglot-5way-shift-invert",
         "omniglot-5way-shift-mixed", "digits-5way"]


def signal(warm, family: str, tasks: int, seed: int, chunk: int = 10) -> dict[str, tuple[float, float]]:
    """Per family: the four measures above (mean, 95% CI), then each alpha's predicted decrease (``alpha_X``)."""
    fam = load_family(family)
    warm.check_family(fam)
    test = get_tasksets(fam, warm.config.data.root, warm_format=warm.image).test
    params, model, inner = warm.params, warm.model, api.inner_loop(warm)
    g = grad(lambda p, x, y: loss_fn(model, p, x, y))

    def step(k):  # the inner loop's first step on k: lr, lr_alpha, or the meta-learned lr_alpha_X [rows, 1]
        if not is_alpha(k):
            return inner.lr
        return params[LEARNED_LR + k].exp() if LEARNED_LR + k in params else inner.lr_alpha

    alphas = sorted(alphas_of(params))

    def one(sx, sy, qx, qy):  # per part: (<step g_s, g_q>, cos(g_s, g_q)); then <step g_s, g_q> per alpha
        gs, gq = g(params, sx, sy), g(params, qx, qy)
        dots = {k: (step(k) * gs[k] * gq[k]).sum() for k in gs}
        out = []
        for part in (True, False):
            keys = [k for k in gs if is_alpha(k) == part]
            cos = sum((gs[k] * gq[k]).sum() for k in keys) / torch.sqrt(
                sum(gs[k].pow(2).sum() for k in keys) * sum(gq[k].pow(2).sum() for k in keys))
            out += [sum(dots[k] for k in keys), cos]
        return torch.stack(out + [dots[k] for k in alphas])

    generator, rows = torch.Generator().manual_seed(seed), []
    for s in range(0, tasks, chunk):
        rows.append(vmap(one)(*test.sample_batch(min(chunk, tasks - s), generator)))
    r = torch.cat(rows)  # [tasks, 4 + alphas]: alpha dot, alpha cos, weights dot, weights cos, dot per alpha
    return {"alpha: predicted query-loss decrease": mean_ci95(r[:, 0]),
            "alpha: cosine": mean_ci95(r[:, 1]),
            "weights: predicted query-loss decrease": mean_ci95(r[:, 2]),
            "weights: cosine": mean_ci95(r[:, 3]),
            **{k: mean_ci95(r[:, 4 + i]) for i, k in enumerate(alphas)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run id (under --output-dir) or checkpoint path of a supernet warm start")
    p.add_argument("--families", default=",".join(SUITE))
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--seed", type=int, help="seed of the test tasks (default: run.seed + TEST_SEED)")
    p.add_argument("--output-dir", default="runs")
    args = p.parse_args()
    warm = api.load(args.run, args.output_dir)
    if not warm.is_supernet:
        raise SystemExit(f"{args.run} is a child net: it has no architecture to adapt")
    seed = warm.config.run.seed + TEST_SEED if args.seed is None else args.seed
    print("| family | alpha step: query-loss decrease | alpha cos(g_s, g_q) | weight step: query-loss decrease "
          "| weights cos(g_s, g_q) | alpha's share | share per alpha |")
    print("|---|---|---|---|---|---|---|")
    for family in args.families.split(","):
        s = signal(warm, family, args.tasks, seed)
        (a, a_ci), (ac, ac_ci), (w, w_ci), (wc, wc_ci), *per = s.values()
        each = ", ".join(f"{k} {100 * d / (a + w):.1f}%" for k, (d, _) in zip(list(s)[4:], per))
        print(f"| {family} | {a:.5f} ± {a_ci:.5f} | {ac:.3f} ± {ac_ci:.3f} | {w:.4f} ± {w_ci:.4f} | "
              f"{wc:.3f} ± {wc_ci:.3f} | {100 * a / (a + w):.1f}% | {each} |", flush=True)


if __name__ == "__main__":
    main()
