"""The run's orchestration: its named steps in order, and publish-on-success.

plan → read → featurize → write → reduce → evaluate → publish.
:func:`fruits.run.plan.prepare` is the *plan* step (no Spark); :func:`execute` runs
the Spark steps of :mod:`fruits.run.steps` into the run's staging folder, writes the
manifest (:mod:`fruits.run.manifest`) and publishes: ``OUTPUT/runs/<run id>/``
becomes the current run (:mod:`fruits.publish`) only once every output is written.
``execute`` releases the output's lease that ``prepare`` took.
"""

from __future__ import annotations

import dataclasses
import os

from fruits.layout import OutputLayout, run_layout
from fruits.loading import spark_can_access
from fruits.progress import spark_progress
from fruits.publish import commit, complete, discard, remove_stale_staging, staging_layout, upload_run
from fruits.reduce import PcaResult
from fruits.run import steps
from fruits.run.manifest import OUTPUTS, build_manifest, write_json
from fruits.run.plan import PreparedRun
from fruits.timing import StageTimer


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
        A local session (:func:`fruits.session.local_spark`) or the one EMR provides.
    prepared : PreparedRun
        From :func:`fruits.run.prepare`.

    Returns
    -------
    RunResult
        Its manifest, and its outputs in ``result.layout`` (``OUTPUT/runs/<run id>``),
        now the current run of ``output_dir``.

    Raises
    ------
    fruits.lease.LeaseLost, fruits.publish.PublishConflict
        Another run took the output over while this one worked; nothing was published.

    Notes
    -----
    The current run does not change until every output of this one is written: a
    failed or interrupted run leaves it as it was (see :mod:`fruits.publish`).
    """
    try:
        if not spark_can_access(spark, prepared.layout.root):
            return _execute_via_local_mirror(spark, prepared)
        return _execute_and_publish(spark, prepared)
    finally:
        prepared.release()


def run_steps(spark, prepared: PreparedRun, staged: OutputLayout) -> tuple[dict, PcaResult]:
    """Every Spark step into ``staged``, timed; returns the manifest (written there too) and the PCA."""
    timer = StageTimer()
    with timer.stage("read"):
        read = steps.read(spark, prepared)
    with timer.stage("featurize"), spark_progress(spark, "featurize"):
        outcome, partitions = steps.featurize(spark, prepared, read, staged)
    with timer.stage("write"):
        counts, rejected_by_reason = steps.write_features(spark, prepared, read, outcome, staged)
    with timer.stage("pca"), spark_progress(spark, "pca"):
        pca = steps.reduce(spark, prepared, read.increment, staged)
    with timer.stage("write"):
        steps.write_reduction(spark, pca, staged)
    evaluation = None
    if prepared.train_listing is not None:
        with timer.stage("evaluate"), spark_progress(spark, "evaluate"):
            evaluation = steps.evaluate(spark, prepared, staged, pca)
    manifest = build_manifest(
        spark, prepared, increment=read.increment, counts=counts, rejected_by_reason=rejected_by_reason,
        pca=pca, pca_reused=steps.reuses_pca(prepared, read.increment), partitions=partitions, timer=timer,
        evaluation=evaluation,
    )
    write_json(manifest, staged.manifest)
    return manifest, pca


def _execute_and_publish(spark, prepared: PreparedRun) -> RunResult:
    final = prepared.layout
    remove_stale_staging(final)  # leftovers of killed runs: this run holds the lease
    staged = staging_layout(final, prepared.run_id)
    published = run_layout(final.root, prepared.run_id)
    try:
        manifest, pca = run_steps(spark, prepared, staged)
        complete(staged, final, prepared.run_id)
        commit(final, prepared.run_id, expected=prepared.pointer_token, keep=prepared.params.keep_runs,
               lease=prepared.lease)
    except BaseException:
        discard(staged)
        discard(published)
        raise
    return RunResult(prepared=prepared, manifest=manifest, pca=pca, published=published)


#: What an incremental run reads back from the previous run.
_PREVIOUS_OUTPUTS = ("features", "rejected", "inventory", "pca_model", "manifest.json")


def _execute_via_local_mirror(spark, prepared: PreparedRun) -> RunResult:
    """Run against a local mirror of a remote output folder, then upload it and publish.

    For Spark builds that cannot write the output's scheme (a local pyspark has no S3
    connector). The previous run's outputs an incremental run needs are downloaded
    first; the run is uploaded to ``runs/<run id>/`` and then made current, like a
    run that wrote there itself. The result's layout is the local mirror's run
    folder, so the report can read it.
    """
    import tempfile

    import fsspec

    remote = prepared.layout
    mirror = OutputLayout(tempfile.mkdtemp(prefix="fruits-mirror-"))
    remove_stale_staging(remote)  # this run holds the lease
    previous_layout = None
    if prepared.previous is not None and prepared.previous_layout is not None:
        previous_layout = OutputLayout(mirror.root + "-previous")  # beside the mirror: pruning there spares it
        fs, root = fsspec.core.url_to_fs(prepared.previous_layout.root)
        for name in _PREVIOUS_OUTPUTS:
            source = f"{root.rstrip('/')}/{name}"
            if fs.exists(source):
                fs.get(source, os.path.join(previous_layout.root, name), recursive=True)
    local = _execute_and_publish(spark, dataclasses.replace(
        prepared, layout=mirror, lease=None, pointer_token=None, previous_layout=previous_layout))
    published = run_layout(remote.root, prepared.run_id)
    manifest = dict(local.manifest, output_dir=remote.root, run_dir=published.root,
                    outputs={name: getattr(published, name) for name in OUTPUTS})
    write_json(manifest, local.layout.manifest)
    try:
        upload_run(local.layout, published)
        commit(remote, prepared.run_id, expected=prepared.pointer_token, keep=prepared.params.keep_runs,
               lease=prepared.lease)
    except BaseException:
        discard(published)
        raise
    return RunResult(prepared=prepared, manifest=manifest, pca=local.pca, published=local.layout)
