"""Write, or ``--check``, the copies derived from the project's single sources.

- The ``parameters`` cell of each notebook, from the parameter dataclasses of
  :mod:`fruits.params` (names, defaults and comments, in field order).
- The cells both notebooks share (the checks before Spark, then everything after each
  notebook's own session cells: featurization, figures, evaluation, timings), from
  ``notebooks/shared/body.py``; each cell keeps its markdown heading, which the HTML
  report shows.
- The ``%%configure -f`` cell of ``02-featurize-emr.py``, from
  :func:`fruits.spark.settings.livy_session`.
- ``emr-config/configurations.json``'s ``spark-defaults`` and ``spark-env``, from
  :func:`fruits.spark.settings.emr_classifications`; its other classifications (Livy,
  JupyterHub) are edited in the file itself. It stays a plain JSON list, as
  ``aws emr create-cluster --configurations file://...`` wants.

Only those cells and classifications are rewritten; every other line of the files is
left as it is. ``--write`` rewrites what differs (then ``jupytext --sync`` refreshes the
paired ``.ipynb``: ``make sync-notebooks`` does both); ``--check`` exits 1 naming what
differs. ``tests/test_single_sources.py`` runs the check.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from fruits import params
from fruits.spark import settings as spark_settings

ROOT = Path(__file__).resolve().parents[1]

#: Notebooks, the parameter groups of their ``parameters`` cell, and where other values go.
NOTEBOOKS = {
    "notebooks/01-featurize-local.py": (
        params.LOCAL_NOTEBOOK_PARAMETERS,
        "Other values: -p NAME VALUE, or a YAML file (fruits run -f params/local-full.yaml; papermill -f)."),
    "notebooks/02-featurize-emr.py": (
        params.CLOUD_NOTEBOOK_PARAMETERS,
        "On EMR, set input_path and output_dir to s3:// folders here, or run with -f params/emr.yaml."),
}
#: The notebook whose Livy session is asked for with ``%%configure``.
CLOUD_NOTEBOOK = "notebooks/02-featurize-emr.py"
#: The cells both notebooks share, written once; a line :data:`OWN_SESSION` splits them
#: where each notebook has its own ``## Spark session`` cells.
SHARED_BODY = "notebooks/shared/body.py"
OWN_SESSION = "# %% notebook's own session"
#: The first cell of each notebook's own session part, where the shared cells before it end.
_SESSION_HEADING = "# %% [markdown]\n# ## Spark session\n"
CONFIGURATIONS = "emr-config/configurations.json"

#: A percent-format cell marker (``# %%``, ``# %% tags=[...]``, ``# %% [markdown]``), not a
#: commented cell magic such as ``# %%configure``.
_CELL_MARKER = re.compile(r"^# %%( |$)")


def literal(value: Any) -> str:
    """Python source for a default: strings in double quotes, like the rest of the notebooks.

    Examples
    --------
    >>> literal("output/demo"), literal(None), literal(0.5)
    ('"output/demo"', 'None', '0.5')
    """
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
    if ast.literal_eval(text) != value:
        raise ValueError(f"default {value!r} has no plain literal")
    return text


def parameters_cell(groups: Sequence[type], hint: str) -> str:
    """The body of a notebook's ``parameters`` cell for ``groups`` (percent-format lines)."""
    names = ", ".join(group.__name__ for group in groups)
    lines = [f"# Generated from fruits.params ({names}) by tools/sync_derived.py: change defaults there.",
             f"# {hint}"]
    for field in params.parameter_fields(groups):
        lines.append(f"{field.name} = {literal(field.default)}  # {params.parameter_comment(field)}")
    return "\n".join(lines)


def configure_cell() -> str:
    """The body of the cloud notebook's session cell, as jupytext writes a cell magic."""
    return "# %%configure -f\n" + json.dumps(spark_settings.livy_session(), indent=2)


def configurations(current: list[dict]) -> list[dict]:
    """``current`` with its Spark classifications replaced (appended if missing) by the derived ones."""
    derived = {entry["Classification"]: entry for entry in spark_settings.emr_classifications()}
    result = [derived.pop(entry["Classification"], entry) for entry in current]
    return result + list(derived.values())


def replace_cell(text: str, is_cell: Callable[[str, list[str]], bool], body: str, *, what: str) -> str:
    """Replace the body of the one percent-format cell for which ``is_cell(marker, lines)`` holds.

    Raises
    ------
    ValueError
        No such cell, or more than one.
    """
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _CELL_MARKER.match(line)] + [len(lines)]
    found = []
    for start, end in zip(starts, starts[1:]):
        content = lines[start + 1:end]
        while content and not content[-1].strip():
            content.pop()
        if is_cell(lines[start], content):
            found.append((start + 1, start + 1 + len(content)))
    if len(found) != 1:
        raise ValueError(f"expected one {what} cell, found {len(found)}")
    first, last = found[0]
    return "\n".join(lines[:first] + body.split("\n") + lines[last:])


def _is_parameters(marker: str, lines: list[str]) -> bool:
    return '"parameters"' in marker


def _is_configure(marker: str, lines: list[str]) -> bool:
    return bool(lines) and lines[0].startswith("# %%configure")


def shared_body(root: Path = ROOT) -> tuple[str, str]:
    """The shared cells that follow a notebook's parameters, and those that follow its own session cells."""
    text = (root / SHARED_BODY).read_text(encoding="utf-8")
    before, found, after = text[text.index("# %%"):].partition(OWN_SESSION + "\n")
    if not found:
        raise ValueError(f"{SHARED_BODY} has no line {OWN_SESSION!r} where each notebook's session goes")
    return before, after.lstrip("\n")


def _heading(cells: str) -> str:
    """The marker and heading lines of the first cell of ``cells``: where they start in a notebook."""
    return "\n".join(cells.split("\n", 2)[:2]) + "\n"


def _once(text: str, part: str, *, what: str, start: int = 0) -> int:
    found = text.count(part, start)
    if found != 1:
        raise ValueError(f"expected one {what} cell, found {found}")
    return text.index(part, start)


def with_shared_body(text: str, before: str, after: str) -> str:
    """``text`` with the shared cells put back: from the checks' heading to its own ``## Spark session``
    heading, and from the featurization's heading to the end."""
    first = _once(text, _heading(before), what=f"{_heading(before).splitlines()[1]!r}")
    session = _once(text, _SESSION_HEADING, what="'## Spark session'", start=first)
    text = text[:first] + before + text[session:]
    return text[:_once(text, _heading(after), what=f"{_heading(after).splitlines()[1]!r}")] + after


def derived(root: Path = ROOT) -> dict[Path, str]:
    """Every derived file under ``root``, as its text should be."""
    files = {}
    before, after = shared_body(root)
    for name, (groups, hint) in NOTEBOOKS.items():
        path = root / name
        text = files.get(path, path.read_text(encoding="utf-8"))
        text = replace_cell(text, _is_parameters, parameters_cell(groups, hint), what="parameters")
        files[path] = with_shared_body(text, before, after)
    path = root / CLOUD_NOTEBOOK
    files[path] = replace_cell(files[path], _is_configure, configure_cell(), what="%%configure")
    path = root / CONFIGURATIONS
    current = json.loads(path.read_text(encoding="utf-8"))
    files[path] = json.dumps(configurations(current), indent=2) + "\n"
    return files


def stale(root: Path = ROOT) -> list[Path]:
    """Derived files under ``root`` that differ from what their sources give."""
    return [path for path, text in derived(root).items() if path.read_text(encoding="utf-8") != text]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the derived cells and files that differ")
    action.add_argument("--check", action="store_true", help="exit 1 if any derived copy differs")
    args = parser.parse_args(argv)
    if args.check:
        differing = stale()
        for path in differing:
            print(f"{path.relative_to(ROOT)} differs from its source: run make sync-notebooks", file=sys.stderr)
        return 1 if differing else 0
    for path, text in derived().items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
