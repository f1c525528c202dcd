"""``--help`` of every command answers: a usage line and exit 0, in real processes.

argparse %-formats every help string, so one "95% CI" in any of them made ``metanas --help`` crash; the
commands are read from the parser itself, so a command added later is covered without touching this file.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from metanas.cli import build_parser

# The console script installed next to this interpreter (what a user types), else the one on PATH.
METANAS = str(Path(sys.executable).with_name("metanas")) if Path(sys.executable).with_name("metanas").exists() \
    else "metanas"


def commands(parser: argparse.ArgumentParser, path=()):
    """``(path, parser)`` of the parser and of every sub-command under it, sub-sub-commands included."""
    yield path, parser
    for action in parser._actions:  # argparse has no public way to list sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


COMMANDS = [path for path, _ in commands(build_parser())]


def forwards(parser: argparse.ArgumentParser) -> bool:
    """A command that reads none of its arguments as options hands them all, ``--help`` too, to another parser."""
    return "-" not in parser.prefix_chars


def test_every_command_is_found():
    assert {("train",), ("adapt",), ("evaluate",), ("search",), ("runs",), ("tasks",), ("tasks", "show")} \
        <= set(COMMANDS)


def test_every_help_text_formats():
    """In-process and fast: the whole tree's help renders (the %-formatting is where it used to crash)."""
    for path, parser in commands(build_parser()):
        text = parser.format_help()
        assert text.startswith("usage: "), path
        if not forwards(parser):
            assert text.startswith(f"usage: {' '.join(('metanas', *path))}"), text


@pytest.mark.slow
@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(("metanas", *p, "--help")))
def test_help_exits_zero_with_a_usage_line(path):
    out = subprocess.run([METANAS, *path, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: "), out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_top_level_help_lists_every_command():
    out = subprocess.run([METANAS, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: metanas ")
    for (name,) in (p for p in COMMANDS if len(p) == 1):
        assert name in out.stdout


@pytest.mark.parametrize("entry", [["-m", "metanas.meta_train", "--help"], ["-m", "metanas.cli", "train", "--help"]],
                         ids=["python -m metanas.meta_train --help", "metanas train --help"])
def test_meta_train_help_lists_its_options(entry):
    out = run_cli(*entry, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m metanas.meta_train")
    assert "--config" in out.stdout and "--resume" in out.stdout and "key=value" in out.stdout
