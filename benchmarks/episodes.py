"""What Meta-Dataset episodes cost per meta-iteration against fixed 5-way 1-shot tasks, in one run.

    python benchmarks/episodes.py                          # omniglot-md against omniglot-5way, meta-batch 4 and 10
    python benchmarks/episodes.py --meta-batch 10 --repeats 50 --compute

Per meta-batch: the seconds to sample it (fixed: ``sample_batch``; episodes: one ``sample`` each, then
``bucket_tasks``), the buckets (one ``vmap`` call each) and the images it holds; the ratio of episodes to
fixed tasks is measured in the same process. ``--compute`` adds a proxy of the network's share: one forward and
backward of a small conv net (conv4 at 32 channels, a head of the family's most ways) vmapped over each
bucket, against one vmapped call for the fixed batch, median over the first fifth of the meta-batches drawn;
not the supernet, only how the work scales.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from metanas.data import get_tasksets, load_family
from metanas.data.episodes import bucket_tasks


def sample_fixed(taskset, n, g):
    return [([*range(n)], taskset.sample_batch(n, g))]


def sample_episodes(taskset, n, g):
    return bucket_tasks([taskset.sample(g) for _ in range(n)])


def conv4(ways: int, channels: int = 32) -> nn.Module:
    block = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o, track_running_stats=False),
                                       nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(block(1, channels), *(block(channels, channels) for _ in range(3)), nn.Flatten(),
                         nn.Linear(channels, ways))


def compute(model, buckets) -> None:
    params = dict(model.named_parameters())

    def loss(p, sx, sy, qx, qy):
        return F.cross_entropy(functional_call(model, p, (sx,)), sy) + F.cross_entropy(functional_call(model, p, (qx,)), qy)

    for _, (sx, sy, qx, qy) in buckets:
        vmap(grad(loss), in_dims=(None, 0, 0, 0, 0))(params, sx, sy, qx, qy)


def timed(fn, repeats: int) -> tuple[float, list]:
    fn()  # warm-up
    times, outs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        outs.append(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times), outs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="omniglot-md", help="a family with episodes: meta-dataset")
    ap.add_argument("--baseline", default="omniglot-5way", help="a fixed family (5-way 1-shot)")
    ap.add_argument("--meta-batch", default="4,10", help="meta-batch sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--compute", action="store_true", help="add the conv4 forward + backward proxy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    md, fixed = get_tasksets(load_family(args.family)).train, get_tasksets(load_family(args.baseline)).train
    print(f"episodes: {args.family} ({md.name}); fixed: {args.baseline} ({fixed.ways}-way {fixed.shots}-shot "
          f"{fixed.queries} queries); median of {args.repeats} meta-batches after one warm-up")
    print("| meta-batch | sampler | sample + bucket (ms) | ratio | buckets | images per task |"
          + (" conv4 fwd+bwd (ms) | ratio |" if args.compute else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if args.compute else ""))
    for n in [int(b) for b in args.meta_batch.split(",")]:
        rows = {}
        for name, taskset, fn in (("fixed", fixed, sample_fixed), ("episodes", md, sample_episodes)):
            g = torch.Generator().manual_seed(args.seed)
            seconds, outs = timed(lambda: fn(taskset, n, g), args.repeats)
            buckets = statistics.mean(len(o) for o in outs)
            images = statistics.mean(b.support_x.shape[1] + b.query_x.shape[1] for o in outs for _, b in o
                                     for _ in range(b.support_x.shape[0])) if name == "episodes" else \
                outs[0][0][1].support_x.shape[1] + outs[0][0][1].query_x.shape[1]
            row = {"s": seconds, "buckets": buckets, "images": images}
            if args.compute:
                model, batches = conv4(taskset.ways), iter(outs[: max(3, args.repeats // 5) + 1])
                row["c"] = timed(lambda: compute(model, next(batches)), max(3, args.repeats // 5))[0]
            rows[name] = row
        for name, row in rows.items():
            line = (f"| {n} | {name} | {1000 * row['s']:.2f} | {row['s'] / rows['fixed']['s']:.1f}x | "
                    f"{row['buckets']:.1f} | {row['images']:.0f} |")
            if args.compute:
                line += f" {1000 * row['c']:.0f} | {row['c'] / rows['fixed']['c']:.1f}x |"
            print(line)


if __name__ == "__main__":
    main()
