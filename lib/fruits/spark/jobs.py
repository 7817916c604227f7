"""The description Spark's UI and event log show for the jobs a block of code starts.

A step labels its jobs with ``setJobDescription`` ("fruits: PCA"); a helper that runs its
own jobs inside a step (the input's listing, the workers' memory probe) must label them
and then hand the step its label back, or every later job of the step is shown under the
helper's name (the training set's listing once relabelled all of the evaluation's jobs).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

#: The local property ``SparkContext.setJobDescription`` sets.
DESCRIPTION_PROPERTY = "spark.job.description"


@contextlib.contextmanager
def job_description(spark, text: str) -> Iterator[None]:
    """Label the jobs the block starts ``text``; the caller's label (or none) is back afterwards."""
    context = spark.sparkContext
    caller = context.getLocalProperty(DESCRIPTION_PROPERTY)
    context.setJobDescription(text)
    try:
        yield
    finally:
        context.setJobDescription(caller)
