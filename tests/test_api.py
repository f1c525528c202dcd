"""The Python API, called the way a user's script would: train from a config object, load, adapt to tensors,
predict; on the chain space under the gumbel policy (the per-task argmax network is a real discrete child)."""

import pytest
import torch

import metanas
from metanas.data import get_tasksets, load_family

CHAIN = ["search.space=chain", "search.policy=gumbel", "search.widths=[8,16]", "search.channels=16",
         "search.pools=[max,avg]", "meta.cost_weight=0.1", "inner.final_temperature=0.3", "inner.lr_alpha=2.0",
         "inner.learn_lr_alpha=true"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    cfg = metanas.load_config("configs/smoke.yaml", [f"run.output_dir={out}", "run.progress=false", *CHAIN])
    return metanas.train(cfg), out


@pytest.fixture(scope="module")
def task():
    sx, sy, qx, qy = get_tasksets(load_family("omniglot-5way")).test.sample(torch.Generator().manual_seed(7))
    return sx, sy, qx, qy


def test_train_returns_a_result_with_the_run_and_its_architecture(trained):
    result, out = trained
    assert 0 <= result.test.mean <= 1 and result.checkpoint.is_file() and result.steps == 6
    assert len(result.arch) == 4 and all(w in (8, 16) and pool in ("max", "avg") for _, w, pool in result.arch)


def test_load_by_path_and_by_run_id_give_the_same_warm_start(trained):
    result, out = trained
    a, b = metanas.load(str(result.checkpoint)), metanas.load(result.run_id, output_dir=str(out))
    assert a.run_id == b.run_id == result.run_id and a.ways == 5 and a.is_supernet
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert a.derive() == result.arch
    # the meta-learned alpha step sizes travel with the warm start (they moved from their initial 2.0)
    assert {"lr_alpha_op", "lr_alpha_width", "lr_alpha_pool"} <= set(a.params)
    assert not torch.allclose(a.params["lr_alpha_op"].exp(), torch.tensor(2.0))
    with pytest.raises(metanas.MetanasError, match="not found"):
        metanas.load("no-such-run", output_dir=str(out))


def test_adapt_gives_the_task_its_own_discrete_network(trained, task):
    result, out = trained
    warm = metanas.load(result.run_id, output_dir=str(out))
    sx, sy, qx, qy = task
    adapted = metanas.adapt(warm, sx, sy)
    assert adapted.predict(qx).shape == qy.shape and set(adapted.predict(qx).tolist()) <= set(range(5))
    # under gumbel a task runs the argmax of its own adapted alpha: its discrete child computes the same function
    child = adapted.child()
    with torch.no_grad():
        assert torch.allclose(child(qx), adapted.logits(qx), atol=1e-4)
    fixed = metanas.adapt(warm, sx, sy, adaptation=warm.adaptation.replace(lr_alpha=0.0))
    assert fixed.arch == warm.derive()  # alpha step 0: weights only, the warm start's architecture
    assert all(torch.equal(fixed.params[k], warm.params[k]) for k in warm.params if k.startswith("alpha_"))
    kept = warm.with_adaptation(warm.adaptation.replace(lr_alpha=0.0))  # a warm start that keeps alpha fixed
    assert all(torch.equal(metanas.adapt(kept, sx, sy).params[k], fixed.params[k]) for k in fixed.params)
    moved = metanas.adapt(kept, sx, sy, adaptation=kept.adaptation.replace(lr_alpha=2.0))  # switched on again
    assert not torch.equal(moved.params["alpha_op"], warm.params["alpha_op"])
    with pytest.raises(metanas.MetanasError, match=r"lr_alpha \(--lr-alpha\) -1.0: must be >= 0"):
        warm.adaptation.replace(lr_alpha=-1.0)
    more = metanas.adapt(warm, sx, sy, adaptation=warm.adaptation.replace(steps=4))
    assert not torch.equal(more.params["classifier.weight"], adapted.params["classifier.weight"])


def test_evaluate_scores_a_family(trained):
    result, out = trained
    warm = metanas.load(result.run_id, output_dir=str(out))
    family, ev = metanas.evaluate(warm, "omniglot-5way", tasks=4, seed=1)
    assert family.name == "omniglot-5way" and ev.accuracies.shape == (4,) and ev.curve.shape == (4, 3)
    assert set(ev.alphas) == {"alpha_op", "alpha_width", "alpha_pool"}
    # split="validation": tasks of the family's validation classes (to choose among warm starts), not its test ones
    _, val = metanas.evaluate(warm, "glyphs-5way", tasks=4, seed=1, curve=False, split="validation")
    _, test = metanas.evaluate(warm, "glyphs-5way", tasks=4, seed=1, curve=False)
    assert val.accuracies.shape == test.accuracies.shape == (4,) and not torch.equal(val.accuracies, test.accuracies)
    with pytest.raises(metanas.MetanasError, match="digits-5way has no validation split"):
        metanas.evaluate(warm, "digits-5way", tasks=2, split="validation")
