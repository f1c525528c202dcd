"""Write a full-size miniImageNet in the pickle layout, with the published class names and random pixels.

    python benchmarks/synthetic_miniimagenet.py DIR        # DIR/miniimagenet/mini-imagenet-cache-{train,val,test}.pkl
    METANAS_DATA=DIR python -m metanas.meta_train --config miniimagenet-cpu

For timing a configuration where the real data cannot be had (no download here): 100 classes x 600 images
of 84 x 84 x 3 (1.27 GB), so every tensor has its real size and a meta-iteration its real cost. Accuracy on
it is chance (20% for 5-way) and means nothing.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from metanas.data.fewshot import split_classes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="data root to write miniimagenet/ into")
    p.add_argument("--per-class", type=int, default=600)
    args = p.parse_args()
    folder = Path(args.out) / "miniimagenet"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, names in zip(("train", "val", "test"), split_classes("miniimagenet")):
        n = args.per_class
        data = rng.integers(0, 256, (len(names) * n, 84, 84, 3), dtype=np.uint8)
        class_dict = {name: list(range(i * n, (i + 1) * n)) for i, name in enumerate(names)}
        with open(folder / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": data, "class_dict": class_dict}, f, protocol=4)
        print(f"{folder / f'mini-imagenet-cache-{split}.pkl'}: {len(names)} classes x {n} images")


if __name__ == "__main__":
    main()
