"""Featurization: image bytes to MobileNetV2 features, in Spark tasks.

- :mod:`~fruits.featurize.shapes`: the input side and feature width every engine reports;
- :mod:`~fruits.featurize.preprocess`: decode and resize one image (pure, no framework);
- :mod:`~fruits.featurize.batches`: the ``mapInArrow`` function that featurizes a task's
  images in batches with a predictor cached per Python worker;
- :mod:`~fruits.featurize.step`: the run's featurize step (partitioning, features or a
  rejection per image, the split into accepted and rejected).

Nothing is imported here: Python workers import :mod:`fruits.featurize.batches` and must
not load the driver's side.
"""
