"""Figures of the report. Each takes plain data and returns a matplotlib ``Figure``.

Figures are built without pyplot, so they work headless (papermill, tests, a Livy
driver) and nothing is shown twice. A notebook shows one with ``%matplot figure``:
Livy's Python REPL answers that magic with the PNG of ``figure.gcf()``, which sparkmagic
displays; :func:`fruits.report.register_matplot_magic` gives a local kernel the same
magic, so both notebooks share their cells.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd


#: Resolution of every figure, in Livy's ``%matplot`` (which saves with the figure's dpi) and locally.
DPI = 90


@functools.cache
def _figure_class():
    from matplotlib.figure import Figure  # imported on first use: the library needs no matplotlib otherwise

    class ReportFigure(Figure):
        """A ``Figure`` that Livy's ``%matplot NAME`` accepts: the magic calls ``NAME.gcf()``."""

        def gcf(self):
            return self

    return ReportFigure


def _figure(width: float, height: float, rows: int = 1, columns: int = 1):
    """A figure outside pyplot's state: nothing shows twice, nothing leaks between calls."""
    fig = _figure_class()(figsize=(width, height), dpi=DPI)
    return fig, fig.subplots(rows, columns, squeeze=False)


def class_counts(counts: pd.Series, *, title: str = "Images per class"):
    """Bar chart of images per class; widens with the number of classes."""
    width = max(6.0, min(24.0, 0.18 * len(counts) + 2))
    fig, axes = _figure(width, 4.5)
    ax = axes[0, 0]
    ax.bar(range(len(counts)), counts.to_numpy(), color="#4c8c4a")
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(counts.index, rotation=90, fontsize=7 if len(counts) > 30 else 9)
    ax.set_ylabel("images")
    ax.set_title(f"{title} ({len(counts)} classes, {int(counts.sum())} images)")
    fig.set_layout_engine("tight")
    return fig


def sample_grid(samples: list[tuple[str, np.ndarray]], *, columns: int = 8):
    """Grid of sample images with their labels."""
    rows = max(1, math.ceil(len(samples) / columns))
    fig, axes = _figure(columns * 1.6, rows * 1.9, rows, columns)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, pixels) in zip(axes.flat, samples):
        ax.imshow(pixels)
        ax.set_title(label, fontsize=8)
    fig.suptitle("Sample images and their labels")
    fig.set_layout_engine("tight")
    return fig


def variance_curve(spectrum: list[float], k: int, *, variance_target: float | None = None):
    """Cumulative explained variance over the number of components, with k marked."""
    cumulative = np.cumsum(spectrum)
    shown = min(len(cumulative), max(200, 2 * k))
    fig, axes = _figure(8, 4.5)
    ax = axes[0, 0]
    components = np.arange(1, shown + 1)
    ax.plot(components, cumulative[:shown], color="#1f5f8b")
    ax.axvline(k, color="#c0392b", linestyle="--")
    at_k = cumulative[k - 1]
    ax.scatter([k], [at_k], color="#c0392b", zorder=3)
    ax.annotate(f"k = {k}: {at_k:.1%}", (k, at_k), xytext=(10, -20), textcoords="offset points")
    if variance_target is not None:
        ax.axhline(variance_target, color="grey", linestyle=":", label=f"target {variance_target:.0%}")
        ax.legend(loc="lower right")
    ax.set_xlabel("number of principal components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.02)
    ax.set_title("Explained variance of the PCA")
    fig.set_layout_engine("tight")
    return fig


def pca_map(points: pd.DataFrame, *, max_legend: int = 20):
    """2-D map of the first two principal components, one colour per class."""
    from matplotlib import colormaps

    fig, axes = _figure(9, 7)
    ax = axes[0, 0]
    labels = sorted(points["label"].unique())
    cmap = colormaps["tab20" if len(labels) <= 20 else "gist_ncar"]
    for index, label in enumerate(labels):
        subset = points[points["label"] == label]
        colour = cmap(index % 20 if len(labels) <= 20 else index / max(1, len(labels) - 1))
        ax.scatter(subset["pc1"], subset["pc2"], s=6, alpha=0.7, color=colour, label=label)
    if len(labels) <= max_legend:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"Images on the first two principal components ({len(points)} shown, {len(labels)} classes)")
    fig.set_layout_engine("tight")
    return fig


def timings(seconds: pd.Series, *, images_per_second: float | None = None):
    """Horizontal bars of seconds per stage."""
    fig, axes = _figure(7, 0.5 * len(seconds) + 1.2)
    ax = axes[0, 0]
    ax.barh(seconds.index, seconds.to_numpy(), color="#8e6c8a")
    for y, value in enumerate(seconds.to_numpy()):
        ax.text(value, y, f" {value:.1f} s", va="center")
    title = f"Seconds per stage (total {seconds.sum():.1f} s)"
    if images_per_second:
        title += f", featurization {images_per_second:.1f} images/s"
    ax.set_title(title)
    ax.set_xlabel("seconds")
    ax.invert_yaxis()
    fig.set_layout_engine("tight")
    return fig


def accuracy_by_k(sweep: pd.DataFrame, k: int):
    """Classifier accuracy and cumulative explained variance against the number of components."""
    fig, axes = _figure(8, 4.5)
    ax = axes[0, 0]
    ks = sweep.index.to_numpy()
    ax.plot(ks, sweep["accuracy"], marker="o", color="#1f5f8b", label="accuracy (test)")
    ax.plot(ks, sweep["cumulative_variance"], marker="s", color="#8e6c8a", label="cumulative variance")
    ax.axvline(k, color="#c0392b", linestyle="--", label=f"run's k = {k}")
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(v) for v in ks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("PCA components (1280 = all features)")
    ax.set_title("Does a smaller representation still recognise fruits?")
    ax.legend(loc="lower right")
    fig.set_layout_engine("tight")
    return fig


def message(text: str, *, title: str):
    """A figure that only says ``text``: what a figure cell shows when there is nothing to draw."""
    fig, axes = _figure(8, 1.6)
    ax = axes[0, 0]
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, style="italic")
    return fig
