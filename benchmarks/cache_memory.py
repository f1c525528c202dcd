"""Peak memory while the memory-mapped cache of a large source is built (metanas.data.images.decode_memmap).

Writes a synthetic source of small JPEGs (default 100,000 in 1,000 class folders; most are hard links to a few
real files, so writing them is quick, but every one is opened and decoded), builds its cache at 84 px RGB as the
Meta-Dataset and BSCD-FSL readers do, then samples tasks from it, and prints the peak RSS of this process and of
its decoding workers while it builds, against the size of the decoded array. A set held in RAM would need at
least the decoded size; the memory-mapped build needs a few chunks of it.

    python benchmarks/cache_memory.py                      # 100k images, 84 px: ~2.1 GB decoded
    python benchmarks/cache_memory.py --images 20000 --size 32 --dir DIR
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_source(root: Path, images: int, classes: int, distinct: int = 4) -> list[tuple[str, list[Path]]]:
    """``images`` JPEGs of 32x32 px in ``classes`` folders: ``distinct`` real files per class, the rest hard links."""
    per_class = images // classes
    listed = []
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for i in range(per_class):
            path = folder / f"{i:05d}.jpg"
            if not path.exists():
                if i < distinct:
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path, quality=90)
                else:
                    os.link(folder / f"{i % distinct:05d}.jpg", path)
            files.append(path)
        listed.append((folder.name, files))
    return listed


def peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--size", type=int, default=84, help="decoded size in pixels (default 84, as the readers)")
    p.add_argument("--dir", help="where to write the synthetic source and the cache (default: a temp folder)")
    args = p.parse_args(argv)

    base = Path(args.dir or tempfile.mkdtemp(prefix="metanas-cache-memory-"))
    os.environ["METANAS_CACHE"] = str(base / "cache")
    from metanas.data.images import decode_memmap

    t = time.perf_counter()
    listed = write_source(base / "source", args.images, args.classes)
    n = sum(len(f) for _, f in listed)
    print(f"synthetic source: {n} images in {len(listed)} classes under {base / 'source'} "
          f"({time.perf_counter() - t:.0f} s to write)")
    start = peak_mb(resource.RUSAGE_SELF)
    t = time.perf_counter()
    data = decode_memmap("synthetic", base / "source", listed, args.size, channels=3, label="synthetic")
    build = time.perf_counter() - t
    built_mb, workers_mb = peak_mb(resource.RUSAGE_SELF), peak_mb(resource.RUSAGE_CHILDREN)
    decoded_mb = data.images.numel() / 2**20
    print(f"decoded array: {tuple(data.images.shape)} uint8 = {decoded_mb:.0f} MB, built in {build:.0f} s "
          f"({n / build:.0f} images/s)")
    print(f"peak RSS while building: main process {built_mb:.0f} MB (before the build {start:.0f} MB), largest "
          f"decoding worker {workers_mb:.0f} MB")
    print(f"peak RSS / decoded size: {built_mb / decoded_mb:.3f} (main), {workers_mb / decoded_mb:.3f} (worker); "
          f"growth of the main process during the build / decoded size: {(built_mb - start) / decoded_mb:.3f}")
    # what sampling touches: 500 random images. They come in as file-backed pages of the page cache (RssFile:
    # shared, clean, dropped by the kernel under pressure; a page-cache folio can map up to 2 MB per image
    # touched), not as the process's own memory (RssAnon)
    index = torch.from_numpy(np.random.default_rng(0).integers(0, len(data.images), 500))
    _ = data.images[index].float().mean()
    print(f"after sampling 500 images: {rss_kinds()}")


def rss_kinds() -> str:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return ", ".join(f"{k} {int(status[k].split()[0]) / 1024:.0f} MB" for k in ("RssAnon", "RssFile") if k in status)

if __name__ == "__main__":
    main()
