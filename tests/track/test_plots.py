"""Pictures: every plot is a valid PNG that changes with its data; meta-training and adapt --plot log them."""

import io

import numpy as np
import pytest
import torch
from conftest import client, run_cli
from PIL import Image

from metanas.track import plots
from metanas.config import load_config
from metanas.space import create_space
from metanas.space.chain import draw_chain
from metanas.space.darts import Genotype, edge_index
from metanas.space.darts_diagram import draw_genotype

OPS = ["max_pool_3x3", "skip_connect", "conv_3x3", "sep_conv_3x3"]
G1 = Genotype([("conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 2), ("conv_3x3", 0)], [2, 3],
              [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("conv_3x3", 2), ("skip_connect", 1)], [2, 3])
SPACE = create_space(load_config(None, ["search.space=darts", f"search.ops=[{','.join(OPS)}]", "search.nodes=2"]).search)
LABELS = SPACE.alpha_labels()
G2 = G1._replace(normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 2), ("max_pool_3x3", 1)])


def pixels(fig) -> np.ndarray:
    """Render like Tracker.log_figure does; check it is a PNG; return the decoded pixels."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plots.close(fig)
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    Image.open(io.BytesIO(data)).verify()
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 5  # not blank
    return image


def alphas(seed, edges=5):
    g = torch.Generator().manual_seed(seed)
    return {"alpha_normal": torch.randn(edges, len(OPS), generator=g),
            "alpha_reduce": torch.randn(edges, len(OPS), generator=g)}


def snapshots(seed):
    return [{"iteration": it, **{k: torch.softmax(v * it / 3, -1) for k, v in alphas(seed).items()}}
            for it in (0, 3, 6, 9)]


def curves(seed):
    g = torch.Generator().manual_seed(seed)
    steps = range(20)
    return {"train/accuracy": [(s, float(v)) for s, v in zip(steps, torch.rand(20, generator=g))],
            "train/loss": [(s, float(v)) for s, v in zip(steps, 2 * torch.rand(20, generator=g))],
            "val/accuracy": [(10, 0.4), (20, 0.5 + seed / 10)], "val/ci95": [(10, 0.05), (20, 0.04)]}


@pytest.mark.parametrize("draw, a, b", [
    (lambda g: SPACE.draw(g, "cells"), G1, G2),
    (lambda p: plots.plot_alphas(p, LABELS), alphas(0), alphas(1)),
    (lambda s: plots.plot_alpha_evolution(s, LABELS), snapshots(0), snapshots(1)),
    (lambda s: plots.plot_alpha_entropy(s, LABELS), snapshots(0), snapshots(1)),
    (lambda h: plots.plot_learning_curves(h), curves(0), curves(1)),
    (lambda c: plots.plot_adaptation_curve(c, ways=5), torch.rand(8, 4), torch.rand(8, 4)),
    (lambda gs: plots.plot_op_wins({"fam": SPACE.choice_wins(gs)}, LABELS), [G1, G1, G2], [G2, G2, G2]),
    (lambda a: draw_chain(a, ["conv_3x3", "conv_5x5"], 64), (("conv_3x3", 64),) * 4,
     (("conv_5x5", 32), ("conv_3x3", 64)) * 2),
], ids=["genotype", "alphas", "alpha_evolution", "alpha_entropy", "learning_curves", "adaptation_curve", "op_wins",
                                                                             "chain"])
def test_each_plot_is_a_png_that_changes_with_its_data(draw, a, b):
    first = pixels(draw(a))
    assert np.array_equal(first, pixels(draw(a)))  # deterministic: the same data draws the same picture
    second = pixels(draw(b))
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_importing_metanas_changes_no_global_state():
    """No matplotlib backend switch (an application's interactive backend stays) and no environment variables."""
    code = ("import os, sys, matplotlib; env, backend = dict(os.environ), matplotlib.rcParams._get_backend_or_none(); "
            "import metanas.track.plots, metanas.track.model_registry, metanas.cli, metanas.meta_train; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert matplotlib.rcParams._get_backend_or_none() == backend, matplotlib.rcParams['backend']; "
            "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())")
    out = run_cli("-c", code, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_op_wins_counts_the_op_kept_on_each_edge():
    w = SPACE.choice_wins([G1, G1, G2])["alpha_normal"].numpy()
    assert w[edge_index(0, 0), OPS.index("conv_3x3")] == pytest.approx(2 / 3)
    assert w[edge_index(0, 0), OPS.index("sep_conv_3x3")] == pytest.approx(1 / 3)
    assert w[edge_index(0, 1), OPS.index("skip_connect")] == 1
    assert w[edge_index(1, 1), OPS.index("max_pool_3x3")] == pytest.approx(1 / 3)  # only G2 keeps edge 1 <- 1
    assert w.sum(1)[edge_index(1, 1)] == pytest.approx(1 / 3)
    assert w.sum() == pytest.approx(4)  # k=2 edges per node, 2 nodes


def test_entropy_falls_as_alpha_decides():
    s = snapshots(0)
    assert plots.entropy(s[0]["alpha_normal"]) == pytest.approx(np.log(len(OPS)))
    assert plots.entropy(s[-1]["alpha_normal"]) < plots.entropy(s[1]["alpha_normal"]) < np.log(len(OPS))


def test_cell_diagram_draws_every_edge_with_its_op():
    fig = draw_genotype(G1, ops=OPS)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    plots.close(fig)
    for op, _ in G1.normal + G1.reduce:
        assert op.replace("_", " ") in texts
    assert texts.count("0") == texts.count("1") == 2  # the intermediate nodes of both cells


def test_derived_genotype_of_random_alpha_draws(tmp_path):
    g = create_space(load_config(None, ["search.space=darts", f"search.ops=[{','.join(OPS)}]", "search.nodes=3"]).search).derive(
        alphas(3, edges=9))
    path = plots.save(draw_genotype(g, ops=OPS), tmp_path / "g.png")
    assert Image.open(path).format == "PNG"


PLOTS = {"alphas.png", "genotype.png", "alpha_evolution.png", "alpha_entropy.png", "learning_curves.png",
         "adaptation_curve.png"}


def test_meta_training_logs_all_plots_and_keeps_alpha_history(smoke_run, runs_dir):
    run_id, _ = smoke_run
    c = client(runs_dir)
    logged = {a.path.split("/")[-1] for a in c.list_artifacts(run_id, "plots")}
    assert PLOTS <= logged
    for name in PLOTS:
        assert Image.open(c.download_artifacts(run_id, f"plots/{name}")).format == "PNG"
    state = torch.load(runs_dir / "checkpoints" / f"{run_id}.pt", weights_only=True)
    history = state["alpha_history"]
    assert [s["iteration"] for s in history] == [0, 3, 6]  # start + every validation (eval_every=3 of 6)
    for k in ("alpha_normal", "alpha_reduce"):
        assert torch.allclose(history[-1][k], torch.softmax(state["params"][k], -1))
    # smoke has 2 cells, both reductions (at 1/3 and 2/3 of the depth): only alpha_reduce is trained
    assert not torch.equal(history[0]["alpha_reduce"], history[-1]["alpha_reduce"])


@pytest.mark.slow
def test_adapt_plot_saves_and_logs_pictures(smoke_run, runs_dir):
    out = run_cli("-m", "metanas.cli", "adapt", "--tasks", "2", "--plot", "--output-dir", str(runs_dir))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    folder = next(line.split(maxsplit=1)[1] for line in lines if line.startswith("plots: "))
    names = {"genotype_task0.png", "op_wins.png", "adaptation_curve.png"}
    for name in names:
        assert Image.open(f"{folder}/{name}").format == "PNG"
    adapt_id = lines[-1].split()[-1]
    assert adapt_id in folder
    assert names <= {a.path.split("/")[-1] for a in client(runs_dir).list_artifacts(adapt_id, "plots")}
