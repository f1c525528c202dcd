"""The layer order of the package (pyproject.toml, [tool.importlinter]), checked by import-linter in a real
subprocess: commands above the library, the library above the space, data and foundation modules, and nothing
but the ``train`` command (and the CLI) importing ``metanas.meta_train``."""

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def lint_imports(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    exe = str(exe) if exe.is_file() else shutil.which("lint-imports")
    assert exe, "import-linter is not installed: pip install -e '.[dev]'"
    return subprocess.run([exe, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_package_keeps_its_layers():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_a_library_module_importing_the_training_script_breaks_both_contracts(tmp_path):
    """The contracts are not vacuous: a copy of the package where the API imports meta_train fails."""
    import os

    shutil.copytree(ROOT / "metanas", tmp_path / "metanas", ignore=shutil.ignore_patterns("__pycache__", "splits"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    api = tmp_path / "metanas" / "api.py"
    api.write_text(api.read_text() + "\n\ndef _broken():\n    from metanas import meta_train  # noqa: F401\n")
    out = lint_imports(tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "2 broken" in out.stdout and "metanas.api -> metanas.meta_train" in out.stdout
