"""The documentation reads as a manual: no machine paths and no work-log wording in the repository, a short
README whose links lead somewhere.

Scans every tracked text file (``git ls-files``), so a path pasted into a docstring, a test comment or a
benchmark note fails here, naming the file and the line.
"""

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".cfg", ".txt"}
README_MAX_WORDS = 1200
README_TABLE_MAX_ROWS, README_TABLE_COLUMNS = 6, 4
RESULTS_MAX_LINES = 500
VERDICT_MIN_WORDS = 40

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


def section(text: str, heading: str) -> list[str]:
    """The lines under a ``## heading`` up to the next heading of level 1 or 2."""
    lines, inside, fenced = [], False, False
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#{1,2}\s", line):
            inside = line.strip() == heading
        elif inside:
            lines.append(line)
    return lines


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def readme_problems(text: str) -> list[str]:
    """What makes a README too long to read: its words, and the size of its results table."""
    problems = []
    if (words := len(text.split())) > README_MAX_WORDS:
        problems.append(f"{words} words (at most {README_MAX_WORDS}): move detail to docs/")
    table = [line for line in section(text, "## Results") if line.lstrip().startswith("|")]
    if not table:
        return problems + ["no results table under ## Results"]
    head, rows = table[0], [r for r in table[2:] if r.strip()]
    if len(cells(head)) != README_TABLE_COLUMNS:
        problems.append(f"the results table has {len(cells(head))} columns (exactly {README_TABLE_COLUMNS}: "
                        "setting | figure ± CI | paired against the best conv4 | command)")
    if len(rows) > README_TABLE_MAX_ROWS:
        problems.append(f"the results table has {len(rows)} rows (at most {README_TABLE_MAX_ROWS}): link the rest "
                        "to docs/results.md")
    return problems


def results_problems(text: str) -> list[str]:
    """What makes the results page hard to read: its length, and no verdict before its first section."""
    problems = []
    lines = text.splitlines()
    if len(lines) > RESULTS_MAX_LINES:
        problems.append(f"{len(lines)} lines (at most {RESULTS_MAX_LINES}): move superseded figures to history.md")
    titled = bool(lines) and lines[0].startswith("# ")
    first_section = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    opening = "\n".join(lines[1:first_section]).strip().split("\n\n")[0] if titled else ""
    if not opening.startswith("**Verdict.**") or len(opening.split()) < VERDICT_MIN_WORDS:
        problems.append("the page must open, under its title and before its first ## section, with a paragraph "
                        f"starting **Verdict.** of at least {VERDICT_MIN_WORDS} words")
    return problems


def test_readme_is_short():
    problems = readme_problems((ROOT / "README.md").read_text(encoding="utf-8"))
    assert not problems, "README.md: " + "; ".join(problems)


def test_results_page_is_short_and_opens_with_its_verdict():
    problems = results_problems((ROOT / "docs" / "results.md").read_text(encoding="utf-8"))
    assert not problems, "docs/results.md: " + "; ".join(problems)


VERDICT = "**Verdict.** " + "word " * VERDICT_MIN_WORDS
TABLE = "| setting | figure | paired | command |\n|---|---|---|---|\n"


@pytest.mark.parametrize("text, bad", [
    ("# R\n\n" + "w " * 100 + "\n\n## Results\n\n" + TABLE + "| a | 1 | 2 | c |\n", False),
    ("# R\n\n" + "w " * (README_MAX_WORDS + 1) + "\n\n## Results\n\n" + TABLE, True),
    ("# R\n\n## Results\n\n" + TABLE + "| a | 1 | 2 | c |\n" * (README_TABLE_MAX_ROWS + 1), True),
    ("# R\n\n## Results\n\n| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n", True),
    ("# R\n\n## Results\n\nno table\n", True),
])
def test_the_readme_limits(text, bad):
    assert bool(readme_problems(text)) is bad


@pytest.mark.parametrize("text, bad", [
    ("# Results\n\n" + VERDICT + "\n\nmore\n\n## A claim\n", False),
    ("# Results\n\n" + VERDICT + "\n\n## A claim\n" + "line\n" * RESULTS_MAX_LINES, True),
    ("# Results\n\n## A claim\n\n" + VERDICT + "\n", True),
    ("# Results\n\n| a | b |\n|---|---|\n\n" + VERDICT + "\n\n## A claim\n", True),
    ("# Results\n\n**Verdict.** too short.\n\n## A claim\n", True),
])
def test_the_results_limits(text, bad):
    assert bool(results_problems(text)) is bad


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


IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s:#]+\.png)\)")


def test_pictures_exist_and_the_results_plots_are_drawn_by_docs_figures():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = [f"{page.relative_to(ROOT)}: {m.group(1)}" for page in pages
               for m in IMAGE.finditer(page.read_text(encoding="utf-8")) if not (page.parent / m.group(1)).exists()]
    assert not missing, "pictures that do not exist: " + ", ".join(missing)
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "docs" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    shown = set(IMAGE.findall((ROOT / "docs" / "results.md").read_text(encoding="utf-8")))
    drawn = {f"img/{name}.png" for name in figures.PLOTS}
    assert shown == drawn, f"results.md shows {sorted(shown)}, docs/figures.py draws {sorted(drawn)}"


def test_the_results_plots_draw_from_their_data(tmp_path):
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "docs" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    figures.IMG = tmp_path
    figures.main([])
    sizes = {p.name: p.stat().st_size for p in tmp_path.glob("*.png")}
    assert set(sizes) == {f"{name}.png" for name in figures.PLOTS}
    assert all(10_000 < size < 150_000 for size in sizes.values()), sizes
