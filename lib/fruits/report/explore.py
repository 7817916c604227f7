"""Small, bounded pandas views of a run's outputs, for the notebooks' figures and tables.

Every function reads the written outputs (not in-memory state), so the same calls
serve a run that just finished and one re-opened later, locally or on EMR, and
each collects at most a bounded number of rows to the driver.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from fruits.analysis.pca import PCA_VECTOR_COL
from fruits.featurize.preprocess import ImageDecodeError, load_rgb
from fruits.storage import location
from fruits.storage.layout import OutputLayout


def class_counts(spark, layout: OutputLayout) -> pd.Series:
    """Featurized images per class, sorted by class name.

    The run's write step counts them while it checks the totals (``featurized_by_class`` in
    its manifest); a run written before it did is counted here, in Spark.
    """
    recorded = location.read_json(layout.manifest).get("featurized_by_class")
    if recorded is not None:
        return pd.Series(recorded, dtype="int64", name="count").rename_axis("label").sort_index()
    counts = spark.read.parquet(layout.features).groupBy("label").count().toPandas()
    return counts.set_index("label")["count"].sort_index()


def pca_points(spark, layout: OutputLayout, *, max_points: int = 5000, seed: int = 0) -> pd.DataFrame:
    """First two PCA coordinates and label of at most ``max_points`` images."""
    from pyspark.sql import functions as F

    # One job: every row gets a seeded random key and the max_points smallest are kept
    # (a uniform sample without replacement; all rows when there are fewer).
    rows = (spark.read.parquet(layout.pca)
            .select("label", F.element_at("pca_features", 1).alias("pc1"),
                    F.element_at("pca_features", 2).alias("pc2"), F.rand(seed).alias("_key"))
            .orderBy("_key").limit(max_points).drop("_key"))
    return rows.toPandas()


def rejected(spark, layout: OutputLayout, *, limit: int = 50) -> pd.DataFrame:
    """Up to ``limit`` rejected files with their reasons, ordered by path."""
    return spark.read.parquet(layout.rejected).orderBy("path").limit(limit).toPandas()


def sample_images(images, *, count: int = 16, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Read ``count`` of ``images`` spread over classes, on the driver, as ``(label, RGB array)``.

    ``images`` are rows with ``path`` and ``label``, a few per class
    (:func:`fruits.inputs.listing.spread_sample` picks them in Spark).

    One image per class in turn (classes in random order), so the grid shows variety.
    Unreadable files are skipped here: the pipeline itself records them.
    """
    rng = random.Random(seed)
    by_label: dict[str, list] = {}
    for image in images:
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
                picked.append((label, np.asarray(load_rgb(location.read_bytes(image.path)))))
            except (ImageDecodeError, OSError):
                continue
        round_index += 1
    return picked


def load_pixels(paths, *, side: int = 100, threads: int = 8) -> dict[str, np.ndarray | None]:
    """Read images on the driver (local or ``s3://``) as RGB arrays of at most ``side`` pixels.

    A file that cannot be read maps to ``None``: figures draw it as a blank tile
    rather than failing the report (the pipeline records unreadable files itself).
    Local files are opened directly and read one after the other: ``fsspec.open`` costs
    about 0.2 ms a file, and threads only contend for the GIL while Pillow decodes; the
    report's 2,400 map thumbnails took 1.65 s with both, 0.77 s without. Remote files
    are read by ``threads`` threads, each read a round trip.
    """
    from concurrent.futures import ThreadPoolExecutor

    def read(path: str):
        try:
            image = load_rgb(location.read_bytes(path))  # local files without fsspec
        except (ImageDecodeError, OSError):
            return None
        image.thumbnail((side, side))
        return np.asarray(image)

    unique = list(dict.fromkeys(paths))
    if not any(location.is_remote(path) for path in unique):
        return {path: read(path) for path in unique}  # CPU-bound: threads only contend for the GIL
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(unique)))) as pool:
        return dict(zip(unique, pool.map(read, unique)))


def _with_pixels(frame: pd.DataFrame, *, side: int = 100) -> pd.DataFrame:
    pixels = load_pixels(frame["path"], side=side) if len(frame) else {}
    blank = np.full((side, side, 3), 235, dtype=np.uint8)
    return frame.assign(pixels=[blank if pixels.get(path) is None else pixels[path] for path in frame["path"]])


def nearest_neighbours(spark, layout: OutputLayout, *, queries: int = 6, neighbours: int = 5,
                       seed: int = 0) -> pd.DataFrame:
    """Query images from different classes and their nearest neighbours in the run's PCA space.

    Queries are drawn at random, one per class from ``queries`` random classes; each
    query's neighbours are the ``neighbours`` closest other images (Euclidean distance
    on all k PCA features, ties broken by path) among every image of the run. One
    Spark job picks the candidate queries (one random image per class); in a second,
    each partition scores its images against every query with NumPy and sends only its
    closest ``neighbours`` per query to the driver, which keeps the closest overall
    (one vectorised pass instead of Spark's interpreted array functions, a shuffle and a
    sort; on 2,040 images, in a new session 2.4-2.5 -> 1.9-2.0 s, warm 0.8-1.1 -> 0.6-0.7 s).

    Returns
    -------
    pandas.DataFrame
        ``query``, ``rank`` (0 = the query itself), ``path``, ``label``, ``distance``,
        ``pixels`` (RGB array, at most 100 pixels a side).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pca = spark.read.parquet(layout.pca)
    # One job picks a random image of every class (one row per class reaches the driver);
    # the queries are drawn from those.
    pick = Window.partitionBy("label").orderBy(F.rand(seed), "path")
    candidates = {row.label: row for row in pca.withColumn("n", F.row_number().over(pick)).where("n = 1")
                  .select("path", "label", "pca_features").collect()}
    chosen = random.Random(seed).sample(sorted(candidates), min(queries, len(candidates)))
    if not chosen:
        return pd.DataFrame(columns=["query", "rank", "path", "label", "distance", "pixels"])
    picked = [candidates[label] for label in chosen]
    query_rows = [(index, row.path, [float(value) for value in row.pca_features]) for index, row in enumerate(picked)]
    collected = (pca.select("path", "label", "pca_features")
                 .mapInPandas(_closest_rows(query_rows, neighbours), "query int, path string, label string, d2 double")
                 .collect())
    # Each partition sent its closest rows per query: keep the closest overall.
    near = _closest_per_query(pd.DataFrame(collected, columns=["query", "path", "label", "d2"]), neighbours)
    near = near.assign(rank=near.groupby("query").cumcount() + 1, distance=np.sqrt(near["d2"].astype(float)))
    own = pd.DataFrame([{"query": index, "rank": 0, "path": row.path, "label": row.label, "distance": 0.0}
                        for index, row in enumerate(picked)])
    frame = pd.concat([own, near[["query", "rank", "path", "label", "distance"]]], ignore_index=True)
    return _with_pixels(frame.sort_values(["query", "rank"], ignore_index=True))


def _closest_per_query(scored: pd.DataFrame, neighbours: int) -> pd.DataFrame:
    """The ``neighbours`` rows of smallest ``d2`` for each ``query``, ties broken by path, in that order."""
    ordered = scored.sort_values(["query", "d2", "path"], kind="stable")
    return ordered.groupby("query", sort=False).head(neighbours)


def _closest_rows(queries: list[tuple[int, str, list[float]]], neighbours: int):
    """mapInPandas body: each partition's ``neighbours`` closest rows to every query, by NumPy.

    Squared Euclidean distances in float64, ties broken by path, the query's own image
    left out. At most ``len(queries) * neighbours`` rows per partition leave it.
    """
    numbers = [number for number, _, _ in queries]
    own_paths = [path for _, path, _ in queries]
    vectors = np.asarray([values for _, _, values in queries], dtype=np.float64)

    def closest(batches):
        best = None  # the closest rows so far, at most `neighbours` per query
        for frame in batches:
            if frame.empty:
                continue
            features = np.stack(frame["pca_features"].to_numpy()).astype(np.float64)
            squared = ((features[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
            scored = [pd.DataFrame({"query": number, "path": frame["path"], "label": frame["label"],
                                    "d2": squared[:, column]})[frame["path"] != own]
                      for column, (number, own) in enumerate(zip(numbers, own_paths))]
            best = _closest_per_query(pd.concat(scored if best is None else [best, *scored], ignore_index=True),
                                      neighbours)
        if best is not None and not best.empty:
            yield best.astype({"query": "int32"})

    return closest


def confused_examples(spark, layout: OutputLayout, manifest: dict, *, pairs: int = 6, per_pair: int = 3,
                      others: int = 2) -> pd.DataFrame:
    """Images behind the evaluation's most confused class pairs.

    The run's classifier (``classifier/``) predicts the classes of the run's images again
    from their stored PCA features; for each of the ``pairs`` most confused pairs
    (true class A taken for B) this returns up to ``per_pair`` images of A predicted as B
    (``role = "mistaken"``) and ``others`` images of B predicted as B (``role = "other"``).
    Empty when the run has no evaluation or nothing was confused.

    Returns
    -------
    pandas.DataFrame
        ``pair``, ``true``, ``predicted``, ``count``, ``role``, ``path``, ``label``, ``pixels``.
    """
    columns = ["pair", "true", "predicted", "count", "role", "path", "label", "pixels"]
    evaluation = manifest.get("evaluation") or {}
    confused = evaluation.get("most_confused", [])[:pairs]
    if not confused:
        return pd.DataFrame(columns=columns)
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    model = LogisticRegressionModel.load(layout.classifier)
    index = {label: float(position) for position, label in enumerate(evaluation["labels"])}
    wanted = {(pair["true"], pair["predicted"]) for pair in confused}
    involved = sorted({label for pair in wanted for label in pair})
    predicted = (model.transform(spark.read.parquet(layout.pca).where(F.col("label").isin(involved))
                                 .withColumn(PCA_VECTOR_COL, array_to_vector("pca_features")))
                 .select("path", "label", F.col("prediction").alias("predicted_index")))
    keep = Window.partitionBy("label", "predicted_index").orderBy("path")
    rows = (predicted.withColumn("n", F.row_number().over(keep)).where(F.col("n") <= max(per_pair, others))
            .select("path", "label", "predicted_index", "n").collect())
    found = [(row.label, row.predicted_index, row.n, row.path) for row in rows]
    out = []
    for number, pair in enumerate(confused):
        true, other = pair["true"], pair["predicted"]
        mistaken = sorted((n, path) for label, p, n, path in found if label == true and p == index[other])
        correct = sorted((n, path) for label, p, n, path in found if label == other and p == index[other])
        for role, picks, label, limit in (("mistaken", mistaken, true, per_pair), ("other", correct, other, others)):
            out += [{"pair": number, "true": true, "predicted": other, "count": pair["count"], "role": role,
                     "path": path, "label": label} for _, path in picks[:limit]]
    return _with_pixels(pd.DataFrame(out, columns=columns[:-1]))


def timings(manifest: dict) -> pd.Series:
    """Seconds per stage from a manifest, without the total."""
    seconds = dict(manifest["seconds"])
    seconds.pop("total", None)
    return pd.Series(seconds, name="seconds")
