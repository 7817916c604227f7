"""AWS EMR: the :class:`~fruits.cloud.platform.SparkPlatform` behind ``fruits emr``.

:mod:`~fruits.cloud.emr.platform` holds the verbs; each module beside it builds one kind of
request, as a plain dict that ``--dry-run`` prints: :mod:`~fruits.cloud.emr.templates`
(``emr-config/``), :mod:`~fruits.cloud.emr.aws` (bucket names, clients),
:mod:`~fruits.cloud.emr.deploy`, :mod:`~fruits.cloud.emr.cluster` (and :mod:`~fruits.cloud.emr.cost`, what it
costs for N images), :mod:`~fruits.cloud.emr.steps`,
:mod:`~fruits.cloud.emr.access`, :mod:`~fruits.cloud.emr.iam`, :mod:`~fruits.cloud.emr.users` and
:mod:`~fruits.cloud.emr.account` (``setup``, ``users``).
"""
