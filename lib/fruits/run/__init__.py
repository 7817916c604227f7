"""A featurization run, as named steps: plan → read → featurize → write → reduce → evaluate → publish.

- :mod:`~fruits.run.plan`: every check and the driver's loading, before Spark starts;
- :mod:`~fruits.run.steps`: the Spark work, one function per step;
- :mod:`~fruits.run.manifest`: what the run records (``manifest.json``);
- :mod:`~fruits.run.execute`: the steps in order, staged, and published on success;
- :mod:`~fruits.run.projection`: ``fruits project``, new images through a finished run's models.

A notebook reads::

    prepared = prepare(RunParams(...))   # no Spark yet: every mistake is reported here
    result = execute(spark, prepared)    # OUTPUT/runs/<run id>/, then made current
"""

from fruits.run.execute import RunResult, execute
from fruits.run.plan import PreparedRun, check_output_dir, prepare

__all__ = ["PreparedRun", "RunResult", "check_output_dir", "execute", "prepare"]
