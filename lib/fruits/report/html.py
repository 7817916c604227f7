"""Turn an executed notebook into the HTML report a reviewer opens: offline, described, complete.

:func:`fruits.run.notebook.render_html` calls :func:`render` after papermill, on the machine
that ran the notebook (``fruits run``, ``fruits run --livy``, an EMR step). It

- renders with nbconvert's ``lab`` template minus everything that loads from the
  network: require.js and MathJax (from cdnjs), mermaid (from cdnjs) and the Jupyter
  widgets manager (from unpkg) are left out, so the file makes no request;
- drops widget outputs (sparkmagic's progress bars) and noisy start-up log lines;
- gives every figure its alt text: the sentence the figure wrote into its PNG
  (:data:`fruits.report.plots.ALT_TEXT_KEY`, which survives Livy), else the heading above it;
- adds what a kernel behind Livy cannot send back: an interactive PCA map with hover
  thumbnails (:mod:`fruits.report.interactive`), read from the run's written outputs, only when
  the notebook succeeded and the outputs were written by this execution.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import re

from fruits.report.early_map import build_map
from fruits.storage import location
from fruits.storage.layout import NoRunError, OutputLayout, current_run, run_layout

log = logging.getLogger(__name__)

#: Outputs a static report cannot show: interactive widgets (sparkmagic's progress bar).
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

#: What nbconvert writes when an image has no alt text; never in our reports.
NBCONVERT_PLACEHOLDER = "No description has been provided for this image"

#: Start-up chatter of TensorFlow, absl and Hadoop that says nothing about the run;
#: dropped from the HTML report only (the executed notebook keeps every line).
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|I0000 .*oneDNN custom operations"
    r"|.*WARN NativeCodeLoader: Unable to load native-hadoop|Setting default log level to"
    r"|To adjust logging level use sc.setLogLevel|WARNING: Using incubator modules"
    r"|\[IPKernelApp\] WARNING \| Kernel is running over TCP)"
)

#: Code cells whose figure the interactive map follows.
MAP_ANCHOR = "plots.pca_map("

_PLACEHOLDER = "<!-- fruits:interactive-map -->"

#: nbconvert's lab template without a single outside request (see the module docstring).
TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_widget_view -%}{%- endblock data_widget_view -%}
{%- block extra_css -%}
<style type="text/css">
body.jp-Notebook { max-width: 1400px; margin: 0 auto; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
</style>
{%- endblock extra_css -%}
{% block data_png scoped %}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
alt="{{ ((output | get_metadata('alt', 'image/png')) or 'Figure') | escape_html }}">
</div>
{% endblock data_png %}
"""


def png_description(data: str) -> str | None:
    """The alt text a report figure wrote into its PNG (base64 as in a notebook), if any."""
    from PIL import Image

    from fruits.report.plots import ALT_TEXT_KEY

    try:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
    except (ValueError, OSError):
        return None
    text = getattr(image, "text", None) or image.info
    value = text.get(ALT_TEXT_KEY)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _heading(source: str) -> str | None:
    headings = [line.lstrip("#").strip() for line in source.splitlines() if line.startswith("#")]
    return headings[-1] if headings else None


def add_alt_text(notebook) -> int:
    """Set ``alt`` on every PNG output: its own description, else "Figure: <heading above it>".

    Returns the number of figures that fell back to the heading.
    """
    heading, fallbacks = "the run", 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            heading = _heading(cell.source) or heading
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            metadata = output.setdefault("metadata", {}).setdefault("image/png", {})
            if metadata.get("alt"):
                continue
            described = png_description(data["image/png"])
            if described is None:
                fallbacks += 1
                described = f"Figure: {heading}"
            metadata["alt"] = described
    return fallbacks


def strip_widgets(notebook) -> None:
    """Remove widget outputs (their text fallback is a repr, not a result) and the widget state."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if WIDGET_MIME not in o.get("data", {})]


def run_outputs(notebook) -> str | None:
    """The folder of the run this execution wrote, or ``None`` when it must not be read.

    The run's folder is ``OUTPUT/runs/<run_id>`` when papermill was given a ``run_id``
    (``fruits run`` always is), else the output's current run. ``None`` when papermill
    recorded an exception, the notebook has no ``output_dir`` parameter, or the run's
    manifest predates this execution (a previous run's outputs).
    """
    papermill = notebook.metadata.get("papermill", {})
    parameters = papermill.get("parameters", {})
    output_dir = parameters.get("output_dir")
    if papermill.get("exception") or not output_dir:
        return None
    try:
        run = (run_layout(output_dir, parameters["run_id"]).root if parameters.get("run_id")
               else current_run(output_dir))
        manifest = location.read_json(OutputLayout(run).manifest)
    except (NoRunError, OSError, ValueError) as exc:
        log.warning("report: no run's manifest under %s (%s); run sections left out", output_dir, exc)
        return None
    started = _utc(papermill.get("start_time"))
    created = _utc(manifest.get("created_utc"))
    if started and created and created < started - dt.timedelta(seconds=2):
        log.warning("report: %s holds an older run (%s, this one started %s); run sections left out",
                    run, created, started)
        return None
    return run


def _utc(text) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def add_interactive_map(notebook, output_dir: str, build=None) -> str | None:
    """Insert the interactive map's section after the static PCA map; return its HTML.

    The HTML (megabytes of inlined plotly) is not put through nbconvert: a placeholder
    output marks its place and :func:`render` substitutes it into the finished page.
    ``build(output_dir)`` makes the map (default: :func:`fruits.report.early_map.build_map`,
    built now; the CLI passes its :class:`~fruits.report.early_map.EarlyMap`'s).
    """
    import nbformat

    try:
        fragment = (build or build_map)(output_dir)
    except ImportError as exc:
        fragment = f"<p><em>The interactive map needs plotly ({exc}).</em></p>"
    except Exception as exc:  # noqa: BLE001 - an optional section must never cost the report
        log.warning("report: interactive map left out: %s", exc, exc_info=True)
        fragment = f"<p><em>The interactive map could not be built: {type(exc).__name__}: {exc}</em></p>"
    position = next((i + 1 for i, cell in enumerate(notebook.cells)
                     if cell.cell_type == "code" and MAP_ANCHOR in cell.source), len(notebook.cells))
    heading = nbformat.v4.new_markdown_cell(
        "### The same map, interactive\n"
        "Added when this report was rendered, from the run's outputs: the same number of images per class. "
        "Hover a point to see its image, label and path; click a class in the legend to hide or show it, "
        "double-click to show it alone; drag to zoom, double-click the map to zoom out."
    )
    holder = nbformat.v4.new_code_cell("")
    holder.outputs = [nbformat.v4.new_output("display_data", data={"text/html": _PLACEHOLDER})]
    notebook.cells[position:position] = [heading, holder]
    return fragment


def exporter():
    """nbconvert's HTML exporter with :data:`TEMPLATE`: code hidden, nothing loaded from outside."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab", extra_loaders=[DictLoader({"fruits-report.html.j2": TEMPLATE})],
        template_file="fruits-report.html.j2", exclude_input=True, exclude_input_prompt=True,
        exclude_output_prompt=True,
    )


def render(notebook, *, interactive: bool = True, map_builder=None) -> str:
    """The report's HTML for an executed notebook (modified in place).

    ``map_builder(run_folder)`` returns the interactive map's HTML when the report has
    one (see :func:`add_interactive_map`).
    """

    strip_noise(notebook)
    strip_widgets(notebook)
    title = next((_heading(cell.source) for cell in notebook.cells
                  if cell.cell_type == "markdown" and _heading(cell.source)), None)
    if title and "title" not in notebook.metadata:
        notebook.metadata["title"] = title  # the page's <title>, instead of nbconvert's "Notebook"
    fragment = None
    output_dir = run_outputs(notebook) if interactive else None
    if output_dir is not None:
        fragment = add_interactive_map(notebook, output_dir, map_builder)
    add_alt_text(notebook)
    body, _ = exporter().from_notebook_node(notebook)
    if fragment is not None:
        body = body.replace(_PLACEHOLDER, fragment, 1)
    return body


def strip_noise(notebook) -> None:
    """Remove :data:`NOISE` lines from stderr outputs, and outputs left empty."""
    for cell in notebook.cells:
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = [line for line in output["text"].splitlines(keepends=True) if not NOISE.match(line)]
                if not "".join(lines).strip():
                    continue
                output["text"] = "".join(lines)
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
