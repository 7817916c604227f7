"""Managed Spark in the cloud: one interface, its EMR implementation, and the tools around Livy.

- :mod:`fruits.cloud.platform`: :class:`~fruits.cloud.platform.SparkPlatform`, what the
  ``fruits`` command line needs from any managed-Spark platform (deploy, create a cluster,
  run the cloud notebook headlessly, status, terminate, reach its driver).
- :mod:`fruits.cloud.registry`: the platforms by name, which the CLI reads (``fruits <platform> <verb>``).
- :mod:`fruits.cloud.emr`: AWS EMR, the one platform implemented.
- :mod:`fruits.cloud.tunnel`: ``fruits tunnel``, from ``localhost`` to a cluster's notebook server or Livy.
- :mod:`fruits.cloud.doctor`: a live cluster checked through its Livy.
- :mod:`fruits.cloud.livy`: a Livy REST client, and the Livy double the tests run the cloud notebook against.

The command line imports this package; nothing here imports ``fruits.cli``.
"""
