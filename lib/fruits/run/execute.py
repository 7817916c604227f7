"""The run's orchestration: its named steps in order, and publish-on-success.

plan → read → featurize → write → reduce → evaluate → publish.
:func:`fruits.run.plan.prepare` is the *plan* step (no Spark); :func:`execute` runs
the Spark steps of :mod:`fruits.run.steps` into the run's staging folder, writes the
manifest (:mod:`fruits.run.manifest`) and publishes: ``OUTPUT/runs/<run id>/``
becomes the current run (:mod:`fruits.storage.publish`) only once every output is written.
``execute`` releases the output's lease that ``prepare`` took.
"""

from __future__ import annotations

import dataclasses

from fruits.analysis.pca import PcaResult
from fruits.inputs.reading import spark_can_access
from fruits.run import steps
from fruits.run.manifest import build_manifest
from fruits.run.plan import PreparedRun
from fruits.run.progress import spark_progress
from fruits.run.timing import StageTimer
from fruits.spark.placement import is_local_master
from fruits.storage import location
from fruits.storage.executor_view import SHARED_STORAGE_HINT, NotVisibleToExecutors, check_executors_see
from fruits.storage.layout import OutputLayout
from fruits.storage.staged import staged_run

#: What an incremental run reads back from the previous run.
_PREVIOUS_OUTPUTS = ("features", "rejected", "inventory", "pca_model", "manifest.json")


@dataclasses.dataclass
class RunResult:
    """What a run produced: its manifest, the fitted PCA, and where the outputs are."""

    prepared: PreparedRun
    manifest: dict
    pca: PcaResult
    #: This run's own folder, ``OUTPUT/runs/<run id>`` (a local mirror of it for S3 outputs
    #: without an S3 connector).
    published: OutputLayout | None = None

    @property
    def layout(self) -> OutputLayout:
        """Where this run's outputs are: its own folder, whatever is current later."""
        return self.published or self.prepared.layout


def execute(spark, prepared: PreparedRun) -> RunResult:
    """Run the Spark steps, write every output into staging, and publish on success.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        A local session (:func:`fruits.spark.session.local_spark`) or the one EMR provides.
    prepared : PreparedRun
        From :func:`fruits.run.prepare`.

    Returns
    -------
    RunResult
        Its manifest, and its outputs in ``result.layout`` (``OUTPUT/runs/<run id>``),
        now the current run of ``output_dir``.

    Raises
    ------
    fruits.storage.lease.LeaseLost, fruits.storage.publish.PublishConflict
        Another run took the output over while this one worked; nothing was published.

    Notes
    -----
    The current run does not change until every output of this one is written: a
    failed or interrupted run leaves it as it was (see :mod:`fruits.storage.publish`).
    """
    writable = spark_can_access(spark, prepared.layout.root)
    work, previous_copy = prepared, None
    try:
        check_folders_shared(spark, prepared, spark_writable=writable)
        if not writable and prepared.previous is not None and prepared.previous_layout is not None:
            # Spark reads the previous run an incremental run builds on: a local copy of what it needs.
            previous_copy = location.readable_copy(prepared.previous_layout.root, _PREVIOUS_OUTPUTS,
                                                   prefix="fruits-previous-")
            work = dataclasses.replace(prepared, previous_layout=OutputLayout(previous_copy))
        with staged_run(prepared.layout.root, prepared.run_id, lease=prepared.lease,
                        expected=prepared.pointer_token, keep=prepared.params.keep_runs,
                        spark_writable=writable) as staged:
            manifest, pca = run_steps(spark, work, staged.layout)
    finally:
        prepared.release()
        if previous_copy is not None:
            location.remove(previous_copy)
    # Without an S3 connector the report reads the local mirror of the published run.
    return RunResult(prepared=prepared, manifest=manifest, pca=pca, published=staged.readable)


def check_folders_shared(spark, prepared: PreparedRun, *, spark_writable: bool) -> None:
    """Before the first job: the executors see the input, the training set and the output as the driver does.

    Raises
    ------
    fruits.storage.executor_view.NotVisibleToExecutors
        A local folder only the driver sees, on a cluster (see :mod:`fruits.storage.executor_view`).
    """
    if not spark_writable and not is_local_master(spark.sparkContext.master):
        raise NotVisibleToExecutors(
            f"output_dir {prepared.layout.root!r}: this Spark has no file system for "
            f"{location.scheme(prepared.layout.root)}://, and the executors of a cluster cannot write the local "
            f"copy a run would upload from the driver's disk instead.\n{SHARED_STORAGE_HINT}")
    read = {"input_path": prepared.source.root}
    if prepared.train_source is not None:
        read["train_path"] = prepared.train_source.root
    check_executors_see(spark, read=read, write={"output_dir": prepared.layout.root})


def run_steps(spark, prepared: PreparedRun, staged: OutputLayout) -> tuple[dict, PcaResult]:
    """Every Spark step into ``staged``, timed; returns the manifest (written there too) and the PCA."""
    timer = StageTimer()
    with timer.stage("read"):
        read = steps.read(spark, prepared, staged)
    with timer.stage("featurize"), spark_progress(spark, "featurize"):
        outcome = steps.featurize(spark, prepared, read, staged)
    with timer.stage("write"):
        counts, rejected_by_reason, featurized_by_class = steps.write_features(spark, prepared, read, outcome, staged)
    with timer.stage("pca"), spark_progress(spark, "pca"):
        pca = steps.reduce(spark, prepared, read.increment, staged)
    with timer.stage("write"):
        steps.write_reduction(spark, pca, staged)
    evaluation = None
    if prepared.train_source is not None:
        with timer.stage("evaluate"), spark_progress(spark, "evaluate"):
            evaluation = steps.evaluate(spark, prepared, staged, pca, read.engine)
    manifest = build_manifest(
        spark, prepared, engine=read.engine, classes=read.listing.classes,
        featurized_by_class=featurized_by_class, increment=read.increment, counts=counts,
        rejected_by_reason=rejected_by_reason, pca=pca, pca_reused=steps.reuses_pca(prepared, read.increment),
        partitions=read.partitions, timer=timer,
        evaluation=evaluation,
    )
    location.write_json(manifest, staged.manifest)
    return manifest, pca
