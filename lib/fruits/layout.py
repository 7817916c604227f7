"""Names of everything a run writes under its output folder, in one place.

The pipeline, the CLI, the report and the tests all find outputs through
:class:`OutputLayout`, so a renamed folder cannot leave one of them behind.
"""

from __future__ import annotations

import dataclasses


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
        """Scratch folder for the UDF's raw output; removed when the run ends."""
        return self._join("_staging")

    @property
    def notebook(self) -> str:
        """The executed notebook (written by ``fruits run``)."""
        return self._join("notebook.ipynb")

    @property
    def report(self) -> str:
        """The HTML report rendered from the executed notebook."""
        return self._join("report.html")
