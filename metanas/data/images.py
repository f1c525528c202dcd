"""Images as the networks see them: decoding, resizing, channel conversion, the decode-once cache, and
:class:`ImageFormat` (channels, size, per-channel normalisation), which a warm start stores.

Every data set is held as uint8 ``[M, C, H, W]`` (C = 1 or 3). Grayscale stroke data (Omniglot, digits,
MNIST-style sets) keeps strokes high and the background 0, so zero padding means "no ink", and is not
normalised. Photographs (miniImageNet, CIFAR-FS, tieredImageNet, CUB) are RGB and normalised with the
per-channel mean and std of the meta-train split; the warm start stores both, and every task it adapts to
(another family, an exported model's input) is normalised with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps
from tqdm import tqdm

from metanas.core.errors import MetanasError, describe
from metanas.core.files import atomic_write

# Bump when the decoding or the file layout changes: old cache files then fail validation and are rebuilt.
# 2: images [N, C, H, W] (was [N, H, W]); colour data sets.
CACHE_VERSION = 2
MODES = {1: "L", 3: "RGB"}
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights of R, G, B in gray, as PIL's convert("L")


@dataclass(eq=False, repr=False)
class ClassDataset:
    """An in-memory labelled image set: uint8 images [M, C, H, W], labels 0..C-1 (grayscale: strokes 255,
    background 0)."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @cached_property
    def indices_per_class(self) -> list[torch.Tensor]:
        """For each class, the indices of its images (in file order)."""
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.num_classes)
        return list(torch.split(order, counts.tolist()))

    def subset(self, class_ids: list[int]) -> "ClassDataset":
        """The images of `class_ids`, relabelled 0..len-1 in the given order."""
        index = torch.cat([self.indices_per_class[c] for c in class_ids])
        labels = torch.cat([torch.full((len(self.indices_per_class[c]),), new) for new, c in enumerate(class_ids)])
        return ClassDataset(self.images[index], labels, [self.class_names[c] for c in class_ids])

    def __repr__(self) -> str:
        return f"ClassDataset({len(self.images)} images {tuple(self.images.shape[1:])}, {self.num_classes} classes)"


@dataclass(frozen=True)
class ImageFormat:
    """What a network's input is: ``channels`` x ``size`` x ``size`` floats, ``(x / 255 - mean) / std`` per
    channel when ``mean`` is set (else ``x / 255``); ``invert``: image files are inverted after decoding
    (Omniglot's black strokes on white become strokes high)."""

    channels: int = 1
    size: int = 28
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None
    invert: bool = False

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        view = lambda v: torch.tensor(v, dtype=x.dtype, device=x.device).view(self.channels, 1, 1)
        return view(self.mean), view(self.std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """float ``[..., C, H, W]`` in [0, 1] -> the network's input."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input -> float in [0, 1] (for drawing)."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return x * std + mean

    def read(self, paths) -> torch.Tensor:
        """Image files as the network sees them: float ``[N, C, size, size]``."""
        images = np.stack([read_image(p, self.size, self.channels, self.invert) for p in paths])
        return self.normalize(torch.from_numpy(images).float() / 255)

    def to_dict(self) -> dict:
        return {"channels": self.channels, "size": self.size, "invert": self.invert,
                "mean": list(self.mean) if self.mean else None, "std": list(self.std) if self.std else None}

    @classmethod
    def from_dict(cls, d: dict) -> "ImageFormat":
        tup = lambda v: tuple(float(a) for a in v) if v else None
        return cls(int(d["channels"]), int(d["size"]), tup(d.get("mean")), tup(d.get("std")), bool(d.get("invert")))

    def describe(self) -> str:
        colour = "RGB" if self.channels == 3 else "grayscale"
        norm = (f", normalised with mean {[round(m, 3) for m in self.mean]} std {[round(s, 3) for s in self.std]}"
                if self.mean else ", divided by 255")
        return f"{colour}{', inverted' if self.invert else ''}, resized to {self.size}x{self.size} (Lanczos){norm}"


def channel_stats(images: torch.Tensor, index: torch.Tensor | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``[M, C, H, W]`` images (those of ``index``), in [0, 1] units; chunked,
    so no float copy of the whole set is made."""
    c = images.shape[1]
    index = torch.arange(len(images)) if index is None else index
    total, sq, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for chunk in torch.split(index, 2048):
        x = images[chunk].double().div_(255).transpose(0, 1).reshape(c, -1)
        total += x.sum(1)
        sq += x.pow(2).sum(1)
        n += x.shape[1]
    mean = total / n
    std = (sq / n - mean**2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.clamp_min(1e-3).tolist())


def image_files(folder: Path) -> list[Path]:
    """The image files PIL can open in ``folder``, sorted by name."""
    extensions = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def decode(im: Image.Image, size: int, channels: int = 1, invert: bool = False) -> np.ndarray:
    """One PIL image as uint8 ``[channels, size, size]`` (Lanczos resize; ``invert``: 255 - x before resizing)."""
    # 1-bit images convert to L before resizing (PIL resizes mode "1" with nearest only)
    im = im.convert(MODES[channels])
    if invert:
        im = ImageOps.invert(im)
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    a = np.asarray(im)
    # contiguous [C, H, W]: a transposed view would make np.stack keep a channels-last layout, and such a strided
    # batch crashes torch.func.grad's convolution backward on the CPU (heap corruption, torch 2.14.1)
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def read_image(path: str | os.PathLike, size: int, channels: int = 1, invert: bool = False,
               box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """:func:`decode` of an image file (of its ``box``, ``(left, top, right, bottom)`` pixels, when given: a crop
    from an annotation); an unreadable, corrupt or truncated file is a MetanasError naming it.

    Strict whatever the process's PIL setting: ``ImageFile.LOAD_TRUNCATED_IMAGES`` (which any imported library
    may have set) is off while the file is checked (``verify``: its structure and checksums) and decoded, so a
    file cut short is an error, never an image whose missing rows are silently filled in."""
    truncated_ok = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
            return decode(im if box is None else im.crop(box), size, channels, invert)
    except Exception as e:
        raise MetanasError(f"cannot decode {path}: {describe(e)} (the file is corrupt, cut short or not an image); "
                           "delete or replace the file, or set data.skip_corrupt=true to skip unreadable images "
                           "with a warning") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[M, C, h, w]`` -> uint8 ``[M, C, size, size]`` (bilinear, antialiased when shrinking)."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = [F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
           .round().clamp(0, 255).to(torch.uint8) for chunk in torch.split(images, 4096)]
    return torch.cat(out)


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 ``[M, C, H, W]`` with C converted: gray -> RGB repeats, RGB -> gray by ITU-R 601 luma (as PIL)."""
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    luma = torch.tensor(LUMA).view(1, 3, 1, 1)
    return (images.float() * luma).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def cache_dir() -> Path:
    """Where decoded datasets are cached: $METANAS_CACHE, else the user cache (~/.cache/metanas)."""
    return Path(os.environ.get("METANAS_CACHE") or user_cache()).expanduser()


def user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "metanas"


def cache_file(kind: str, root: Path, size: int, channels: int) -> Path:
    # The root's hash keeps caches of different trees (e.g. a test's tiny fake one) from evicting each other.
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    return cache_dir() / f"{kind}-{size}px-c{channels}-v{CACHE_VERSION}-{digest}.pt"


def source_key(root: Path, files: list[Path]) -> str:
    """What a cache was built from: the root, and the files' count, total size and newest change time, so a
    cache is rebuilt when files are added, removed, replaced or edited."""
    stats = [os.stat(f) for f in files]
    return f"{root}|{len(stats)}|{sum(s.st_size for s in stats)}|{max((s.st_mtime_ns for s in stats), default=0)}"


def read_cache(path: Path, key: str, shape: tuple[int, int, int], count: int | None = None) -> dict | None:
    """The cached ``{images, labels, class_names}``, or None when the file is missing, unreadable or stale."""
    try:
        blob = torch.load(path, weights_only=True)
        images, labels, names = blob["images"], blob["labels"], blob["class_names"]
        count = blob["count"] if count is None else count
        valid = (
            blob["version"] == CACHE_VERSION
            and blob["source"] == key
            and blob["count"] == count
            and images.dtype == torch.uint8
            and tuple(images.shape) == (count, *shape)
            and tuple(labels.shape) == (count,)
            and int(labels.max()) == len(names) - 1
        )
    except Exception:  # truncated, garbage, or an older layout: all mean "rebuild"
        return None
    return blob if valid else None


def write_cache(path: Path, key: str, images: torch.Tensor, labels: torch.Tensor, names: list[str]) -> None:
    blob = {"version": CACHE_VERSION, "source": key, "count": len(images), "images": images, "labels": labels,
            "class_names": names}
    try:
        atomic_write(path, lambda f: torch.save(blob, f))
    except OSError as e:
        raise MetanasError(f"cannot write the data cache in {path.parent}: {e}; set METANAS_CACHE to a writable folder")


def _decode_job(job: tuple) -> np.ndarray | None:
    item, size, channels, invert, skip_corrupt = job
    path, box = item if isinstance(item, tuple) else (item, None)  # a file, or (file, crop box)
    try:
        return read_image(path, size, channels, invert, box)
    except MetanasError:
        if skip_corrupt:
            return None
        raise


def decode_classes(kind: str, root: Path, classes: list[tuple[str, list[Path]]], size: int, channels: int = 1,
                   invert: bool = False, skip_corrupt: bool = False, label: str = "") -> ClassDataset:
    """Every image of ``classes`` (``[(class name, files)]``) at ``size`` px with ``channels`` channels,
    decoded once (2 processes) and then read from the cache; the cache is keyed by ``kind``, ``root``, size and
    channels and checked before use. A set with skipped unreadable images is not cached."""
    root = Path(root).resolve()
    paths = [p for _, files in classes for p in files]
    names = [name for name, _ in classes]
    cache, key = cache_file(kind, root, size, channels), source_key(root, paths)
    blob = read_cache(cache, key, (channels, size, size), len(paths))
    if blob is not None:
        return ClassDataset(blob["images"], blob["labels"], blob["class_names"])
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        decoded = pool.map(_decode_job, [(p, size, channels, invert, skip_corrupt) for p in paths], chunksize=256)
        try:
            decoded = list(tqdm(decoded, total=len(paths), desc=f"decoding {label or kind} at {size}px", unit="img"))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a bad file or Ctrl-C: do not decode the rest first
            raise
    labels = torch.cat([torch.full((len(files),), c) for c, (_, files) in enumerate(classes)])
    ok = [im is not None for im in decoded]
    images = torch.from_numpy(np.stack([im for im in decoded if im is not None]))
    if not all(ok):
        bad = [str(p) for p, good in zip(paths, ok) if not good]
        warnings.warn(f"skipped {len(bad)} unreadable image(s) (data.skip_corrupt=true), e.g. {bad[0]}", stacklevel=2)
        return ClassDataset(images, labels[ok], names)
    write_cache(cache, key, images, labels, names)
    return ClassDataset(images, labels, names)



# The memory-mapped cache of the large sources (Meta-Dataset's and BSCD-FSL's, metanas.data.crossdomain): ILSVRC at
# 84 px is 1.2M x 21 KB = 27 GB, more than a machine's RAM, so neither the build nor the reading may hold the set.
# The build writes the .npy with plain file writes, chunk by chunk (pages written through a memory map would count
# in the process's RSS until evicted); the reader maps it copy-on-write, so only the pages of the sampled images
# are ever read in. The .json beside it is written last: without it (an interrupted build) the cache is stale.
MEMMAP_VERSION = 1
CHUNK = 1024  # images decoded, then written, at a time: bounds the memory the build holds


def memmap_paths(kind: str, root: Path, size: int, channels: int) -> tuple[Path, Path, Path]:
    """The cache's images (.npy), labels (.labels.npy) and description (.json)."""
    base = cache_file(kind, root, size, channels).with_suffix("")
    return base.with_suffix(".npy"), base.with_suffix(".labels.npy"), base.with_suffix(".json")


def read_memmap(kind: str, root: Path, key: str, size: int, channels: int) -> ClassDataset | None:
    """The cached set of ``kind`` at ``root``, memory-mapped, or None when missing, unreadable or stale."""
    images_path, labels_path, meta_path = memmap_paths(kind, root, size, channels)
    try:
        meta = json.loads(meta_path.read_text())
        images = np.load(images_path, mmap_mode="c")  # copy-on-write: writable for torch, never written back
        labels = np.load(labels_path)
        names = meta["class_names"]
        valid = (meta["version"] == MEMMAP_VERSION and meta["source"] == key and images.dtype == np.uint8
                 and images.shape == (meta["count"], channels, size, size) and labels.shape == (meta["count"],)
                 and len(labels) > 0 and int(labels.max()) == len(names) - 1)
    except Exception:  # missing, truncated, garbage, an older layout: all mean "rebuild"
        return None
    return ClassDataset(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), names) if valid else None


def _header(f, count: int, shape: tuple[int, ...]) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (count, *shape)})


def write_memmap(kind: str, root: Path, key: str, names: list[str], total: int, size: int, channels: int, chunks,
                 label: str = "") -> ClassDataset:
    """Build the cache from ``chunks`` (uint8 images ``[n, C, size, size]`` with their int labels ``[n]``, in order,
    at most ``total`` images in all), with a progress bar, and return it memory-mapped. Fewer images than
    ``total`` (unreadable ones skipped) are kept for this process but not marked valid, so the next run retries."""
    images_path, labels_path, meta_path = memmap_paths(kind, root, size, channels)
    shape = (channels, size, size)
    try:
        images_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=images_path.parent, prefix=f".{images_path.name}.", suffix=".tmp")
    except OSError as e:
        raise MetanasError(f"cannot write the data cache in {images_path.parent}: {e}; set METANAS_CACHE to a "
                           "writable folder") from None
    labels = np.empty(total, dtype=np.int32)
    count = 0
    try:
        with os.fdopen(fd, "wb") as f, tqdm(total=total, desc=f"decoding {label or kind} at {size}px", unit="img") as bar:
            _header(f, total, shape)
            start = f.tell()
            for x, y in chunks:
                if count + len(x) > total:
                    raise MetanasError(f"{label or kind}: more images than the {total} listed; the files changed "
                                       "while the cache was built: run again")
                f.write(np.ascontiguousarray(x, dtype=np.uint8).tobytes())
                labels[count:count + len(x)] = y
                count += len(x)
                bar.update(len(x))
            if count < total:  # skipped images: the header says what is there (its padded length stays the same)
                f.truncate(start + count * int(np.prod(shape)))
                f.seek(0)
                _header(f, count, shape)
                if f.tell() != start:
                    raise MetanasError(f"{label or kind}: cannot shrink the cache header; set "
                                       "data.skip_corrupt=false and fix the files")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, images_path)
        atomic_write(labels_path, lambda f: np.save(f, labels[:count]))
        if count == total:
            meta = {"version": MEMMAP_VERSION, "source": key, "count": count, "class_names": names}
            atomic_write(meta_path, lambda f: f.write(json.dumps(meta).encode()))
        elif meta_path.exists():
            meta_path.unlink()
    except OSError as e:
        raise MetanasError(f"cannot write the data cache in {images_path.parent}: {e}; set METANAS_CACHE to a "
                           "writable folder with room for the decoded set") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    data = np.load(images_path, mmap_mode="c")
    return ClassDataset(torch.from_numpy(data), torch.from_numpy(labels[:count].astype(np.int64)), names)


def decode_memmap(kind: str, root: Path, classes: list[tuple[str, list]], size: int, channels: int = 1,
                  invert: bool = False, skip_corrupt: bool = False, label: str = "") -> ClassDataset:
    """:func:`decode_classes` for sets larger than memory: every item of ``classes`` (``[(class name, items)]``, an
    item a file or ``(file, crop box)``) decoded once (2 processes, :data:`CHUNK` images at a time) into the
    memory-mapped cache, then read from it."""
    root = Path(root).resolve()
    items = [item for _, files in classes for item in files]
    names = [name for name, _ in classes]
    paths = sorted({item[0] if isinstance(item, tuple) else item for item in items})
    # the crops too: a changed annotation file changes the boxes, so they are part of what the cache was built from
    key = f"{source_key(root, paths)}|{hashlib.sha1(repr(items).encode()).hexdigest()}"
    cached = read_memmap(kind, root, key, size, channels)
    if cached is not None:
        return cached
    labels = np.concatenate([np.full(len(files), c, dtype=np.int64) for c, (_, files) in enumerate(classes)])
    skipped: list[str] = []

    def chunks():
        with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            try:
                for i in range(0, len(items), CHUNK):
                    jobs = [(item, size, channels, invert, skip_corrupt) for item in items[i:i + CHUNK]]
                    decoded = list(pool.map(_decode_job, jobs, chunksize=64))
                    ok = [im is not None for im in decoded]
                    skipped.extend(str(job[0]) for job, good in zip(jobs, ok) if not good)
                    if any(ok):
                        yield np.stack([im for im in decoded if im is not None]), labels[i:i + CHUNK][ok]
            except BaseException:
                pool.shutdown(cancel_futures=True)  # a bad file or Ctrl-C: do not decode the rest first
                raise

    data = write_memmap(kind, root, key, names, len(items), size, channels, chunks(), label)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) (data.skip_corrupt=true), e.g. {skipped[0]}",
                      stacklevel=2)
    return data
