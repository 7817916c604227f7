"""The HTML report as a reviewer opens it: offline, every figure described, in a real browser.

The browser tests open a real-data run's ``report.html`` (and, in
``tests/test_cli_and_notebook.py`` with this file's fixture, the demo run that file's
tests share) in headless
Chromium from Debian's packages (``make browser``, a prerequisite of ``make test``),
driven by Playwright from PyPI through ``executable_path`` (Playwright's own browser
download is never used). Every request that is not the file itself is aborted and
recorded; the tests assert that none was attempted, that the console stayed free of
errors, that every figure decoded with a real alt text, and that the interactive map
shows the image under the pointer. A full-page screenshot of each report is left in
the test's temporary folder.

Where Chromium or Playwright is missing these tests skip with the reason; under CI
(``CI=true``) they fail instead, like the real-data fixtures. The tests above them
check the same promises without a browser, on small hand-made notebooks.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from tests.conftest import ON_CI, copy_slice

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("FRUITS_CHROMIUM", "/usr/bin/chromium"))
PLACEHOLDER = "No description has been provided for this image"

#: Figure cells of the notebooks (both share their body): every one must reach the report.
FIGURES = 9
#: Section headings a reviewer finds in every report, the evaluation's included.
SECTIONS = ("Images per class", "Sample images", "Explained variance", "The images on the first two principal components",
            "The same map, interactive", "What looks alike to the network", "Are the features any good?",
            "Which classes are recognised worst?", "Which classes does it confuse, in pictures?", "Rejected files",
            "Timings")


# --- without a browser --------------------------------------------------------------------------

class _References(HTMLParser):
    """Every URL the page would fetch by itself: script/img/iframe/source src, stylesheet links, CSS imports."""

    def __init__(self):
        super().__init__()
        self.fetched: list[str] = []
        self.images: list[dict] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in {"script", "img", "iframe", "source", "embed", "video", "audio"} and attributes.get("src"):
            self.fetched.append(attributes["src"])
        if tag == "link" and attributes.get("href"):
            self.fetched.append(attributes["href"])
        if tag == "img":
            self.images.append(attributes)
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style and ("@import" in data or "url(http" in data or "url(//" in data):
            self.fetched.append(data.strip()[:200])

    def outside(self) -> list[str]:
        return [url for url in self.fetched if not url.startswith(("data:", "#"))]


def references(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    return parser


def figure_output(figure) -> dict:
    """The display_data output ``%matplot figure`` gives, in a local kernel as through Livy."""
    from fruits.cloud.livy.repl import execute

    answer = execute("%matplot figure", {"figure": figure})
    assert answer["status"] == "ok"
    return nbformat.v4.new_output("display_data", data={"image/png": answer["data"]["image/png"]})


def widget_output() -> dict:
    """What sparkmagic's progress bar leaves in a papermill-executed notebook."""
    return nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc123", "version_major": 2, "version_minor": 0},
        "text/plain": "FloatProgress(value=0.0, bar_style='info', description='Progress:', max=1.0)",
    })


def small_notebook(*, failed: bool = False, output_dir: str | None = None):
    from fruits.report import plots

    counts = pd.Series({"Apple Braeburn": 12, "Banana": 9, "Cherry 1": 4})
    bare = io.BytesIO()
    from matplotlib.figure import Figure

    plain = Figure(figsize=(2, 1))
    plain.savefig(bare, format="png")  # a PNG with no description: alt comes from the heading
    cells = [
        nbformat.v4.new_markdown_cell("# A run\nWhat it did."),
        nbformat.v4.new_code_cell("figure = plots.class_counts(counts)\n%matplot figure",
                                  outputs=[widget_output(), figure_output(plots.class_counts(counts))]),
        nbformat.v4.new_markdown_cell("## Timings of the run"),
        nbformat.v4.new_code_cell("display(png)", outputs=[nbformat.v4.new_output(
            "display_data", data={"image/png": base64.b64encode(bare.getvalue()).decode()})]),
        nbformat.v4.new_markdown_cell("## The images on the first two principal components"),
        nbformat.v4.new_code_cell("figure = plots.pca_map(points)\n%matplot figure", outputs=[]),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                                   "version_minor": 0}}
    notebook.metadata["papermill"] = {"exception": failed, "start_time": "2020-01-01T00:00:00",
                                      "parameters": {"output_dir": output_dir} if output_dir else {}}
    return notebook


def test_report_loads_nothing_from_outside_and_describes_every_figure(tmp_path):
    from fruits.run.notebook import render_html

    source = tmp_path / "executed.ipynb"
    nbformat.write(small_notebook(), source)
    render_html(str(source), str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    found = references(html)
    assert found.outside() == [], "the report must not fetch anything"
    assert "<title>A run</title>" in html
    for needle in ("cdnjs", "unpkg", "mathjax", "require.js", "widget-state", "FloatProgress", PLACEHOLDER):
        assert needle.lower() not in html.lower(), needle
    alts = [image.get("alt") for image in found.images]
    assert len(alts) == 2
    assert alts[0].startswith("Horizontal bar chart of images per class") and "Apple Braeburn (12 images)" in alts[0]
    assert alts[1] == "Figure: Timings of the run"  # no description in the PNG: the heading above it


def test_alt_text_travels_inside_the_png_through_livys_matplot():
    from fruits.report import plots
    from fruits.report.html import png_description

    figure = plots.timings(pd.Series({"read": 1.0, "featurize": 3.0}), images_per_second=12.5)
    output = figure_output(figure)
    assert png_description(output["data"]["image/png"]) == figure.alt
    assert "featurize 3.0 s" in figure.alt and "12.5 images per second" in figure.alt


def test_failed_or_stale_runs_get_no_sections_read_from_the_output_folder(tmp_path):
    from fruits.report.html import run_outputs

    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"created_utc": "2019-12-31T23:00:00+00:00"}))
    assert run_outputs(small_notebook(failed=True, output_dir=str(out))) is None
    assert run_outputs(small_notebook(output_dir=str(out))) is None  # written before this execution started
    (out / "manifest.json").write_text(json.dumps({"created_utc": "2020-01-01T00:05:00+00:00"}))
    assert run_outputs(small_notebook(output_dir=str(out))) == str(out)
    assert run_outputs(small_notebook(output_dir=str(tmp_path / "missing"))) is None
    run = out / "runs" / "r1"  # a run in its own folder, named by the run_id papermill was given
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"created_utc": "2020-01-01T00:05:00+00:00"}))
    notebook = small_notebook(output_dir=str(out))
    notebook.metadata["papermill"]["parameters"]["run_id"] = "r1"
    assert run_outputs(notebook) == str(run)


@pytest.fixture
def written_run(tmp_path, demo_images) -> Path:
    """An output folder as a run leaves it (pca/ and manifest.json), for the 6-class demo images."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = sorted(str(p) for p in demo_images.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    out = tmp_path / "out"
    (out / "pca").mkdir(parents=True)
    pq.write_table(pa.table({"path": paths, "label": [Path(p).parent.name for p in paths],
                             "pca_features": [rng.normal(size=4).astype("float32").tolist() for _ in paths]}),
                   out / "pca" / "part-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"created_utc": "2030-01-01T00:00:00+00:00"}))
    return out


def test_interactive_map_is_offline_and_samples_every_class(written_run):
    from fruits.report import interactive

    points = interactive.read_points(str(written_run), max_points=12)
    assert points.groupby("label").size().to_dict() == {label: 2 for label in points["label"].unique()}
    assert points["label"].nunique() == 6
    fragment = interactive.build(str(written_run), max_points=12)
    assert references(fragment).outside() == []
    assert fragment.count("data:image/jpeg;base64,") == 12
    assert f'id="{interactive.MAP_ID}"' in fragment and "Plotly.newPlot" in fragment


def test_figures_stay_readable_at_120_classes():
    from fruits.report import plots

    fruits_ = ["Apple", "Pear", "Grape", "Tomato", "Cherry", "Pepper", "Plum", "Melon Sapo"]
    colours = ["Red", "Golden", "White", "Yellow", "Black"]
    labels = [f"{fruits_[i % 8]} {colours[i // 8 % 5]} {i // 40 + 1}" for i in range(120)]
    rng = np.random.default_rng(1)
    counts = pd.Series(rng.integers(100, 170, 120), index=labels)
    figure = plots.class_counts(counts)
    assert len(figure.axes) == 3, "120 classes: three columns of 40 bars"
    assert figure.get_figheight() < 12 and figure.get_figwidth() < 16
    heights = [ax.get_yticklabels()[0].get_fontsize() for ax in figure.axes]
    assert min(heights) >= 7
    first = [tick.get_text() for tick in figure.axes[0].get_yticklabels()][0]
    assert first == counts.idxmax(), "most images first"

    centres = rng.normal(0, 5, (120, 2))
    points = pd.DataFrame([{"label": label, "pc1": x + rng.normal(), "pc2": y + rng.normal()}
                           for label, (x, y) in zip(labels, centres) for _ in range(20)])
    figure = plots.pca_map(points)
    from matplotlib.text import Text

    texts = [t for t in figure.axes[0].texts if t.get_text() in set(labels)]
    assert len(texts) == 120, "every class named at its centroid"
    assert figure.axes[0].get_legend() is None
    figure.canvas.draw()
    boxes = [Text.get_window_extent(t) for t in texts]  # the label, not its leader line
    overlapping = sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert overlapping <= 2, f"{overlapping} label pairs overlap"

    accuracy = dict(zip(labels, rng.uniform(0.5, 1.0, 120)))
    figure = plots.per_class_accuracy(accuracy)
    shown = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    assert len(shown) == 30 and shown[0] == min(accuracy, key=accuracy.get), "worst class first"
    assert "the 30 worst of 120 classes" in figure.alt


# --- in a browser ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright, closed at the end."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM}: run `make browser` (Debian's chromium package)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            reason = f"playwright is not installed ({exc}): pip install -e '.[dev]'"
    if reason:
        if ON_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def fruits(*args, env_extra=None, timeout=1500):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "fruits.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def open_offline(browser, report: Path, screenshot: Path):
    """Open ``report`` with every non-file request aborted; return the page and what it met."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    met = {"requested": [], "errors": []}

    def route(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            met["requested"].append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.on("console", lambda message: met["errors"].append(f"console: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: met["errors"].append(f"page error: {error}"))
    page.goto(report.as_uri(), wait_until="load")
    page.wait_for_load_state("networkidle")
    met["figures"] = page.eval_on_selector_all(
        ".jp-RenderedImage img", "images => images.map(i => ({alt: i.getAttribute('alt'), width: i.naturalWidth}))")
    met["images"] = page.eval_on_selector_all("img", "images => images.map(i => i.getAttribute('alt'))")
    met["headings"] = page.eval_on_selector_all("h1, h2, h3", "hs => hs.map(h => h.textContent.replace('¶', '').trim())")
    page.screenshot(path=str(screenshot), full_page=True)
    return page, met


def hover_first_point(page) -> dict:
    """Move the pointer onto the interactive map's first point; return the hover panel's image."""
    from fruits.report.interactive import HOVER_ID, MAP_ID

    point = page.locator(f"#{MAP_ID} .scatterlayer .trace .points path").first
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(f"#{HOVER_ID} img", timeout=10_000)
    page.wait_for_function(f"document.querySelector('#{HOVER_ID} img').complete")
    return page.eval_on_selector(f"#{HOVER_ID}", "panel => ({alt: panel.querySelector('img').alt, "
                                                 "width: panel.querySelector('img').naturalWidth, "
                                                 "text: panel.textContent})")


def current_run(output_dir: str) -> str:
    from fruits.storage.layout import current_run as resolve

    return resolve(output_dir)


def check_report(browser, report: Path, tmp_path: Path) -> dict:
    page, met = open_offline(browser, report, tmp_path / "report.png")
    try:
        assert met["requested"] == [], f"the report tried to fetch: {met['requested'][:5]}"
        assert met["errors"] == [], met["errors"][:5]
        assert len(met["figures"]) == FIGURES, [f["alt"][:60] for f in met["figures"]]
        for figure in met["figures"]:
            assert figure["width"] > 0, f"figure not decoded: {figure['alt'][:80]}"
            assert figure["alt"] and len(figure["alt"]) > 30 and PLACEHOLDER not in figure["alt"], figure["alt"]
            assert not figure["alt"].startswith("Figure: "), f"figure without its own description: {figure['alt']}"
        assert all(alt and PLACEHOLDER not in alt for alt in met["images"])
        for heading in SECTIONS:
            assert heading in met["headings"], f"section {heading!r} missing: {met['headings']}"
        hovered = hover_first_point(page)
        assert hovered["width"] > 0 and hovered["alt"].startswith("Image of class "), hovered
        page.screenshot(path=str(tmp_path / "hover.png"))
        met["hovered"] = hovered
        met["text"] = page.inner_text("body")
    finally:
        page.close()
    print(f"screenshots: {tmp_path / 'report.png'}, {tmp_path / 'hover.png'}")
    return met


@pytest.mark.spark
@pytest.mark.slow
def test_real_report_offline_in_chromium(browser, real_images, real_weights, tmp_path):
    """3 Fruits-360 classes x 8 images, scored by a classifier fitted on 8 training images each."""
    test = copy_slice(real_images / "Test", tmp_path / "Test", classes=3, per_class=8)
    train = copy_slice(real_images / "Training-sample", tmp_path / "Training", classes=3, per_class=8)
    out = tmp_path / "out"
    result = fruits("run", "--input", str(test), "--output", str(out), "-p", "weights", str(real_weights),
                    "-p", "k", "10", "-p", "train_path", str(train), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    run = Path(current_run(str(out)))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["evaluation"]["test_images_scored"] == 24
    met = check_report(browser, run / "report.html", tmp_path)
    assert "SYNTHETIC" not in met["text"] and "RANDOM" not in met["text"]
    assert "Apple" in met["hovered"]["alt"]
