"""Small, bounded pandas views of a run's outputs, for the notebooks' figures and tables.

Every function reads the written outputs (not in-memory state), so the same calls
serve a run that just finished and one re-opened later, locally or on EMR, and
each collects at most a bounded number of rows to the driver.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from fruits.layout import OutputLayout
from fruits.listing import Listing


def class_counts(spark, layout: OutputLayout) -> pd.Series:
    """Featurized images per class, sorted by class name."""
    counts = spark.read.parquet(layout.features).groupBy("label").count().toPandas()
    return counts.set_index("label")["count"].sort_index()


def pca_points(spark, layout: OutputLayout, *, max_points: int = 5000, seed: int = 0) -> pd.DataFrame:
    """First two PCA coordinates and label of at most ``max_points`` images."""
    from pyspark.sql import functions as F

    pca = spark.read.parquet(layout.pca)
    total = pca.count()
    if total > max_points:
        pca = pca.sample(fraction=min(1.0, 1.2 * max_points / total), seed=seed).limit(max_points)
    rows = pca.select(
        "label",
        F.element_at("pca_features", 1).alias("pc1"),
        F.element_at("pca_features", 2).alias("pc2"),
    )
    return rows.toPandas()


def rejected(spark, layout: OutputLayout, *, limit: int = 50) -> pd.DataFrame:
    """Up to ``limit`` rejected files with their reasons, ordered by path."""
    return spark.read.parquet(layout.rejected).orderBy("path").limit(limit).toPandas()


def sample_images(listing: Listing, *, count: int = 16, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Read ``count`` images spread over classes, on the driver, as ``(label, RGB array)``.

    One image per class in turn (classes in random order), so the grid shows variety.
    Unreadable files are skipped here: the pipeline itself records them.
    """
    import fsspec

    from fruits.preprocess import ImageDecodeError, load_rgb

    rng = random.Random(seed)
    by_label: dict[str, list] = {}
    for image in listing.images:
        by_label.setdefault(image.label, []).append(image)
    labels = list(by_label)
    rng.shuffle(labels)
    picked: list[tuple[str, np.ndarray]] = []
    round_index = 0
    while len(picked) < count and any(len(by_label[label]) > round_index for label in labels):
        for label in labels:
            files = by_label[label]
            if len(picked) >= count or round_index >= len(files):
                continue
            image = files[rng.randrange(len(files))] if round_index == 0 else files[round_index]
            try:
                with fsspec.open(image.path, "rb") as handle:
                    picked.append((label, np.asarray(load_rgb(handle.read()))))
            except (ImageDecodeError, OSError):
                continue
        round_index += 1
    return picked


def timings(manifest: dict) -> pd.Series:
    """Seconds per stage from a manifest, without the total."""
    seconds = dict(manifest["seconds"])
    seconds.pop("total", None)
    return pd.Series(seconds, name="seconds")
