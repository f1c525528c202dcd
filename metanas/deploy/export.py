"""Ship an adapted task model: support folder -> DARTS adaptation -> discrete child -> ``torch.export`` program.

``export_task`` adapts the warm start (w and alpha) to a support set given as a folder of class
sub-folders, derives the task's architecture from the adapted alpha, builds that discrete child net and
warm-starts it with the adapted supernet weights it inherits (the search space's ``inherit``). The
result is saved as a ``torch.export`` program (``model.pt2``, loadable without metanas or pickle:
``torch.export.load(path).module()``) next to ``genotype.json``, ``classes.json`` and ``model.json``.

Batch statistics. The search space's BatchNorm keeps no running statistics (they cannot be updated
inside ``torch.func`` transforms): every forward normalises with the statistics of its own batch.
The adapted network is scored that way on a query *batch*, but a shipped classifier must give an
image the same answer alone or in any company; a single image would even normalise to zero.
So before export each BatchNorm of the child is replaced by an eval-mode BatchNorm whose running
mean and (biased) variance are the statistics it saw on the support set, i.e. the data the task
is defined by. On the support batch the frozen child reproduces the batch-statistics child exactly
(tested); on any other input it is a fixed function of that input alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from metanas.data.images import ImageFormat, image_files
from metanas.core.errors import MetanasError

FORMAT = "metanas-export"
VERSION = 2  # 2: model.json holds the input's ImageFormat (channels, size, normalisation)
FILES = ("model.pt2", "genotype.json", "classes.json", "model.json")


def load_support(folder: str | os.PathLike, image: ImageFormat) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A support set from a folder with one sub-folder of images per class, read as ``image`` says.

    Returns x [N, C, H, W], labels y (class-major, classes in sorted folder-name order) and the class names.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MetanasError(f"support folder {folder} not found: pass a folder with one sub-folder of images per class")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise MetanasError(f"support folder {folder} has {len(classes)} class sub-folder(s): a task needs at least 2, "
                           "one sub-folder of images per class")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = image_files(folder / name)
        if not files:
            raise MetanasError(f"class folder {folder / name} has no image files: put the class's images in it "
                               "(PNG, JPEG, or any format PIL opens)")
        paths += files
        labels += [label] * len(files)
    return image.read(paths), torch.tensor(labels), classes


def freeze_batchnorm(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """Replace every batch-statistics BatchNorm by an eval-mode one holding the statistics of ``x``.

    One forward pass records each BatchNorm's input; layer by layer would give the same numbers,
    because on ``x`` the frozen earlier layers produce exactly what they produced with batch statistics.
    """
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(name):
        def hook(module, inputs):
            h = inputs[0].detach()
            stats[name] = (h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False))  # what training-mode BN divides by
        return hook

    bns = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [m.register_forward_pre_hook(record(name)) for name, m in bns]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    for name, old in bns:
        if name not in stats:
            continue
        new = nn.BatchNorm2d(old.num_features, eps=old.eps, affine=old.affine, track_running_stats=True)
        if old.affine:
            new.weight.data.copy_(old.weight.data)
            new.bias.data.copy_(old.bias.data)
        new.running_mean.copy_(stats[name][0])
        new.running_var.copy_(stats[name][1])
        net.set_submodule(name, new)
    return net.eval()


@dataclass
class Exported:
    out: Path
    child: nn.Module  # eval mode, BatchNorm frozen on the support set
    genotype: object  # the space's architecture
    classes: list[str]
    support_x: torch.Tensor
    support_y: torch.Tensor
    program: object  # torch.export.ExportedProgram
    warm: object  # the WarmStart it was adapted from


def export_task(warm, support: str | os.PathLike, out: str | os.PathLike, *, adaptation=None,
                finetune: int = 0) -> Exported:
    """Adapt ``warm`` (a :class:`~metanas.meta.warm_start.WarmStart`; a fixed one for a given genotype) to the support
    folder as ``adaptation`` says (default: the warm start's own) and save the discrete child in ``out``."""
    from metanas import api
    from metanas.meta.inner import InnerLoop

    x, y, classes = load_support(support, warm.image)
    if len(classes) != warm.ways and not warm.variable_ways:  # a prototype head takes any number of classes
        raise MetanasError(f"the support folder {support} has {len(classes)} classes but the warm start was "
                           f"meta-trained for {warm.ways}-way tasks: give it {warm.ways} class sub-folders")
    shots = torch.bincount(y)
    if warm.config.inner.variant == "alternating" and not bool((shots == shots[0]).all()):
        raise MetanasError(f"the warm start adapts with inner.variant=alternating, which splits every class's shots "
                           f"in half: give every class in {support} the same number of images (got {shots.tolist()})")
    adapted = api.adapt(warm, x, y, adaptation=adaptation)
    child = adapted.child()
    if finetune:
        # The child drops the ops it did not keep, so its output differs from the supernet's; a few SGD
        # steps on the support set (same inner learning rate) let its weights settle into the new graph.
        inner = InnerLoop(steps=finetune, lr=warm.config.inner.lr, lr_alpha=0.0, ways=len(classes))
        child.load_state_dict(inner.adapt(child, {k: v.detach() for k, v in child.named_parameters()}, x, y))
    freeze_batchnorm(child, x)
    program = save_program(child, x, Path(out) / "model.pt2")
    out = Path(out)
    (out / "genotype.json").write_text(json.dumps(warm.space.dump(adapted.arch), indent=1) + "\n")
    (out / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
    (out / "model.json").write_text(json.dumps({
        "format": FORMAT, "version": VERSION, "image": warm.image.to_dict(), "classes": len(classes),
        "warm_start_run_id": warm.run_id, "family": warm.family, "support": str(Path(support).resolve()),
        "adaptation_steps": adapted.inner.steps, "finetune_steps": finetune, "space": warm.space.name,
        "architecture": warm.space.describe(adapted.arch),
        "preprocess": warm.image.describe(),
    }, indent=1) + "\n")
    return Exported(out, child, adapted.arch, classes, x, y, program, warm)


def save_program(net: nn.Module, example: torch.Tensor, path: Path):
    """``torch.export`` the eval-mode ``net`` with a dynamic batch dimension and save it."""
    from torch.export import Dim

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=({0: Dim("batch", min=1, max=1 << 16)},))
    torch.export.save(program, str(path))
    return program


@dataclass
class TaskModel:
    """An exported task model, loaded back: call :meth:`predict` on image files."""

    module: nn.Module
    classes: list[str]
    genotype: dict  # the architecture, as its space's JSON
    image: ImageFormat  # how image files are read: as during meta-training

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(self.module(x), -1)

    def predict(self, paths) -> list[tuple[str, str, float]]:
        """``(path, class, probability)`` for each image file."""
        probs = self.probabilities(self.image.read(paths))
        p, idx = probs.max(-1)
        return [(str(f), self.classes[i], float(q)) for f, i, q in zip(paths, idx.tolist(), p.tolist())]


def load_task_model(model_dir: str | os.PathLike) -> TaskModel:
    """Load what :func:`export_task` wrote (or the same files inside a downloaded MLflow model)."""
    root = Path(model_dir)
    if not root.is_dir():
        raise MetanasError(f"model folder {root} not found: pass the --out folder of metanas export")
    found = {name: next(iter(sorted(root.rglob(name))), None) for name in FILES}
    missing = [name for name, p in found.items() if p is None]
    if missing:
        raise MetanasError(f"{root} is not an exported metanas model (missing {', '.join(missing)}): "
                           "create one with metanas export")
    meta = json.loads(found["model.json"].read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise MetanasError(f"{found['model.json']} is not a version-{VERSION} {FORMAT} file: re-export the model "
                           "with this metanas")
    try:
        module = torch.export.load(str(found["model.pt2"])).module()
    except Exception as e:  # truncated or foreign archive
        raise MetanasError(f"cannot load {found['model.pt2']} ({str(e).splitlines()[0][:120]}): re-export the model") from None
    classes = json.loads(found["classes.json"].read_text())
    genotype = json.loads(found["genotype.json"].read_text())
    return TaskModel(module, classes, genotype, ImageFormat.from_dict(meta["image"]))
