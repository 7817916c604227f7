"""Names of everything a run writes under its output folder, in one place.

The pipeline, the CLI, the report and the tests all find outputs through
:class:`OutputLayout`, so a renamed folder cannot leave one of them behind.

An output folder holds one folder per run and a pointer to the current one::

    OUTPUT/current.json          {"run_id": ..., "run": "runs/<run id>", "runs": [newest first]}
    OUTPUT/runs/<run id>/        features/ pca/ pca_model/ rejected/ inventory/ manifest.json ...
    OUTPUT/.lease.json           while a run writes (see fruits.storage.lease)

Read a run through the pointer, never by listing ``OUTPUT`` (see :func:`current_run`):

>>> spark.read.parquet(current_layout("s3://bucket/runs/test").features)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from fruits.storage import atomic
from fruits.storage import location

#: The pointer to the current run, written last and in one atomic step (see fruits.storage.publish).
POINTER_NAME = "current.json"
#: Folder of the runs, one sub-folder per run id.
RUNS_FOLDER = "runs"


class NoRunError(FileNotFoundError):
    """The folder holds no published run."""


@dataclasses.dataclass(frozen=True)
class OutputLayout:
    """Paths under a run's output folder (a local path or an ``s3://`` URI).

    Examples
    --------
    >>> OutputLayout("s3://bucket/run").features
    's3://bucket/run/features'
    """

    root: str

    def _join(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    @property
    def features(self) -> str:
        """Parquet: ``path``, ``label``, ``features`` (array<float> of 1280)."""
        return self._join("features")

    @property
    def pca(self) -> str:
        """Parquet: ``path``, ``label``, ``pca_features`` (array<float> of k)."""
        return self._join("pca")

    @property
    def pca_model(self) -> str:
        """Spark ML ``PCAModel``, reloadable with ``PCAModel.load``."""
        return self._join("pca_model")

    @property
    def rejected(self) -> str:
        """Parquet: ``path``, ``reason`` for every file that was not featurized."""
        return self._join("rejected")

    @property
    def inventory(self) -> str:
        """Parquet: ``path``, ``size``, ``modified`` of every image the run accounted for.

        Incremental runs compare the input with it to featurize only new or changed images.
        """
        return self._join("inventory")

    @property
    def train_features(self) -> str:
        """Parquet like ``features/``, for the labelled training set of an evaluation."""
        return self._join("train_features")

    @property
    def classifier(self) -> str:
        """Spark ML ``LogisticRegressionModel`` on the PCA features (runs with an evaluation)."""
        return self._join("classifier")

    @property
    def projected(self) -> str:
        """Parquet written by ``fruits project``: ``path``, ``label``, ``pca_features``, predictions."""
        return self._join("projected")

    @property
    def manifest(self) -> str:
        """JSON: parameters, versions, counts, variance, timings."""
        return self._join("manifest.json")

    @property
    def staging(self) -> str:
        """Scratch folder for the featurization's raw output; removed when the run ends."""
        return self._join("_staging")

    @property
    def notebook(self) -> str:
        """The executed notebook (written by ``fruits run``)."""
        return self._join("notebook.ipynb")

    @property
    def report(self) -> str:
        """The HTML report rendered from the executed notebook."""
        return self._join("report.html")


def run_layout(output_dir: str, run_id: str) -> OutputLayout:
    """The folder of run ``run_id`` under ``output_dir``: ``OUTPUT/runs/<run id>``."""
    return OutputLayout(f"{output_dir.rstrip('/')}/{RUNS_FOLDER}/{run_id}")


def read_pointer(output_dir: str) -> dict | None:
    """The pointer document of ``output_dir`` (one atomic read), or ``None`` if no run was published."""

    version = atomic.read(f"{output_dir.rstrip('/')}/{POINTER_NAME}")
    return None if version is None else json.loads(version.data)


def current_run(output_dir: str) -> str:
    """The folder of ``output_dir``'s current run: read everything of one run from there.

    The pointer is read once; the folder it names is complete and does not change
    (a later run writes its own folder), and it stays at least until the next
    publish after the one that replaced it (``keep_runs``). An output written
    before runs had their own folders (``manifest.json`` directly in it) is
    its own current run. A run folder given directly is returned as it is.

    Raises
    ------
    NoRunError
        Neither a pointer nor a run's ``manifest.json`` is there.

    Examples
    --------
    >>> features = spark.read.parquet(current_run("output/test") + "/features")  # doctest: +SKIP
    """
    output_dir = output_dir.rstrip("/")
    pointer = read_pointer(output_dir)
    if pointer is not None:
        return f"{output_dir}/{pointer['run']}"

    if location.exists(OutputLayout(output_dir).manifest):
        return output_dir
    raise NoRunError(f"{output_dir!r} holds no published run (no {POINTER_NAME}, no manifest.json)")


def current_layout(output_dir: str) -> OutputLayout:
    """:class:`OutputLayout` of ``output_dir``'s current run (see :func:`current_run`)."""
    return OutputLayout(current_run(output_dir))


def holds_run(output_dir: str) -> bool:
    """True if ``output_dir`` has a published run (or a run's outputs from an older version)."""
    try:
        current_run(output_dir)
        return True
    except NoRunError:
        pass

    return location.exists(OutputLayout(output_dir).features)
