"""fruits: MobileNetV2 image features and their PCA on Spark, locally and on AWS EMR.

Modules, one job each: :mod:`~fruits.params` (parameters), :mod:`~fruits.inputs`
(listing, reading, inventories, in Spark), :mod:`~fruits.preprocess`, :mod:`~fruits.engines`,
:mod:`~fruits.udf` and :mod:`~fruits.featurize` (features), :mod:`~fruits.reduce`
(PCA), :mod:`~fruits.pipeline` (the run), :mod:`~fruits.report` and
:mod:`~fruits.cli` (notebooks, HTML, command line).
"""

__version__ = "0.1.0"
