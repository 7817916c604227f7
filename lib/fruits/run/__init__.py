"""A featurization run, as named steps: plan → read → featurize → write → reduce → evaluate → publish.

- :mod:`~fruits.run.plan`: every check and the driver's loading, before Spark starts;
- :mod:`~fruits.run.steps`: the Spark work, one function per step;
- :mod:`~fruits.run.manifest`: what the run records (``manifest.json``);
- :mod:`~fruits.run.execute`: the steps in order, staged, and published on success;
- :mod:`~fruits.run.projection`: ``fruits project``, new images through a finished run's models;
- :mod:`~fruits.run.notebook`: a notebook run headlessly with papermill and rendered to HTML
  (``fruits run``);
- what only a run uses: :mod:`~fruits.run.progress`, :mod:`~fruits.run.timing`,
  :mod:`~fruits.run.demo_data`, and :mod:`~fruits.run.jvm_archive_build` (the driver JVM's
  class archive, recorded from a demo run).

A notebook reads::

    from fruits.run.execute import execute
    from fruits.run.plan import prepare

    prepared = prepare(RunParams(...))   # no Spark yet: every mistake is reported here
    result = execute(spark, prepared)    # OUTPUT/runs/<run id>/, then made current

Nothing is imported here: the command line and the cloud platforms import
:mod:`fruits.run.notebook` and must not load the run's pandas, Arrow and Spark code
(1.6 s of a 1.9 s ``import fruits.cli`` when this package imported its steps).
"""
