"""Bad input: one clear line naming the cause and the fix, exit code 2, no traceback (real CLI, subprocess).

The error table of docs/operations.md lists the same cases.
"""

import pytest
import torch
from conftest import run_cli
from PIL import Image

from metanas.data import load_omniglot

TRAIN = ("-m", "metanas.meta_train")
ADAPT = ("-m", "metanas.cli", "adapt", "--no-track")


def fake_omniglot(root, corrupt=False):
    """A tiny omniglot-py tree: 2 alphabets x 3 characters x 4 drawings per half."""
    for half in ("images_background", "images_evaluation"):
        for a in range(2):
            for c in range(3):
                d = root / "omniglot-py" / half / f"alpha{a}" / f"character{c:02d}"
                d.mkdir(parents=True)
                for i in range(4):
                    Image.new("1", (105, 105), 1).save(d / f"{c}_{i:02d}.png")
    if corrupt:
        bad = root / "omniglot-py" / "images_background" / "alpha1" / "character02" / "2_03.png"
        bad.write_bytes(b"not a png at all")
        return bad


def assert_one_line_error(out, *needles):
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr
    (err,) = [line for line in out.stderr.splitlines() if line.startswith("metanas: error: ")]  # progress bars aside
    for n in needles:
        assert n in err, err


@pytest.mark.parametrize("args, needles", [
    (["meta.iteratons=3"], ["unknown config key 'meta.iteratons'", "did you mean 'meta.iterations'"]),
    (["meta.iterations=abc"], ["meta.iterations", "Integer"]),
    (["task.shots=-1"], ["task.shots", ">= 1"]),
    (["task.queries=0"], ["task.queries", ">= 1"]),
    (["task.ways=500"], ["500 ways", "lower task.ways"]),
    (["task.family=omniglot-5wya"], ["omniglot-5wya", "omniglot-5way"]),
    (["--data-root", "/nonexistent/data"], ["METANAS_DATA", "--data-root"]),
    (["run.device=cuda"], ["no CUDA device", "run.device=cpu"]),
    (["--config", "configs/nope.yaml"], ["configs/nope.yaml", "not found"]),
])
def test_bad_training_input(args, needles, runs_dir):
    assert_one_line_error(run_cli(*TRAIN, *args, f"run.output_dir={runs_dir}"), *needles)


@pytest.mark.parametrize("text, needles", [
    ("- meta\n- iterations\n", ["holds a YAML list", "not a mapping of sections"]),  # was a TypeError traceback
    ("", ["is empty (no keys)", "leave out --config"]),  # was a silent run of the defaults
    ("# nothing set yet\n", ["is empty (no keys)"]),
    ("meta: {iterations: [3}\n", ["cannot parse config file", "line 1, column", "fix the YAML"]),
    ("20\n", ["holds a single value"]),
    ("meta: 20\n", ["config key 'meta'", "not a section of keys", "meta.algorithm="]),  # was key '?'
])
@pytest.mark.parametrize("entry", [TRAIN, ("-m", "metanas.cli", "train")])
def test_config_file_that_is_not_a_mapping_of_sections(text, needles, entry, tmp_path, runs_dir):
    bad = tmp_path / "mine.yaml"
    bad.write_text(text)
    out = run_cli(*entry, "--config", str(bad), "meta.iterations=1", f"run.output_dir={runs_dir}")
    assert_one_line_error(out, str(bad), *needles)


def test_a_folder_as_config_file(tmp_path, runs_dir):
    out = run_cli(*TRAIN, "--config", str(tmp_path), f"run.output_dir={runs_dir}")
    assert_one_line_error(out, str(tmp_path), "is a folder", "pass a YAML file")


def png_bytes(seed=0, size=64):
    """A real PNG (noise, so its compressed data spans the file)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_empty_random_image_and_edited_checkpoints_without_a_run(tmp_path):
    cases = {"empty.pt": (b"", ["is empty (0 bytes)"]),  # was an IndexError while the message was built
             "noise.pt": (bytes(range(256)) * 20, ["not a torch file", "not a zip archive"]),
             "picture.pt": (png_bytes(), ["not a torch file", "it is a PNG image"])}
    for name, (data, needles) in cases.items():
        (tmp_path / name).write_bytes(data)
        out = run_cli(*ADAPT, "--checkpoint", str(tmp_path / name), "--tasks", "1")
        assert_one_line_error(out, str(tmp_path / name), *needles, "re-run meta-training")
    assert_one_line_error(run_cli(*ADAPT, "--checkpoint", str(tmp_path), "--tasks", "1"), "is a folder")
    edited = tmp_path / "edited.pt"  # the format's tag, but an entry every reader uses is gone: was a KeyError
    torch.save({"format": "metanas-checkpoint", "version": 3, "config": "meta: {iterations: 1}\n", "run_id": "x",
                "family": "omniglot-5way", "ways": 5, "iteration": 1, "image": {"channels": 1, "size": 28}}, edited)
    assert_one_line_error(run_cli(*ADAPT, "--checkpoint", str(edited), "--tasks", "1"),
                          str(edited), "damaged or was edited", "no 'params' entry")


def test_malformed_task_yaml(tmp_path, runs_dir):
    bad = tmp_path / "broken.yaml"
    bad.write_text("dataset: omniglot\nways: [5\n")
    assert_one_line_error(run_cli(*TRAIN, f"task.family={bad}", f"run.output_dir={runs_dir}"), str(bad))
    bad.write_text("dataset: omniglot\nwayz: 5\n")
    assert_one_line_error(run_cli(*TRAIN, f"task.family={bad}", f"run.output_dir={runs_dir}"), "wayz")


def test_empty_data_root(tmp_path, runs_dir):
    out = run_cli(*TRAIN, f"run.output_dir={runs_dir}", env={"METANAS_DATA": str(tmp_path)})
    assert_one_line_error(out, "METANAS_DATA", "--data-root")


def test_corrupt_image_is_named_and_skipping_is_explicit(tmp_path, runs_dir):
    bad = fake_omniglot(tmp_path, corrupt=True)
    env = {"METANAS_CACHE": str(tmp_path / "cache")}
    out = run_cli(*TRAIN, "--data-root", str(tmp_path), f"run.output_dir={runs_dir}", env=env)
    assert_one_line_error(out, str(bad), "data.skip_corrupt=true")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        data = load_omniglot(tmp_path, 28, skip_corrupt=True)
    assert data.images.shape[0] == 2 * 2 * 3 * 4 - 1


@pytest.mark.slow
def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run_cli(*TRAIN, "--config", "configs/smoke.yaml", f"run.output_dir={blocker}/runs")
    assert_one_line_error(out, "not writable", "run.output_dir")


@pytest.mark.slow
def test_foreign_truncated_and_mismatched_checkpoints(smoke_run, runs_dir, tmp_path):
    run_id, _ = smoke_run
    real = runs_dir / "checkpoints" / f"{run_id}.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(real.read_bytes()[:1000])
    assert_one_line_error(run_cli(*ADAPT, "--checkpoint", str(truncated)), "truncated")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    assert_one_line_error(run_cli(*ADAPT, "--checkpoint", str(foreign)), "not a metanas checkpoint")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    assert_one_line_error(run_cli(*ADAPT, "--checkpoint", str(text)), "not a torch file")
    mismatched = tmp_path / "mismatched.pt"
    state = torch.load(real, weights_only=True)
    state["config"] = state["config"].replace("channels: 4", "channels: 6")
    torch.save(state, mismatched)
    assert_one_line_error(run_cli(*ADAPT, "--checkpoint", str(mismatched)), "do not match the search space")
    assert_one_line_error(run_cli(*ADAPT, "--checkpoint", str(real), "--task", "omniglot-20way"), "5-way", "20-way")


@pytest.mark.slow
def test_edited_checkpoint_entries_and_adapt_domain_out_a_folder(smoke_run, runs_dir, tmp_path):
    run_id, _ = smoke_run
    real = runs_dir / "checkpoints" / f"{run_id}.pt"
    state = torch.load(real, weights_only=True)
    for key, value, needle in [("config", "meta: [1\n", "its config is not YAML"),  # each was a traceback
                               ("image", {"channels": 2}, "its input format"),
                               ("adaptation", {"steps": "x"}, "its adaptation"),
                               ("ways", "five", "its 'ways' entry")]:
        edited = tmp_path / f"{key}.pt"
        torch.save({**state, key: value}, edited)
        assert_one_line_error(run_cli(*ADAPT, "--checkpoint", str(edited), "--tasks", "1"),
                              str(edited), "damaged or was edited", needle)
    out = run_cli("-m", "metanas.cli", "adapt-domain", "--checkpoint", str(real), "--task", "omniglot-5way",
                  "--tasks", "2", "--out", str(tmp_path))  # was an IsADirectoryError traceback
    assert_one_line_error(out, str(tmp_path), "is a folder")


@pytest.mark.slow
def test_truncated_png_in_an_image_folder_family_is_named_before_any_work(smoke_run, runs_dir, tmp_path):
    run_id, _ = smoke_run
    for c in range(5):
        (tmp_path / "data" / f"class{c}").mkdir(parents=True)
        for i in range(3):
            (tmp_path / "data" / f"class{c}" / f"{i}.png").write_bytes(png_bytes(10 * c + i))
    bad = tmp_path / "data" / "class2" / "1.png"
    bad.write_bytes(png_bytes(21)[:len(png_bytes(21)) // 2])  # a real PNG cut short in its image data
    family = tmp_path / "mine.yaml"
    family.write_text("dataset: imagefolder\nroot: data\nsplit: all\nways: 5\nshots: 1\nqueries: 2\n")
    cmd = ("-m", "metanas.cli", "evaluate", "--no-track", "--checkpoint", str(runs_dir / "checkpoints" / f"{run_id}.pt"),
           "--task", str(family), "--tasks", "2")
    env = {"METANAS_CACHE": str(tmp_path / "cache")}
    assert_one_line_error(run_cli(*cmd, env=env), str(bad), "cut short", "data.skip_corrupt=true")
    # A library imported first may have told PIL to fill a cut-short image in (ImageFile.LOAD_TRUNCATED_IMAGES, a
    # common line in training scripts): evaluate then adapted to the part that survived and exited 0.
    lenient = tmp_path / "lenient"
    lenient.mkdir()
    (lenient / "sitecustomize.py").write_text("from PIL import ImageFile\nImageFile.LOAD_TRUNCATED_IMAGES = True\n")
    out = run_cli(*cmd, env={**env, "PYTHONPATH": str(lenient)})
    assert_one_line_error(out, str(bad), "cut short", "data.skip_corrupt=true")
    assert not list((tmp_path / "cache").glob("*.pt"))  # nothing decoded was kept


@pytest.mark.slow
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = run_cli(*TRAIN, "--config", "configs/smoke.yaml", "meta.iterations=20", "meta.checkpoint_every=2",
                  f"run.output_dir={tmp_path}", "run.progress=false", env={"METANAS_FAULT_NAN_FROM": "4"})
    assert_one_line_error(out, "non-finite", "lower meta.lr")
    (ckpt,) = (tmp_path / "checkpoints").glob("*.pt")
    state = torch.load(ckpt, weights_only=True)
    assert state["iteration"] == 4 and all(torch.isfinite(v).all() for v in state["params"].values())


def test_a_file_where_export_and_ui_expect_a_folder_is_one_line(tmp_path):
    afile = tmp_path / "taken"
    afile.write_text("not a folder")
    out = run_cli("-m", "metanas.cli", "export", "--task", str(tmp_path), "--out", str(afile), "--checkpoint", "x.pt")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "is a file: export writes a folder" in out.stderr
    ui = run_cli("-m", "metanas.cli", "ui", "--output-dir", str(afile))
    assert ui.returncode == 2 and ui.stderr.strip().count("\n") == 0 and "holds no MLflow store" in ui.stderr
