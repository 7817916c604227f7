"""The EMR notebook: same library calls as the local one, and it runs (its session swapped for a local one)."""

import json
from pathlib import Path

import jupytext
import nbformat
import papermill

from fruits.demo_data import generate_demo_images

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


def test_cloud_notebook_runs_with_a_local_session(tmp_path):
    notebook = jupytext.read(CLOUD)
    cells, swapped = [], False
    for cell in notebook.cells:
        if "session" in tagged(cell):
            if not swapped:
                cells.append(nbformat.v4.new_code_cell(
                    'from fruits.session import local_spark\nspark = local_spark("local[2]", driver_memory="2g")'))
                swapped = True
            continue
        cells.append(cell)
    notebook.cells = cells
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "cloud-local.ipynb"
    nbformat.write(notebook, source)
    images = generate_demo_images(tmp_path / "images", per_class=3, seed=8)
    out = tmp_path / "out"
    papermill.execute_notebook(str(source), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                               parameters={"input_path": str(images), "output_dir": str(out),
                                           "weights": "random", "k": 3})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["featurized"] == 18 and manifest["k"] == 3


def test_display_helpers_print_text_where_livy_returns_only_text(capsys):
    import pandas as pd

    from fruits import plots
    from fruits.report import show_banners, show_evaluation, show_figure, show_table

    show_banners(["weights are random"])
    show_figure(plots.timings(pd.Series({"read": 1.0, "featurize": 2.0})))
    show_table(pd.DataFrame({"path": ["a.jpg"], "reason": ["empty file (0 bytes)"]}), empty="none")
    show_evaluation({"evaluation": None})
    printed = capsys.readouterr().out
    assert "WARNING: weights are random" in printed
    assert "[figure not shown in this kernel: Seconds per stage" in printed
    assert "empty file (0 bytes)" in printed and "No evaluation in this run" in printed
