"""The EMR notebook shares its body with the local one; its display helpers work where Livy returns text."""

import json
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "notebooks" / "01-featurize-local.py"
CLOUD = ROOT / "notebooks" / "02-featurize-emr.py"
SET_UP = {"parameters", "session"}


def tagged(cell) -> set:
    return set(cell.metadata.get("tags", []))


def body(path: Path) -> list[str]:
    """Code cells other than parameters and session set-up."""
    return [c.source for c in jupytext.read(path).cells if c.cell_type == "code" and not tagged(c) & SET_UP]


def parameter_names(path: Path) -> set:
    cell = next(c for c in jupytext.read(path).cells if "parameters" in tagged(c))
    return {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line}


def test_notebooks_differ_only_in_parameters_and_session():
    assert body(LOCAL) == body(CLOUD)
    assert parameter_names(CLOUD) == parameter_names(LOCAL) - {"master", "driver_memory"}
    cloud = jupytext.read(CLOUD)
    assert cloud.metadata["kernelspec"]["name"] == "pysparkkernel"
    session = [c.source for c in cloud.cells if "session" in tagged(c)]
    assert session[0].startswith("%%configure -f")
    json.loads(session[0].split("\n", 1)[1])  # the session resources are valid JSON
    assert "s3://" in next(c.source for c in cloud.cells if "parameters" in tagged(c))


def test_display_helpers_print_text_where_livy_returns_only_text(capsys):
    import pandas as pd

    from fruits.cloud.livy.repl import execute
    from fruits.report import plots
    from fruits.report.display import register_matplot_magic, show_banners, show_evaluation, show_table

    register_matplot_magic()  # outside a kernel: nothing to register, nothing printed
    show_banners(["weights are random"])
    show_table(pd.DataFrame({"path": ["a.jpg"], "reason": ["empty file (0 bytes)"]}), empty="none")
    show_evaluation({"evaluation": None})
    printed = capsys.readouterr().out
    assert "WARNING: weights are random" in printed
    assert "empty file (0 bytes)" in printed and "No evaluation in this run" in printed
    # A report figure answers Livy's %matplot magic (which calls NAME.gcf()) with a PNG.
    scope = {"figure": plots.timings(pd.Series({"read": 1.0, "featurize": 2.0}))}
    output = execute("%matplot figure", scope)
    assert output["status"] == "ok" and output["data"]["image/png"]
