"""fruits: MobileNetV2 image features and their PCA on Spark, locally and on AWS EMR.

The packages are the architecture:

- :mod:`~fruits.run`: a run as named steps (plan, read, featurize, write, reduce,
  evaluate, publish), ``fruits project``, the papermill runner (:mod:`~fruits.run.notebook`)
  and the helpers only a run uses (progress, timing, demo data, the class-archive build);
- :mod:`~fruits.spark`: the session, the executor wait, Spark's settings (one source),
  the Python workers' daemon, the driver JVM's class-archive lookup;
- :mod:`~fruits.featurize`: preprocessing, the ``mapInArrow`` function, the featurize step;
- :mod:`~fruits.analysis`: the one-pass PCA and the evaluation of the features;
- :mod:`~fruits.inputs`: listing, reading and inventories, on the executors;
- :mod:`~fruits.engines`: one module per featurization engine, one registry;
- :mod:`~fruits.storage`: local or remote decided once, leases, the publish transaction;
- :mod:`~fruits.report`: what notebooks show and the HTML report;
- :mod:`~fruits.cloud`: the managed-Spark platform interface, EMR, the Livy double.

At the top only what every layer shares: the project's paths (:mod:`~fruits.config`),
the single source of parameters (:mod:`~fruits.params`) and the command line
(:mod:`~fruits.cli`).
"""

__version__ = "0.1.0"
