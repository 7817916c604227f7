"""fruits: MobileNetV2 image features and their PCA on Spark, locally and on AWS EMR.

The packages are the architecture:

- :mod:`~fruits.run`: a run as named steps (plan, read, featurize, write, reduce,
  evaluate, publish) and ``fruits project``;
- :mod:`~fruits.inputs`: listing, reading and inventories, on the executors;
- :mod:`~fruits.engines`: one module per featurization engine, one registry;
- :mod:`~fruits.storage`: local or remote decided once, leases, the publish transaction;
- :mod:`~fruits.report`: what notebooks show, papermill and the HTML report;
- :mod:`~fruits.cloud`: the managed-Spark platform interface, EMR, the Livy double.

Beside them, one source each for parameters (:mod:`~fruits.params`) and Spark
settings (:mod:`~fruits.spark_settings`), the Spark work the steps call
(:mod:`~fruits.featurize`, :mod:`~fruits.udf`, :mod:`~fruits.preprocess`,
:mod:`~fruits.reduce`, :mod:`~fruits.evaluate`, :mod:`~fruits.session`) and the
command line (:mod:`~fruits.cli`).
"""

__version__ = "0.1.0"
