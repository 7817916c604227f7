"""What the run computes from the features: the PCA and the evaluation of the features.

- :mod:`~fruits.analysis.pca`: one-pass PCA from Spark-computed moments, and projection;
- :mod:`~fruits.analysis.evaluate`: how well the features separate the classes.

Nothing is imported here, so importing one module loads only what it needs.
"""
