"""Spark plumbing: starting a session, waiting for its executors, its settings, the workers' daemon.

- :mod:`~fruits.spark.settings`: the single source of every Spark setting (local sessions,
  EMR's configurations, the cloud notebook's ``%%configure`` cell);
- :mod:`~fruits.spark.session`: the local session this library builds;
- :mod:`~fruits.spark.placement`: where the driver runs, and so the address executors reach it at;
- :mod:`~fruits.spark.executors`: wait for executors (a cluster that cannot give any says why);
- :mod:`~fruits.spark.python_daemon`: PySpark's worker daemon without Spark's jar on its path;
- :mod:`~fruits.spark.jvm_archive`: where the driver JVM's class archive is, and the options that map it.

Nothing is imported here: Python workers import :mod:`fruits.spark.python_daemon` and must
not load the rest.
"""
