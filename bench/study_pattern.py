"""The original study's featurization, reimplemented faithfully as the benchmark's baseline.

Same recipe as its notebook (see the study's slides, section 3.1.5): Pillow resize,
``img_to_array``, ``preprocess_input``; a scalar-iterator pandas UDF that rebuilds
MobileNetV2 (with its ImageNet classifier) in every task, cuts it at ``layers[-2]``,
sets the broadcast weights and calls ``model.predict`` on each Arrow batch of 1024;
``repartition(24)``. The one change: weights come from a local file (the study
downloaded ``imagenet``, which this machine cannot).

:func:`run` is the featurization alone (``bench/benchmark.py``); :func:`end_to_end`
is the rest of the notebook around it, in its order: read the images as
``binaryFile``, label them, build the network on the driver and broadcast its
weights, featurize (``cache`` + ``count``), write the features, turn the arrays
into vectors with a Python UDF, fit Spark ML ``PCA(k=50)``, transform, write the PCA
features and read the explained variance (``bench/end_to_end.py``); with
``--features-only`` it stops once the features are written (:func:`featurize_and_write`,
``bench/peers.py``)::

    python bench/study_pattern.py --input Test/ --output /tmp/study --weights model.h5 --result r.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import numpy as np
import pandas as pd


def run(spark, images_df, weights_arrays):
    """Return the study's ``features_df`` (``path``, ``label``, ``features``)."""
    from pyspark.sql.functions import PandasUDFType, col, pandas_udf

    broadcast_weights = spark.sparkContext.broadcast(list(weights_arrays))

    def model_fn():
        """Returns a MobileNetV2 model with top layer removed and broadcasted pretrained weights."""
        from tensorflow.keras import Model
        from tensorflow.keras.applications.mobilenet_v2 import MobileNetV2

        model = MobileNetV2(weights=None, include_top=True, input_shape=(224, 224, 3))
        for layer in model.layers:
            layer.trainable = False
        new_model = Model(inputs=model.input, outputs=model.layers[-2].output)
        new_model.set_weights(broadcast_weights.value)
        return new_model

    def preprocess(content):
        """Preprocesses raw image bytes for prediction."""
        from PIL import Image
        from tensorflow.keras.applications.mobilenet_v2 import preprocess_input
        from tensorflow.keras.preprocessing.image import img_to_array

        img = Image.open(io.BytesIO(content)).resize([224, 224])
        arr = img_to_array(img)
        return preprocess_input(arr)

    def featurize_series(model, content_series):
        """Featurize a pd.Series of raw images using the input model."""
        input = np.stack(content_series.map(preprocess))
        preds = model.predict(input, verbose=0)
        output = [p.flatten() for p in preds]
        return pd.Series(output)

    @pandas_udf("array<float>", PandasUDFType.SCALAR_ITER)
    def featurize_udf(content_series_iter):
        model = model_fn()
        for content_series in content_series_iter:
            yield featurize_series(model, content_series)

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1024")
    return images_df.repartition(24).select(
        col("path"), col("label"), featurize_udf("content").alias("features")
    )


def driver_weights(weights_path: str) -> list:
    """The backbone's weights built on the driver, as the study did before broadcasting them.

    The study built ``MobileNetV2(weights='imagenet', include_top=True)`` and cut it at
    ``layers[-2]``; those are the backbone's weights, which the local no-top ``.h5``
    holds in the same order.
    """
    from tensorflow.keras.applications.mobilenet_v2 import MobileNetV2

    model = MobileNetV2(weights=weights_path, include_top=False, pooling="avg", input_shape=(224, 224, 3))
    return model.get_weights()


def featurize_and_write(spark, input_path: str, output_dir: str, weights_path: str) -> tuple[object, int, dict]:
    """The study notebook from reading the images to writing the features (``Results/``).

    Returns
    -------
    tuple
        The cached ``features_df``, its row count and ``seconds`` (``read``; ``model``: the
        driver's network and broadcast; ``featurize``: read + featurize, the cached count;
        ``write``: the features' Parquet write).
    """
    from pyspark.sql.functions import element_at, split

    seconds = {}
    start = time.perf_counter()
    images = (spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg")
              .option("recursiveFileLookup", "true").load(input_path))
    images = images.withColumn("label", element_at(split(images["path"], "/"), -2))
    images.select("path", "label").show(5, False)
    seconds["read"] = time.perf_counter() - start

    start = time.perf_counter()
    weights = driver_weights(weights_path)
    seconds["model"] = time.perf_counter() - start

    start = time.perf_counter()
    features_df = run(spark, images, weights)
    features_df.cache()
    count = features_df.count()
    seconds["featurize"] = time.perf_counter() - start

    start = time.perf_counter()
    features_df.write.mode("overwrite").parquet(os.path.join(output_dir, "Results"))
    seconds["write"] = time.perf_counter() - start
    return features_df, count, seconds


def end_to_end(spark, input_path: str, output_dir: str, weights_path: str, *, k: int = 50) -> dict:
    """The study notebook from reading the images to writing the PCA features; seconds per stage.

    Returns
    -------
    dict
        ``images``, ``cumulative_variance_at_k`` and ``seconds`` (those of
        :func:`featurize_and_write`, ``write`` then covering both Parquet writes; ``pca``:
        vectors, fit and the rows shown).
    """
    from pyspark.ml.feature import PCA
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.functions import udf

    features_df, count, seconds = featurize_and_write(spark, input_path, output_dir, weights_path)

    start = time.perf_counter()

    def array_to_vector(array):
        return Vectors.dense(array)

    array_to_vector_udf = udf(array_to_vector, VectorUDT())
    features_df = features_df.withColumn("features", array_to_vector_udf(features_df["features"]))
    model_pca = PCA(k=k, inputCol="features", outputCol="pca_features").fit(features_df)
    df_pca = model_pca.transform(features_df)
    df_pca.show()
    seconds["pca"] = time.perf_counter() - start

    start = time.perf_counter()
    df_pca.write.mode("overwrite").parquet(os.path.join(output_dir, "Result_PCA"))
    first_row_pca = df_pca.limit(1).toPandas()
    seconds["write"] += time.perf_counter() - start
    cumulative = model_pca.explainedVariance.toArray().cumsum()
    print(f"{len(first_row_pca['pca_features'][0])} PCA features; cumulative variance explained by the "
          f"first {k} components: {cumulative[k - 1]:.4f}")
    return {"images": count, "cumulative_variance_at_k": float(cumulative[k - 1]), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="folder of class sub-folders of .jpg images")
    parser.add_argument("--output", required=True, help="where Results/ and Result_PCA/ go")
    parser.add_argument("--weights", required=True, help="Keras MobileNetV2 no-top .h5 weights")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--result", help="write the figures here as JSON")
    parser.add_argument("--features-only", action="store_true",
                        help="stop once the features are written (Results/): no PCA (bench/peers.py)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fruits.spark.session import local_spark  # the project's session settings, so both sides get the same Spark

    spark = local_spark(args.master, app_name="study-pattern")  # this file runs as __main__: pickled by value
    if args.features_only:
        _, count, seconds = featurize_and_write(spark, args.input, args.output, args.weights)
        figures = {"images": count, "seconds": seconds}
    else:
        figures = end_to_end(spark, args.input, args.output, args.weights, k=args.k)
    spark.stop()
    if args.result:
        with open(args.result, "w") as handle:
            json.dump(figures, handle)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
