"""The README and the docs/ pages point at things that exist.

A newcomer follows the README's links and copies the paths and module names it shows; a
link to a moved page, a heading renamed under an anchor, or a module path from before a
move would send them nowhere. These checks read the Markdown as text (no Spark, no
network): every relative link leads to an existing file (and, for a Markdown page, to an
existing heading when it names one), every repository path and every ``fruits.*`` module
named in backticks exists, the folder trees name real files, every docs page is linked from
the README, every make target is documented, and the README stays short.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LIBRARY = ROOT / "lib" / "fruits"

#: The README is the five-minute read; the rest lives in docs/ (issue 22).
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
MODULE_NAME = re.compile(r"(?<![\w./-])fruits(?:\.[A-Za-z_]\w*)+")
PLACEHOLDER = re.compile(r"[<>*{}$]")


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose_and_code(text: str) -> tuple[list[str], list[list[str]]]:
    """Split a Markdown page into prose lines and fenced code blocks (each a list of lines)."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line):
            if block is None:
                block = []
            else:
                blocks.append(block)
                block = None
        elif block is None:
            prose.append(line)
        else:
            block.append(line)
    assert block is None, "a code fence is never closed"
    return prose, blocks


def _without_code_spans(line: str) -> str:
    return CODE_SPAN.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation dropped, spaces to hyphens.

    >>> slug("The driver JVM's class archive")
    'the-driver-jvms-class-archive'
    >>> slug("New photos: `fruits project`")
    'new-photos-fruits-project'
    >>> slug("Are the features any good?")
    'are-the-features-any-good'
    """
    text = LINK.sub(r"\1", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page, duplicates numbered as GitHub does."""
    prose, _ = _prose_and_code(page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    prose, _ = _prose_and_code(page.read_text())
    return [target for line in prose for _, target in LINK.findall(_without_code_spans(line))]


def code_spans(page: Path) -> list[str]:
    prose, _ = _prose_and_code(page.read_text())
    return [span for line in prose for _, span in CODE_SPAN.findall(line)]


# --- the README is short, and leads to every page ---

def test_the_readme_stays_under_200_lines():
    lines = len(README.read_text().splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_the_docs_pages_issue_22_names_exist_and_the_readme_links_every_page():
    names = {page.name for page in DOCS}
    assert {"emr.md", "parameters-and-outputs.md", "reliability.md", "performance.md",
            "architecture.md", "development.md"} <= names
    linked = {(README.parent / target.split("#")[0]).resolve() for target in links(README)}
    for page in DOCS:
        assert page.resolve() in linked, f"README.md does not link {_id(page)}"


# --- links ---

@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    problems = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading with anchor #{anchor} in {_id(destination)}")
    assert not problems, f"{_id(page)}:\n" + "\n".join(problems)


# --- paths and modules named in backticks ---

def _top_level_names() -> set[str]:
    return {path.name for path in ROOT.iterdir() if not path.name.startswith(".")} - {"output", "data"}


def _library_packages() -> set[str]:
    return {path.name for path in LIBRARY.iterdir() if path.is_dir() and not path.name.startswith("_")}


def _repo_path(span: str) -> Path | None:
    """The repository path a code span names, or None when it names none (a command, a value)."""
    word = span.strip()
    if " " in word or PLACEHOLDER.search(word) or "/" not in word or "://" in word:
        return None
    first = word.split("/", 1)[0]
    if first in _top_level_names():
        return ROOT / word
    if first in _library_packages():  # `run/steps.py`, `storage/location.py`
        return LIBRARY / word
    return None


def _exists(path: Path) -> bool:
    # `notebooks/02-featurize-emr` names the notebook in both of its paired formats.
    return path.exists() or any(path.parent.glob(path.name + ".*"))


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_repository_path_named_in_backticks_exists(page):
    named = {span: _repo_path(span) for span in code_spans(page)}
    missing = sorted(span for span, path in named.items() if path is not None and not _exists(path))
    assert not missing, f"{_id(page)} names paths that do not exist: {missing}"


def _defines(module_file: Path, name: str) -> bool:
    """Whether the module binds ``name`` at its top level (def, class, assignment or import)."""
    bound = set()
    for node in ast.parse(module_file.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound |= {target.id for target in targets if isinstance(target, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return name in bound


def resolves(dotted: str) -> bool:
    """Whether ``fruits.a.b[.name]`` is a module of lib/, or a name that module defines.

    >>> resolves("fruits.params.RunParams"), resolves("fruits.params.NoSuchName")
    (True, False)
    >>> resolves("fruits.storage.layout.current_run"), resolves("fruits.no_such_module")
    (True, False)
    """
    parts = dotted.split(".")
    for length in range(len(parts), 0, -1):
        base = ROOT / "lib" / Path(*parts[:length])
        module_file = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        rest = parts[length:]
        if base.with_suffix(".py").is_file() or base.is_dir():
            if not rest:
                return True
            return module_file.is_file() and len(rest) == 1 and _defines(module_file, rest[0])
    return False


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_fruits_module_named_exists_at_its_path(page):
    prose, blocks = _prose_and_code(page.read_text())
    texts = code_spans(page) + [line for block in blocks for line in block]
    named = {name for text in texts for name in MODULE_NAME.findall(text)}
    missing = sorted(name for name in named if not resolves(name))
    assert not missing, f"{_id(page)} names modules or names that do not exist: {missing}"


# --- the folder trees ---

NAME = re.compile(r"^[\w.-]+(?:/[\w.-]+)*(?:/|\.py|\.md)$")


def tree_entries(block: list[str]) -> list[str]:
    """The paths a ``lib/fruits/`` tree block names, each relative to the repository root.

    An entry's leading names (``run/``, ``progress.py  timing.py``) sit under the last folder
    written less indented; the words after them are its description.

    >>> tree_entries(["lib/fruits/   the library", "  run/   steps", "    plan.py  x.py   checks",
    ...               "  cli.py   the command", "bench/   benchmarks"])
    ['lib/fruits/', 'lib/fruits/run/', 'lib/fruits/run/plan.py', 'lib/fruits/run/x.py', 'lib/fruits/cli.py', 'bench/']
    """
    entries, parents = [], []  # parents: (indent, folder path)
    for line in block:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while parents and parents[-1][0] >= indent:
            parents.pop()
        base = parents[-1][1] if parents else ""
        for word in line.split():
            if not NAME.match(word):
                break
            entries.append(base + word)
            if word.endswith("/"):
                parents.append((indent, base + word))
    return entries


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_every_file_and_folder_of_a_library_tree_exists(page):
    _, blocks = _prose_and_code(page.read_text())
    trees = [block for block in blocks if block and block[0].split()[:1] == ["lib/fruits/"]]
    missing = sorted({entry for tree in trees for entry in tree_entries(tree) if not (ROOT / entry).exists()})
    assert not missing, f"{_id(page)}'s folder tree names what does not exist: {missing}"


def test_the_architecture_page_lists_every_library_module():
    _, blocks = _prose_and_code((ROOT / "docs" / "architecture.md").read_text())
    trees = [block for block in blocks if block and block[0].split()[:1] == ["lib/fruits/"]]
    assert trees, "docs/architecture.md has no lib/fruits/ tree"
    listed = {entry for tree in trees for entry in tree_entries(tree)}
    for module in sorted(LIBRARY.glob("*.py")) + sorted(LIBRARY.glob("*/")):
        if module.name.startswith("_"):
            continue
        entry = _id(module) + ("/" if module.is_dir() else "")
        assert entry in listed, f"docs/architecture.md's tree does not show {entry}"
    # A package whose files the tree lists one by one lists all of them, and its sub-packages.
    for folder in sorted(entry for entry in listed if entry.endswith("/")):
        if any(entry.startswith(folder) and entry.endswith(".py") for entry in listed):
            for module in sorted((ROOT / folder).glob("*.py")) + sorted((ROOT / folder).glob("*/")):
                entry = _id(module) + ("/" if module.is_dir() else "")
                if not module.name.startswith("_"):
                    assert entry in listed, f"docs/architecture.md's tree lists {folder} but not {module.name}"


# --- make targets ---

def test_every_make_target_is_documented_in_the_development_page():
    targets = re.findall(r"^([a-zA-Z_.-]+):[^=\n]*## ", (ROOT / "Makefile").read_text(), re.M)
    development = (ROOT / "docs" / "development.md").read_text()
    assert len(targets) >= 8
    for target in targets:
        if target != "help":
            assert f"`make {target}`" in development, f"docs/development.md does not document make {target}"
