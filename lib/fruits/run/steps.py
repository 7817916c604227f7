"""The Spark work of a run, one function per named step: read, featurize, write, reduce, evaluate.

Each step takes what the earlier ones produced and returns what the later ones
need; none of them decides where outputs go or when they become visible (that is
:mod:`fruits.run.execute`'s job) or what the manifest says (:mod:`fruits.run.manifest`).
"""

from __future__ import annotations

import dataclasses

from fruits import incremental
from fruits.featurize import Outcome, choose_partitions, featurize_and_split
from fruits.storage.layout import OutputLayout
from fruits.loading import read_images
from fruits.storage import location
from fruits.reduce import PcaResult, fit_pca, project
from fruits.run.plan import PreparedRun


@dataclasses.dataclass
class ReadImages:
    """What :func:`read` found: the images to featurize and those Spark could not read."""

    increment: incremental.Increment
    images: object  # pyspark.sql.DataFrame: path, label, content
    not_read: list[tuple[str, str]]


def read(spark, prepared: PreparedRun) -> ReadImages:
    """Split the input into new and carried-over images, and load the new ones' bytes."""
    increment = incremental.plan(spark, prepared.previous_layout, prepared.listing, prepared.previous)
    images, not_read = read_images(spark, prepared.listing.root, increment.to_process)
    return ReadImages(increment, images, not_read)


def featurize(spark, prepared: PreparedRun, read_result: ReadImages, staged: OutputLayout):
    """Featurize the images read; returns the outcome (features and rejections) and the partitions used."""
    params = prepared.params
    count = len(read_result.increment.to_process)
    partitions = choose_partitions(spark, max(1, count), params.partitions)
    spark.sparkContext.setJobDescription(f"fruits: featurize {count} images")
    outcome = featurize_and_split(
        read_result.images, read_result.not_read, prepared.engine, skipped=prepared.listing.skipped,
        raw_path=staged.staging, batch_size=params.batch_size, threads_per_task=params.threads_per_task,
        partitions=partitions,
    )
    return outcome, partitions


def write_features(spark, prepared: PreparedRun, read_result: ReadImages, outcome: Outcome,
                   staged: OutputLayout) -> tuple[dict, dict]:
    """Write ``features/``, ``rejected/`` (with what is carried over) and ``inventory/``,
    and check that every file given is accounted for exactly once.

    Returns
    -------
    tuple
        ``(counts, rejected_by_reason)``.

    Raises
    ------
    RuntimeError
        The counts do not reconcile (nothing is published then).
    """
    from pyspark.sql import functions as F

    listing, previous = prepared.listing, prepared.previous_layout
    increment, not_read = read_result.increment, read_result.not_read
    features, rejected = outcome.features, outcome.rejected
    if increment.unchanged:
        features = features.unionByName(incremental.carried_over(spark, previous.features, increment.unchanged))
        rejected = rejected.unionByName(incremental.carried_over(spark, previous.rejected, increment.unchanged))
    features.write.mode("overwrite").parquet(staged.features)
    rejected.coalesce(1).write.mode("overwrite").parquet(staged.rejected)
    not_read_paths = {path for path, _ in not_read}
    spark.createDataFrame(
        incremental.inventory_rows(listing.images, not_read_paths), incremental.INVENTORY_SCHEMA
    ).coalesce(1).write.mode("overwrite").parquet(staged.inventory)

    featurized = spark.read.parquet(staged.features).count()
    by_reason = {
        row.kind: row["count"]
        for row in spark.read.parquet(staged.rejected)
        .groupBy(F.substring_index("reason", ":", 1).alias("kind")).count().collect()
    }
    counts = {"input": listing.total, "images": len(listing.images), "featurized": featurized,
              "rejected": sum(by_reason.values()),
              "featurized_this_run": outcome.features.count()}
    if counts["featurized"] + counts["rejected"] != counts["input"]:
        raise RuntimeError(
            f"counts do not reconcile: {counts['input']} input files, {featurized} featurized, "
            f"{counts['rejected']} rejected. Nothing was published."
        )
    return counts, dict(sorted(by_reason.items()))


def reuses_pca(prepared: PreparedRun, increment: incremental.Increment) -> bool:
    """True when this run keeps the previous run's PCA (``pca='reuse'`` on an incremental run)."""
    return prepared.params.pca == "reuse" and increment.is_incremental


def reduce(spark, prepared: PreparedRun, increment: incremental.Increment, staged: OutputLayout) -> PcaResult:
    """Fit PCA on ``features/`` (or reuse the previous run's model)."""
    params = prepared.params
    features = spark.read.parquet(staged.features)
    spark.sparkContext.setJobDescription("fruits: PCA")
    if reuses_pca(prepared, increment):
        from pyspark.ml.feature import PCAModel

        model = PCAModel.load(prepared.previous_layout.pca_model)
        pca = PcaResult(model=model, k=model.getK(), spectrum=list(prepared.previous["spectrum"]))
    else:
        pca = fit_pca(features, k=params.k, variance_target=params.variance_target)
    return pca


def write_reduction(spark, pca: PcaResult, staged: OutputLayout) -> None:
    """Write every image's projection (``pca/``) and the model (``pca_model/``)."""
    project(pca.model, spark.read.parquet(staged.features)).write.mode("overwrite").parquet(staged.pca)
    pca.model.write().overwrite().save(staged.pca_model)
    location.remove(staged.staging)


def evaluate(spark, prepared: PreparedRun, staged: OutputLayout, pca: PcaResult) -> dict:
    """Featurize the training set with the same engine, then fit and score the classifier."""
    from fruits.evaluate import evaluate as fit_and_score

    train, params = prepared.train_listing, prepared.params
    spark.sparkContext.setJobDescription("fruits: evaluation")
    images, not_read = read_images(spark, train.root, train.images)
    outcome = featurize_and_split(
        images, not_read, prepared.engine, skipped=train.skipped, raw_path=staged.staging,
        batch_size=params.batch_size, threads_per_task=params.threads_per_task,
        partitions=choose_partitions(spark, len(train.images), params.partitions),
    )
    outcome.features.write.mode("overwrite").parquet(staged.train_features)
    train_rejected = outcome.rejected.count()
    result = fit_and_score(spark.read.parquet(staged.train_features), spark.read.parquet(staged.features),
                           pca.model, spectrum=pca.spectrum, components=pca.components, seed=params.seed)
    result.classifier.write().overwrite().save(staged.classifier)
    location.remove(staged.staging)
    return {"train_path": train.root, "train_files": train.total, "train_rejected": train_rejected,
            "labels": result.labels, **result.metrics}
