"""The original study's featurization, reimplemented faithfully as the benchmark's baseline.

Same recipe as its notebook (see the study's slides, section 3.1.5): Pillow resize,
``img_to_array``, ``preprocess_input``; a scalar-iterator pandas UDF that rebuilds
MobileNetV2 (with its ImageNet classifier) in every task, cuts it at ``layers[-2]``,
sets the broadcast weights and calls ``model.predict`` on each Arrow batch of 1024;
``repartition(24)``. The one change: weights come from a local file (the study
downloaded ``imagenet``, which this machine cannot).
"""

from __future__ import annotations

import io

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
