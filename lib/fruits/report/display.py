"""What the notebooks call to show a run: warnings, tables, the evaluation and its figures.

Every helper works in both kernels the notebooks run in: a local IPython kernel (rich
display: HTML, styled tables, PNG) and Livy's remote Python REPL behind sparkmagic, which
sends back only text and PNG (so each falls back to plain text there). Figures themselves
are built by :mod:`fruits.report.plots` from the bounded views of :mod:`fruits.report.explore`.
"""

from __future__ import annotations

import html
import io
from typing import Any, Mapping


def in_kernel() -> bool:
    """True inside an IPython kernel (Jupyter, papermill); False in Livy's remote interpreter."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _show(rich, text: str) -> None:
    """Display ``rich`` in a kernel; print ``text`` where only text comes back (Livy)."""
    if in_kernel():
        from IPython.display import display

        display(rich)
    else:
        print(text)


def show_banners(banners: list[str]) -> None:
    """Display each warning as a red box; plain-text consoles (papermill's log) get ``WARNING:`` lines."""
    if not in_kernel():
        for banner in banners:
            print(f"WARNING: {banner}")
        return
    from IPython.display import display

    for banner in banners:
        display({
            "text/plain": f"WARNING: {banner}",
            "text/html": '<div style="border:3px solid #c0392b;background:#fdecea;padding:10px;'
                         f'font-weight:bold;font-size:1.1em">&#9888; {html.escape(banner)}</div>',
        }, raw=True)


def register_matplot_magic() -> None:
    """Give a local IPython kernel Livy's ``%matplot NAME`` magic; do nothing elsewhere.

    In the PySpark (Livy) kernel a cell ending in ``%matplot figure`` is sent to Livy,
    whose Python REPL answers with the PNG of ``figure.gcf()`` and sparkmagic displays it.
    Registered here, the same line draws the same PNG in a local kernel, so the local and
    cloud notebooks keep one body. In Livy's REPL (no IPython kernel) this is a no-op.
    """
    if not in_kernel():
        return
    from IPython import get_ipython
    from IPython.display import Image, display

    shell = get_ipython()

    def matplot(line: str) -> None:
        """%matplot NAME: display NAME.gcf() as a PNG, as Livy's REPL does."""
        figure = shell.user_ns[line.strip()].gcf()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        display(Image(data=buffer.getvalue(), format="png"))

    shell.register_magic_function(matplot, "line", "matplot")


def show_markdown(text: str) -> None:
    """Display Markdown in a kernel; print it as is where only text comes back (Livy)."""
    if in_kernel():
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)


def show_table(frame, *, empty: str = "(no rows)") -> None:
    """Display a table (as text where Livy returns only text), or the sentence ``empty`` when it has no rows."""
    if len(frame):
        _show(frame, frame.to_string(max_colwidth=120))
    else:
        show_markdown(f"*{empty}*")


def show_evaluation(manifest: Mapping[str, Any]) -> None:
    """Classifier scores, the k sweep and the confused pairs as tables (figures: :func:`evaluation_figure`,
    :func:`per_class_figure`, :func:`confusion_figure`)."""
    from fruits.analysis.evaluate import sweep_frame

    say = show_markdown

    evaluation = manifest.get("evaluation")
    if not evaluation:
        say("*No evaluation in this run: set `train_path` to a labelled training set "
            "(class sub-folders) to score the features with a classifier.*")
        return
    say((
        f"Logistic regression fitted on the PCA features of **{evaluation['train_images']}** training "
        f"images ({evaluation['train_path']}), scored on **{evaluation['test_images_scored']}** images of "
        f"this run over **{evaluation['classes_scored']}** classes: accuracy "
        f"**{evaluation['accuracy']:.2%}**, macro-F1 **{evaluation['macro_f1']:.3f}** at k = {evaluation['k']}."
    ))
    if evaluation["test_only_classes"] or evaluation["train_only_classes"]:
        say((
            f"Not scored: {len(evaluation['test_only_classes'])} classes of this run absent from the "
            f"training set ({evaluation['test_images_not_scored']} images: "
            f"{', '.join(evaluation['test_only_classes']) or '-'}); "
            f"{len(evaluation['train_only_classes'])} training classes absent here "
            f"({', '.join(evaluation['train_only_classes']) or '-'})."
        ))
    if manifest.get("weights", {}).get("random"):
        say("**The features come from a network with RANDOM weights: these scores say how well random "
            "convolutions separate these images, not how good MobileNetV2's features are.**")
    sweep = sweep_frame(evaluation)
    _show(sweep.style.format({"cumulative_variance": "{:.3f}", "accuracy": "{:.2%}", "macro_f1": "{:.3f}"}),
          sweep.to_string())
    import pandas as pd

    pairs = pd.DataFrame(evaluation["most_confused"])
    show_table(pairs, empty="No image was confused with another class.")


def evaluation_figure(manifest: Mapping[str, Any]):
    """Accuracy and variance against k, or a figure saying that the run has no evaluation."""
    from fruits.report import plots
    from fruits.analysis.evaluate import sweep_frame

    evaluation = manifest.get("evaluation")
    if not evaluation:
        return plots.message("No evaluation in this run: set train_path to score the features.",
                             title="Does a smaller representation still recognise fruits?")
    return plots.accuracy_by_k(sweep_frame(evaluation), evaluation["k"])


def per_class_figure(manifest: Mapping[str, Any]):
    """Per-class accuracy, worst first, or a figure saying that the run has no evaluation."""
    from fruits.report import plots

    evaluation = manifest.get("evaluation")
    title = "Per-class accuracy, worst first"
    if not evaluation:
        return plots.message("No evaluation in this run: set train_path to score the features.", title=title)
    return plots.per_class_accuracy(evaluation["per_class_accuracy"], title=title)


def confusion_figure(spark, layout, manifest: Mapping[str, Any]):
    """The most confused class pairs with images of each, or a figure saying why there are none."""
    from fruits.report import explore, plots

    title = "Most confused class pairs, in pictures"
    if not manifest.get("evaluation"):
        return plots.message("No evaluation in this run: set train_path to score the features.", title=title)
    return plots.confused_pairs(explore.confused_examples(spark, layout, manifest), title=title)


def summary_table(manifest: Mapping[str, Any]):
    """The run's key figures as a two-column table."""
    import pandas as pd

    counts = manifest["counts"]
    rows = {
        "input": manifest["input_path"],
        "output": manifest["output_dir"],
        "weights": f"{manifest['weights']['source']} (sha256 {manifest['weights']['sha256'][:12]}...)"
        + (" — RANDOM" if manifest["weights"]["random"] else ""),
        "mode": manifest.get("mode", "-"),
        "files given": counts["input"],
        "featurized": counts["featurized"],
        "featurized by this run": counts.get("featurized_this_run", counts["featurized"]),
        "carried over from the previous run": manifest.get("incremental", {}).get("carried_over", 0),
        "rejected": counts["rejected"],
        "classes": len(manifest["classes"]),
        "engine": f"{manifest['engine']['name']} at {manifest['engine']['input_size']}x{manifest['engine']['input_size']}",
        "PCA components (k)": f"{manifest['k']} ({manifest.get('pca_fit', 'refit')})",
        "cumulative variance at k": f"{manifest['cumulative_variance_at_k']:.4f}",
        "featurization speed": f"{manifest['images_per_second']} images/s",
        "total seconds": manifest["seconds"]["total"],
        "Spark": f"{manifest['spark']['version']} on {manifest['spark']['master']}",
    }
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows))
