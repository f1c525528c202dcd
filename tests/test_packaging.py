"""The package as a user installs it: a wheel in a fresh virtual environment, run from outside the repository."""

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT


def _run(cmd, cwd, env, timeout=600):
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def see_packages_of_this_interpreter(python, cwd, env):
    """Make the venv of ``python`` see the packages of the interpreter running the tests.

    ``--system-site-packages`` gives the *base* interpreter's packages: right when the tests run in the system
    interpreter, but when they run inside a virtual environment its own packages (torch, mlflow, ...) are not
    the base's. Then a ``.pth`` file in the new venv adds this interpreter's site-packages after the venv's own:
    the wheel's metanas comes first, and since a folder a ``.pth`` line adds has its own ``.pth`` files left
    unread, the editable metanas installed there stays out."""
    if sys.prefix == sys.base_prefix:
        return
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd, env).stdout
    folders = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib.strip()) / "parent-interpreter.pth").write_text("".join(f"{p}\n" for p in folders))


@pytest.mark.slow
def test_wheel_installs_and_runs_from_any_directory(tmp_path):
    # Build from a copy of the repository: an in-tree build would leave build/ and *.egg-info in the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    wheels = tmp_path / "wheels"
    # No build isolation: it would fetch setuptools from an index; the one installed here builds the wheel.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, src],
         tmp_path, env)
    (wheel,) = wheels.glob("metanas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"metanas/tasks/omniglot-5way.yaml", "metanas/configs/smoke.yaml", "metanas/configs/miniimagenet-cpu.yaml",
            "metanas/data/splits/miniimagenet/train.txt", "metanas/data/splits/cub/test.txt",
            "metanas/data/splits/SOURCES.md"} <= set(names)

    venv = tmp_path / "venv"
    # The venv sees this interpreter's torch, mlflow, ...; only metanas itself comes from the wheel.
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], tmp_path, env)
    bin_ = venv / "bin"
    see_packages_of_this_interpreter(bin_ / "python", tmp_path, env)
    # --force-reinstall: an installed metanas of the same version (e.g. an editable one) outside the venv
    # would otherwise count as already satisfied.
    _run([bin_ / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall", wheel],
         tmp_path, env)

    work = tmp_path / "elsewhere"  # a working directory with no tasks/ or configs/ of its own
    work.mkdir()
    where = _run([bin_ / "python", "-c", "import metanas, metanas.core.resources as r; "
                  "print(metanas.__file__); print(r.builtin_tasks_dir()); print(r.builtin_config('smoke'))"],
                 work, env).stdout.split()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv.resolve()), where  # the wheel's copy, not the repo's

    listed = _run([bin_ / "metanas", "tasks"], work, env).stdout
    assert "omniglot-5way " in listed and "digits-5way " in listed

    smoke = "smoke"  # a built-in config by name: the wheel's metanas/configs/smoke.yaml
    out = _run([bin_ / "python", "-m", "metanas.meta_train", "--config", smoke, f"run.output_dir={tmp_path / 'runs'}",
                "run.progress=false"], work, env).stdout
    assert "test accuracy:" in out
    assert not (work / "mlruns").exists() and sorted(os.listdir(work)) == []  # everything went to run.output_dir
