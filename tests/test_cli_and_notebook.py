"""The notebook executed by papermill through ``fruits run``, and the CLI's error handling."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fruits.run.demo_data import CLASSES, DEMO_PER_CLASS
from fruits.storage.layout import current_run
from tests.conftest import copy_slice
from tests.test_report_browser import browser, check_report  # noqa: F401  (fixture: headless Chromium)

ROOT = Path(__file__).resolve().parents[1]


def fruits(*args, env_extra=None, timeout=900):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "fruits.cli", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def test_bad_parameter_value_stops_before_any_kernel(tmp_path):
    result = fruits("run", "--output", str(tmp_path / "out"), "-p", "k", "0")
    assert result.returncode == 2
    assert "k must be an integer between 1 and 1280, got 0" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_parameter_is_refused(tmp_path):
    result = fruits("run", "--output", str(tmp_path / "out"), "-p", "colour", "red")
    assert result.returncode == 2 and "unknown parameter 'colour'" in result.stderr


@pytest.mark.spark
def test_failing_cell_exits_non_zero_with_cell_and_error(tmp_path):
    result = fruits("run", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 1
    assert re.search(r"error: cell \d+ failed with InputError: input_path", result.stderr), result.stderr[-2000:]
    assert "does not exist" in result.stderr
    assert not (tmp_path / "out").exists(), "a failed run must not create or touch the output"


def _assert_report(report: Path, *, figures: int):
    html = report.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') >= figures
    assert "from fruits" not in html, "code cells must be hidden"
    return html


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``make demo``'s command (random weights, k=10, the demo's images in a scratch folder), run once.

    Two tests read it: what it writes and says on the console, and its report in Chromium
    (a demo run is about 45 s of two busy cores; the suite ran it twice).
    """
    scratch = tmp_path_factory.mktemp("demo")
    out = scratch / "out"
    result = fruits(
        "run", "--output", str(out), "-p", "weights", "random", "-p", "k", "10",
        env_extra={"FRUITS_DEMO_DATA": str(scratch / "demo")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result, Path(current_run(str(out)))


@pytest.mark.spark
def test_demo_run_writes_outputs_and_a_report_that_says_synthetic_and_random(demo_run):
    result, run = demo_run
    assert "[featurize] finished" in result.stderr, "progress must reach the console"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["demo"] is True and manifest["weights"]["random"] is True
    assert manifest["spark"]["short_run_jvm"] is True, "the demo is a short run: its local JVM compiles with C1 only"
    assert manifest["counts"]["featurized"] == len(CLASSES) * DEMO_PER_CLASS and manifest["k"] == 10
    for name in ("features", "pca", "pca_model", "rejected", "notebook.ipynb"):
        assert (run / name).exists(), name
    assert manifest["evaluation"]["classes_scored"] == len(CLASSES), "the demo scores its features on its synthetic training split"
    html = _assert_report(run / "report.html", figures=9)
    assert "SYNTHETIC DEMO DATA" in html and "WEIGHTS ARE RANDOM" in html
    assert "RANDOM weights: these scores say" in html
    assert html.index("SYNTHETIC DEMO DATA") < html.index('src="data:image/png')
    timings = json.loads((run / "timings.json").read_text())
    assert timings["early_map"] is True, "the interactive map was built while the notebook drew its figures"
    assert 'id="fruits-map-plot"' in html, "and it is in the report"


@pytest.mark.spark
def test_demo_report_offline_in_chromium(browser, demo_run, tmp_path):
    """``make demo``'s report: synthetic data said first, every section shown, the evaluation included."""
    _, run = demo_run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["evaluation"]["classes_scored"] == 6, "the demo evaluates on its synthetic training split"
    assert manifest["evaluation"]["train_path"].endswith("demo-training")
    met = check_report(browser, run / "report.html", tmp_path)
    assert met["text"].index("SYNTHETIC DEMO DATA") < met["text"].index("Images per class")
    assert "RANDOM weights" in met["text"] and "Synthetic" in met["hovered"]["alt"]


@pytest.mark.slow
def test_real_slice_through_papermill(real_images, real_weights, tmp_path, spark):
    images = copy_slice(real_images / "Test", tmp_path / "Test", classes=10, per_class=20)
    out = tmp_path / "out"
    result = fruits("run", "--input", str(images), "--output", str(out),
                    "-p", "weights", str(real_weights), "-p", "k", "50", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    run = Path(current_run(str(out)))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["counts"] == {"input": 200, "images": 200, "featurized": 200, "rejected": 0,
                                  "featurized_this_run": 200}
    assert manifest["weights"]["random"] is False and manifest["demo"] is False
    assert manifest["k"] == 50 and len(manifest["explained_variance"]) == 50
    assert 0 < manifest["cumulative_variance_at_k"] <= 1
    assert len(manifest["classes"]) == 10
    features = spark.read.parquet(str(run / "features"))
    assert features.count() == 200
    assert features.schema.simpleString() == "struct<path:string,label:string,features:array<float>>"
    pca = spark.read.parquet(str(run / "pca"))
    assert pca.count() == 200
    assert {len(r.pca_features) for r in pca.collect()} == {50}
    assert spark.read.parquet(str(run / "rejected")).count() == 0
    html = _assert_report(run / "report.html", figures=9)
    assert "WEIGHTS ARE RANDOM" not in html and "SYNTHETIC" not in html
