"""Figures of the report. Each takes plain data and returns a matplotlib ``Figure``.

Figures are built without pyplot, so they work headless (papermill, tests, a Livy
driver) and nothing is shown twice. A notebook shows one with ``%matplot figure``:
Livy's Python REPL answers that magic with the PNG of ``figure.gcf()``, which sparkmagic
displays; :func:`fruits.report.display.register_matplot_magic` gives a local kernel the same
magic, so both notebooks share their cells.

Every figure carries a sentence for readers who cannot see it (``figure.alt``). Livy
returns nothing but the PNG, so the sentence travels inside it: a report figure writes
it into the PNG's ``Description`` text chunk whenever it is saved as PNG, and
:func:`fruits.run.notebook.render_html` turns that chunk into the ``<img>``'s alt text.

The figures are meant to stay readable from 3 to 120+ classes: class counts as sorted
horizontal bars in columns, class names on the PCA map's centroids instead of a legend,
the worst classes first.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Mapping

import numpy as np
import pandas as pd


#: Resolution of every figure, in Livy's ``%matplot`` (which saves with the figure's dpi) and locally.
DPI = 90

#: PNG text chunk that carries a figure's alt text through Livy to the HTML report.
ALT_TEXT_KEY = "Description"

#: Colours of the report: same-label (good) and other-label (bad) marks.
GOOD, BAD = "#2e7d32", "#c0392b"


@functools.cache
def _figure_class():
    from matplotlib.figure import Figure  # imported on first use: the library needs no matplotlib otherwise

    class ReportFigure(Figure):
        """A ``Figure`` that Livy's ``%matplot NAME`` accepts (the magic calls ``NAME.gcf()``),
        and that writes its alt text into every PNG it is saved as."""

        alt = ""

        def gcf(self):
            return self

        def savefig(self, fname, **kwargs):
            if self.alt and _saves_png(fname, kwargs.get("format")):
                kwargs["metadata"] = {ALT_TEXT_KEY: self.alt, **(kwargs.get("metadata") or {})}
            return super().savefig(fname, **kwargs)

    return ReportFigure


def _saves_png(fname, format: str | None) -> bool:
    """Whether ``savefig(fname, format=format)`` writes a PNG (matplotlib's own rules)."""
    if format:
        return format.lower() == "png"
    if isinstance(fname, (str, os.PathLike)):
        suffix = os.path.splitext(os.fspath(fname))[1].lstrip(".")
        if suffix:
            return suffix.lower() == "png"
    from matplotlib import rcParams

    return rcParams["savefig.format"] == "png"


def _figure(width: float, height: float, rows: int = 1, columns: int = 1, **kwargs):
    """A figure outside pyplot's state: nothing shows twice, nothing leaks between calls."""
    fig = _figure_class()(figsize=(width, height), dpi=DPI)
    return fig, fig.subplots(rows, columns, squeeze=False, **kwargs)


def _describe(fig, alt: str):
    fig.alt = " ".join(alt.split())
    return fig


def _suptitle(fig, *lines: str, fontsize: float = 10.5) -> None:
    """A figure title wrapped to the figure's width, so tight layout never cuts it off."""
    import textwrap

    width = int(fig.get_figwidth() * 72 / (fontsize * 0.56))
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in lines), fontsize=fontsize)


def _grid_margins(fig, *, title_inches: float, caption_inches: float) -> None:
    """Fixed margins for a grid of images: room for the figure title above and each image's caption.

    Image grids have a known shape, so they need no tight layout, which draws the whole
    figure once more only to measure it (0.25 s of a 0.75 s save for 36 images).
    """
    rows, _ = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
    width, height = fig.get_size_inches()
    cell = (height - title_inches) / rows  # each row: caption above, image below
    fig.subplots_adjust(left=0.1 / width, right=1 - 0.1 / width, bottom=0.1 / height,
                        top=1 - (title_inches + caption_inches) / height,
                        hspace=caption_inches / (cell - caption_inches), wspace=0.12)


def _bar_column_margins(fig, axes, labels_per_axis, *, fontsize: float) -> None:
    """Place columns of horizontal bars side by side, each leaving room on its left for its widest label.

    The label widths are measured with the renderer's font metrics, one call per label:
    tight layout instead draws the whole figure once more to measure it (with 131
    classes, 0.6 s of a 1.1 s save).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.font_manager import FontProperties

    renderer = FigureCanvasAgg(fig).get_renderer()
    font = FontProperties(size=fontsize)
    width, height = fig.get_size_inches()
    tick_room = 8 / 72  # tick length and pad, in inches
    label_widths = [max((renderer.get_text_width_height_descent(str(label), font, ismath=False)[0]
                         for label in labels), default=0.0) / fig.dpi + tick_room for labels in labels_per_axis]
    title = fig.get_suptitle()
    top = 0.02 * height + (title.count("\n") + 1) * 10.5 * 1.3 / 72 + 0.12 if title else 0.15
    bottom, gap, right = 0.5, 0.1, 0.15  # the x tick labels and axis label below; room between columns
    axis_width = (width - right - sum(label + gap for label in label_widths)) / len(label_widths)
    left = 0.0
    for ax, label_width in zip(axes, label_widths):
        left += gap + label_width
        ax.set_position([left / width, bottom / height, axis_width / width, 1 - (bottom + top) / height])
        left += axis_width


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _names(labels, limit: int = 3) -> str:
    labels = list(labels)
    shown = ", ".join(labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def class_counts(counts: pd.Series, *, title: str = "Images per class", rows_per_column: int = 40):
    """Images per class as horizontal bars, most first, in columns of at most ``rows_per_column`` classes.

    Parameters
    ----------
    counts : pandas.Series
        Images per class, indexed by class name.
    rows_per_column : int
        Classes per column: 120 classes make three columns of 40 readable labels.
    """
    if counts.empty:
        return message("No image was featurized.", title=title)
    ordered = counts.sort_index().sort_values(ascending=False, kind="stable")
    columns = math.ceil(len(ordered) / rows_per_column)
    per_column = math.ceil(len(ordered) / columns)
    small = len(ordered) <= 20
    fig, axes = _figure(max(7.0, 4.4 * columns), 0.2 * per_column + 1.5, 1, columns)
    top = ordered.max()
    median = float(ordered.median())
    for index, ax in enumerate(axes[0]):
        chunk = ordered.iloc[index * per_column:(index + 1) * per_column]
        positions = np.arange(len(chunk))
        ax.barh(positions, chunk.to_numpy(), color="#4c8c4a", height=0.75)
        ax.set_yticks(positions)
        ax.set_yticklabels(chunk.index, fontsize=9 if small else 7.5)
        ax.set_ylim(per_column - 0.5, -0.5)
        ax.set_xlim(0, top * 1.18)
        ax.axvline(median, color="grey", linestyle=":", linewidth=1)
        for y, value in enumerate(chunk.to_numpy()):
            ax.text(value, y, f" {value:,}", va="center", fontsize=8 if small else 6.5, in_layout=False)
        ax.set_xlabel("images")
        ax.spines[["top", "right"]].set_visible(False)
    total = int(ordered.sum())
    _suptitle(fig, f"{title}, most first: {len(ordered)} classes, {total:,} images",
              f"fewest {ordered.min():,}, median {median:g} (dotted line), most {top:,}")
    _bar_column_margins(fig, axes[0], [ordered.index[i * per_column:(i + 1) * per_column] for i in range(columns)],
                        fontsize=9 if small else 7.5)
    fewest = ordered[ordered == ordered.min()]
    most = ordered[ordered == top]
    spread = (f"every class has {_plural(int(top), 'image')}." if top == ordered.min() else
              f"most: {_names(most.index)} ({_plural(int(top), 'image')}); fewest: {_names(fewest.index)} "
              f"({ordered.min():,}); median {median:g}.")
    return _describe(fig, (
        f"Horizontal bar chart of images per class, sorted from most to fewest: {len(ordered)} classes, "
        f"{total:,} images; {spread}"
    ))


def sample_grid(samples: list[tuple[str, np.ndarray]], *, columns: int = 8):
    """Grid of sample images with their labels."""
    rows = max(1, math.ceil(len(samples) / columns))
    fig, axes = _figure(columns * 1.6, rows * 1.9, rows, columns)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, pixels) in zip(axes.flat, samples):
        ax.imshow(pixels)
        ax.set_title(_short(label, 22), fontsize=8)
    fig.suptitle("Sample images and their labels")
    _grid_margins(fig, title_inches=0.45, caption_inches=0.25)
    labels = sorted({label for label, _ in samples})
    return _describe(fig, (
        f"Grid of {len(samples)} sample images from {len(labels)} classes, each titled with its label: "
        f"{_names(labels, 8)}."
    ))


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
    reach = {share: int(np.searchsorted(cumulative, share) + 1) for share in (0.5, 0.9)
             if cumulative[-1] >= share}
    return _describe(fig, (
        f"Line chart of the cumulative explained variance against the number of principal components "
        f"(first {shown}): the run's k = {k} components keep {at_k:.1%} of the variance"
        + "".join(f"; {share:.0%} is reached at {_plural(count, 'component')}" for share, count in reach.items())
        + "."
    ))


def _palette(count: int) -> list:
    """``count`` distinguishable colours: tab20 up to 20, then a golden-ratio walk round the hue circle."""
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    golden = 0.618033988749895
    return [tuple(hsv_to_rgb(((i * golden) % 1.0, 0.75 - 0.25 * (i % 3 == 1), 0.85 - 0.3 * (i % 3 == 2))))
            for i in range(count)]


def _place_labels(anchors: np.ndarray, sizes: np.ndarray, bounds: tuple[float, float, float, float],
                  *, marker: float = 8.0, max_radius: float = 320.0) -> np.ndarray:
    """Centres (display pixels) for labels of ``sizes`` near ``anchors``, without overlaps where possible.

    Greedy: labels in the densest neighbourhoods choose first; each takes the first free
    spot on a widening spiral round its anchor (right of the point first) that overlaps
    no placed label and no anchor marker and stays inside ``bounds`` (x0, y0, x1, y1).
    A label that finds no free spot within ``max_radius`` pixels sits right of its anchor.
    """
    count = len(anchors)
    x0, y0, x1, y1 = bounds
    half = sizes / 2
    gap = 3.0
    distances = np.hypot(*(anchors[:, None, :] - anchors[None, :, :]).transpose(2, 0, 1))
    order = np.argsort(-(distances < 80).sum(axis=1), kind="stable")
    offsets = []
    for radius in np.arange(0.0, max_radius, 5.0):
        angles = np.linspace(0, 2 * np.pi, max(8, int(radius / 6)), endpoint=False)
        offsets += [(radius * np.cos(a), radius * np.sin(a)) for a in angles]
    offsets = np.array(offsets)
    placed_centres = np.empty((0, 2))
    placed_half = np.empty((0, 2))
    obstacles = np.column_stack([anchors, np.full(count, marker / 2), np.full(count, marker / 2)])
    result = np.empty_like(anchors, dtype=float)
    for index in order:
        natural = anchors[index] + [half[index, 0] + marker / 2 + 2, 0]  # right of the point
        candidates = natural + offsets
        inside = ((candidates[:, 0] - half[index, 0] >= x0) & (candidates[:, 0] + half[index, 0] <= x1)
                  & (candidates[:, 1] - half[index, 1] >= y0) & (candidates[:, 1] + half[index, 1] <= y1))
        free = inside.copy()
        for centres, halves in ((placed_centres, placed_half + gap), (obstacles[:, :2], obstacles[:, 2:])):
            if len(centres):
                dx = np.abs(candidates[:, None, 0] - centres[None, :, 0]) < half[index, 0] + halves[None, :, 0]
                dy = np.abs(candidates[:, None, 1] - centres[None, :, 1]) < half[index, 1] + halves[None, :, 1]
                free &= ~(dx & dy).any(axis=1)
        choice = int(np.argmax(free)) if free.any() else 0
        result[index] = candidates[choice]
        placed_centres = np.vstack([placed_centres, result[index]])
        placed_half = np.vstack([placed_half, half[index]])
    return result


def pca_map(points: pd.DataFrame, *, max_legend: int = 20):
    """2-D map of the first two principal components, each class's centroid named on the map.

    Parameters
    ----------
    points : pandas.DataFrame
        ``label``, ``pc1``, ``pc2`` (a bounded sample, :func:`fruits.report.explore.pca_points`).
    max_legend : int
        Up to this many classes also get a legend; beyond, the centroid labels name them.
    """
    from matplotlib import patheffects

    if points.empty:
        return message("No image to place on the map.", title="Images on the first two principal components")
    labels = sorted(points["label"].unique())
    many = len(labels) > max_legend
    fig, axes = _figure(12 if many else 9, 10 if many else 7)
    ax = axes[0, 0]
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.06, top=0.95)
    colours = dict(zip(labels, _palette(len(labels))))
    if many:  # no legend: one collection for every point draws faster than one per class
        ax.scatter(points["pc1"], points["pc2"], s=5, alpha=0.35, c=[colours[label] for label in points["label"]],
                   linewidths=0)
    else:
        for label in labels:
            subset = points[points["label"] == label]
            ax.scatter(subset["pc1"], subset["pc2"], s=8, alpha=0.6, color=colours[label], label=label, linewidths=0)
    centroids = points.groupby("label")[["pc1", "pc2"]].mean().loc[labels]
    ax.scatter(centroids["pc1"], centroids["pc2"], s=26, c=[colours[label] for label in labels],
               edgecolors="black", linewidths=0.7, zorder=3)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"Images on the first two principal components ({len(points):,} shown, {len(labels)} classes; "
                 "labels at each class's centroid)")
    ax.margins(0.04)
    ax.autoscale_view()
    if not many:
        ax.legend(fontsize=7, markerscale=2, loc="best")
    fontsize = 6.5 if many else 8
    halo = [patheffects.withStroke(linewidth=2.2, foreground="white")]
    names = [_short(label, 26) for label in labels]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # text sizes as they will be drawn
    probe = [ax.text(0, 0, name, fontsize=fontsize) for name in names]
    sizes = np.array([[box.width + 2, box.height] for box in (t.get_window_extent(renderer) for t in probe)])
    for text in probe:
        text.remove()
    anchors = ax.transData.transform(centroids.to_numpy())
    box = ax.get_window_extent(renderer)
    placed = _place_labels(anchors, sizes, (box.x0, box.y0, box.x1, box.y1))
    inverse = ax.transData.inverted()
    leaders = []
    for name, anchor, centre, size in zip(names, anchors, placed, sizes):
        ax.text(*inverse.transform(centre), name, ha="center", va="center", fontsize=fontsize, path_effects=halo,
                zorder=4)
        if np.hypot(*(centre - anchor - [size[0] / 2 + 6, 0])) > 3:  # moved away from its centroid
            leader = _leader(anchor, centre, size, shrink=2 * fig.dpi / 72)
            if leader is not None:
                leaders.append(inverse.transform(leader))
    if leaders:
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(leaders, colors="grey", linewidths=0.5, zorder=3.9), autolim=False)
    spread = centroids.assign(distance=np.hypot(centroids["pc1"] - points["pc1"].mean(),
                                                centroids["pc2"] - points["pc2"].mean()))
    outliers = spread.sort_values("distance", ascending=False).index[:3]
    return _describe(fig, (
        f"Scatter plot of {len(points):,} images on the first two principal components, coloured by class, "
        f"with the centroid of each of the {len(labels)} classes marked and labelled. Classes whose centroids lie "
        f"farthest from the centre: {_names(outliers)}."
    ))


def _leader(anchor, centre, size, *, shrink: float):
    """The line from a label's box (``size`` around ``centre``) to its ``anchor``, stopping
    ``shrink`` short of it, in display units; ``None`` when the anchor is under the label.

    One collection of such lines draws in a fraction of the time of an arrow per label
    (matplotlib recomputes each arrow's path at every draw: 0.55 s for 131 classes).

    Examples
    --------
    >>> _leader(np.array([100.0, 0.0]), np.array([0.0, 0.0]), np.array([40.0, 10.0]), shrink=2).tolist()
    [[20.0, 0.0], [98.0, 0.0]]
    """
    direction = np.asarray(anchor, dtype=float) - np.asarray(centre, dtype=float)
    length = float(np.hypot(*direction))
    with np.errstate(divide="ignore"):
        exit_at = float(np.min(np.asarray(size, dtype=float) / 2 / np.abs(direction)))  # where the line leaves the box
    if exit_at >= 1 or length * (1 - exit_at) <= shrink:
        return None
    return np.array([centre + exit_at * direction, anchor - direction / length * shrink])


def _short(text: str, length: int) -> str:
    """``text`` cut to ``length`` characters in the middle, so "... Red 2" and "... Red 3" stay apart."""
    if len(text) <= length:
        return text
    tail = max(3, length // 3)
    return text[:length - tail - 1] + "…" + text[-tail:]


def _image_axes(ax, pixels, *, title: str, colour: str = "black", frame: str | None = None):
    ax.imshow(pixels)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_color(frame)
            spine.set_linewidth(2.5)
    ax.set_title(title, fontsize=7.5, color=colour)


def nearest_neighbours(frame: pd.DataFrame):
    """For each query image, its nearest neighbours in PCA space, labelled and with distances.

    Parameters
    ----------
    frame : pandas.DataFrame
        ``query``, ``rank`` (0 = the query itself), ``label``, ``distance``, ``pixels``
        (:func:`fruits.report.explore.nearest_neighbours`).
    """
    title = "What looks alike to the network: nearest neighbours in PCA space"
    if frame.empty:
        return message("No image to search.", title=title)
    queries = sorted(frame["query"].unique())
    columns = int(frame["rank"].max()) + 1
    fig, axes = _figure(1.75 * columns + 0.3, 2.3 * len(queries) + 0.6, len(queries), columns)
    for ax in axes.flat:
        ax.axis("off")
    same = total = 0
    for row, query in zip(axes, queries):
        images = frame[frame["query"] == query].sort_values("rank")
        query_label = images.iloc[0]["label"]
        for ax, image in zip(row, images.itertuples()):
            ax.axis("on")
            if image.rank == 0:
                _image_axes(ax, image.pixels, title=f"QUERY\n{_short(image.label, 22)}", frame="#1f5f8b")
                continue
            match = image.label == query_label
            same += match
            total += 1
            _image_axes(ax, image.pixels, title=f"{_short(image.label, 22)}\nd = {image.distance:.3g}",
                        colour=GOOD if match else BAD)
    _suptitle(fig, title, "green: same label as the query, red: another label; d = Euclidean distance")
    _grid_margins(fig, title_inches=0.75, caption_inches=0.4)
    return _describe(fig, (
        f"Grid of {len(queries)} query images, each followed by its {columns - 1} nearest neighbours in PCA space "
        f"with their labels and distances: {same} of {total} neighbours share the query's label. Queries: "
        f"{_names([frame[(frame['query'] == q) & (frame['rank'] == 0)].iloc[0]['label'] for q in queries], 8)}."
    ))


def per_class_accuracy(accuracy: Mapping[str, float], *, worst: int = 30, title: str | None = None):
    """Per-class accuracy as horizontal bars, worst class at the top; at most ``worst`` classes drawn."""
    from matplotlib.ticker import PercentFormatter

    title = title or "Per-class accuracy, worst first"
    if not accuracy:
        return message("No class was scored.", title=title)
    ordered = pd.Series(accuracy, dtype=float).sort_index().sort_values(kind="stable")
    shown = ordered.head(worst)
    fig, axes = _figure(8, 0.24 * len(shown) + 1.6)
    ax = axes[0, 0]
    positions = np.arange(len(shown))
    colours = [BAD if value < 0.8 else "#e6a117" if value < 0.95 else GOOD for value in shown]
    ax.barh(positions, shown.to_numpy(), color=colours, height=0.75)
    ax.set_yticks(positions)
    ax.set_yticklabels(shown.index, fontsize=8)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlim(0, 1.12)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("share of the class's images predicted correctly")
    for y, value in enumerate(shown.to_numpy()):
        ax.text(value, y, f" {value:.0%}", va="center", fontsize=7.5)
    ax.spines[["top", "right"]].set_visible(False)
    rest = ordered.iloc[len(shown):]
    tied = int((ordered == ordered.iloc[0]).sum())
    if rest.empty:
        subtitle = f"all {len(ordered)} scored classes"
    elif tied > len(shown):
        subtitle = (f"{tied} of {len(ordered)} classes score {ordered.iloc[0]:.0%}: the first {len(shown)} "
                    "by name are shown")
    else:
        subtitle = (f"the {len(shown)} worst of {len(ordered)} classes; the other {len(rest)} score "
                    f"{rest.min():.0%} or more")
    ax.set_title(f"{title}\n({subtitle}; red < 80 %, orange < 95 %)", fontsize=10)
    fig.set_layout_engine("tight")
    perfect = int((ordered >= 1.0).sum())
    return _describe(fig, (
        f"Horizontal bar chart of per-class accuracy, worst class first, {subtitle}. Worst: "
        + ", ".join(f"{label} {value:.0%}" for label, value in ordered.head(3).items())
        + f". {perfect} of {len(ordered)} classes are recognised perfectly."
    ))


def confused_pairs(examples: pd.DataFrame, *, title: str = "Most confused class pairs, in pictures"):
    """For each confused pair, images of the true class taken for the other, then images of the other class.

    Parameters
    ----------
    examples : pandas.DataFrame
        ``pair``, ``true``, ``predicted``, ``count``, ``role`` (``"mistaken"``: an image of
        ``true`` predicted as ``predicted``; ``"other"``: an image of ``predicted``), ``pixels``
        (:func:`fruits.report.explore.confused_examples`).
    """
    if examples.empty:
        return message("No image was confused with another class.", title=title)
    pairs = sorted(examples["pair"].unique())
    mistaken = examples[examples["role"] == "mistaken"].groupby("pair").size()
    other = examples[examples["role"] == "other"].groupby("pair").size()
    left = int(mistaken.max()) if len(mistaken) else 0
    right = int(other.max()) if len(other) else 0
    columns = max(1, left + right)
    fig, axes = _figure(1.6 * columns + 0.4, 2.3 * len(pairs) + 0.7, len(pairs), columns)
    for ax in axes.flat:
        ax.axis("off")
    for row, pair in zip(axes, pairs):
        images = examples[examples["pair"] == pair]
        first = images.iloc[0]
        for ax, image in zip(row[:left], images[images["role"] == "mistaken"].itertuples()):
            ax.axis("on")
            _image_axes(ax, image.pixels, title=f"{_short(image.true, 20)}\ntaken for {_short(image.predicted, 16)}",
                        colour=BAD, frame=BAD)
        for ax, image in zip(row[left:], images[images["role"] == "other"].itertuples()):
            ax.axis("on")
            _image_axes(ax, image.pixels, title=f"{_short(image.predicted, 20)}\n(recognised)", colour="#333333")
        row[0].text(-0.08, 0.5, f"#{pair + 1}: {first['count']}×", transform=row[0].transAxes, rotation=90,
                    ha="right", va="center", fontsize=9, fontweight="bold")
    _suptitle(fig, title, "left, red: images of the true class that the classifier took for the other class; "
              "right: images of that other class, recognised correctly; N× = images confused")
    fig.set_layout_engine("tight")
    described = examples.drop_duplicates("pair").sort_values("pair")
    return _describe(fig, (
        f"Grid of the {len(pairs)} most confused class pairs: each row shows images of one class that the "
        "classifier took for another, next to images of that other class. Pairs: "
        + "; ".join(f"{r.true} taken for {r.predicted} ({_plural(int(r.count), 'image')})"
                   for r in described.itertuples())
        + "."
    ))


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
    longest = seconds.idxmax() if len(seconds) else "-"
    return _describe(fig, (
        f"Horizontal bar chart of seconds per stage: {', '.join(f'{k} {v:.1f} s' for k, v in seconds.items())}; "
        f"total {seconds.sum():.1f} s, the longest stage is {longest}"
        + (f"; featurization ran at {images_per_second:.1f} images per second." if images_per_second else ".")
    ))


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
    return _describe(fig, (
        "Line chart of classifier accuracy and cumulative explained variance against the number of PCA "
        "components: " + ", ".join(f"k = {kk}: {row.accuracy:.1%}" for kk, row in sweep.iterrows())
        + f"; the run kept k = {k}."
    ))


def message(text: str, *, title: str):
    """A figure that only says ``text``: what a figure cell shows when there is nothing to draw."""
    fig, axes = _figure(8, 1.6)
    ax = axes[0, 0]
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, style="italic")
    return _describe(fig, f"{title}: {text}")
