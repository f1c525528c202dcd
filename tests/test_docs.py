"""The documentation reads as a manual: no machine paths and no work-log wording in the repository, a short
README whose links lead somewhere.

Scans every tracked text file (``git ls-files``), so a path pasted into a docstring, a test comment or a
benchmark note fails here, naming the file and the line.
"""

import re
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".cfg", ".txt"}
README_MAX_LINES = 250

# An absolute path of one machine: a path that starts at the root with work, tmp, root or home (not a relative
# runs/tmp/ nor a URL path such as example.org/home/).
MACHINE_PATH = re.compile(r"(?<![\w.\-/])/(?:work|tmp|root|home)/|(?<=//)/(?:work|tmp|root|home)/")
# The work-log word, alone or numbered (a pytest hook name such as pytest_sessionstart is not the word).
LOG_WORD = re.compile(r"\bsession(?:s|\d+)?\b", re.IGNORECASE)
# A markdown link to a local page: [text](path.md) or [text](path.md#anchor).
LINK = re.compile(r"\]\(([^)\s:#]+\.md)(?:#([^)\s]+))?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an installed copy): nothing to scan")
    files = [ROOT / name for name in out.decode().split("\0") if name]
    return [f for f in files if f.suffix in TEXT_SUFFIXES and f.is_file()]


def offending_lines(pattern: re.Pattern, files) -> list[str]:
    hits = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:160]}")
    return hits


def test_the_scan_sees_the_repository():
    names = {str(f.relative_to(ROOT)) for f in tracked_text_files()}
    assert {"README.md", "pyproject.toml", "tests/test_docs.py", "metanas/config.py"} <= names


def test_no_absolute_machine_paths():
    hits = offending_lines(MACHINE_PATH, tracked_text_files())
    assert not hits, "absolute paths of one machine (write a placeholder such as DIR, or a relative path):\n" + \
        "\n".join(hits)


def test_no_work_log_wording():
    hits = offending_lines(LOG_WORD, tracked_text_files())
    assert not hits, "work-log wording (date the figure instead, e.g. 2026-11-30):\n" + "\n".join(hits)


# The cases are assembled from parts, so that this file passes its own scan.
WORD, SLASH = "sess" + "ion", "/"


def rooted(top: str, rest: str) -> str:
    return SLASH + top + SLASH + rest


@pytest.mark.parametrize("line, bad", [
    ("METANAS_DATA=" + rooted("work", "shared/data") + " python -m pytest", True),
    ("--out " + rooted("tmp", "x.md"), True),
    ("sqlite:///" + rooted("root", "runs/mlflow.db"), True),
    ("cd " + rooted("home", "me/metanas"), True),
    ("METANAS_DATA=../shared/data run.output_dir=runs/tmp/x", False),
    ("https://example.org/home/page", False),
    ("~/.cache/metanas/data", False),
])
def test_the_path_pattern(line, bad):
    assert bool(MACHINE_PATH.search(line)) is bad, line


@pytest.mark.parametrize("line, bad", [
    (WORD.title() + " 19: results", True),
    ("measured this " + WORD, True),
    ("runs/" + WORD + "18/baselines600", True),
    (f"def pytest_{WORD}start({WORD}):", True),  # the argument is the word
    ("scope='package'", False),
    (f"pytest_{WORD}finish hook", False),
])
def test_the_word_pattern(line, bad):
    assert bool(LOG_WORD.search(line)) is bad, line


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): " \
        "move detail to docs/"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            found.add(slug(m.group(1)))
    return found


def local_links(page: Path):
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        for m in LINK.finditer(line):
            yield number, (page.parent / m.group(1)).resolve(), m.group(2)


def test_readme_links_every_docs_page_and_they_exist():
    readme = ROOT / "README.md"
    linked = {target for _, target, _ in local_links(readme)}
    missing = sorted(str(t.relative_to(ROOT)) for t in linked if not t.exists())
    assert not missing, f"README.md links pages that do not exist: {missing}"
    pages = {"usage", "data", "method", "operations", "results", "history"}
    assert {ROOT / "docs" / f"{name}.md" for name in pages} <= linked, "README.md must link every docs page"


def test_links_between_pages_lead_somewhere():
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for number, target, anchor in local_links(page):
            where = f"{page.relative_to(ROOT)}:{number}"
            if not target.exists():
                broken.append(f"{where}: no page {target.name}")
            elif anchor and anchor not in anchors(target):
                broken.append(f"{where}: no heading #{anchor} in {target.name}")
    assert not broken, "\n".join(broken)


def test_results_leave_the_distribution_section_to_its_figures():
    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert "## Across task distributions" in text
