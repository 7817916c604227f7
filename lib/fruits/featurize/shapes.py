"""The network's shapes, in one place: the square input side and the width of the features.

Every engine takes ``uint8`` pixels ``(n, INPUT_SIZE, INPUT_SIZE, 3)`` (or another
``image_size`` when its model allows) and returns ``float32`` features
``(n, FEATURE_DIM)``: MobileNetV2 without its top, average-pooled. Parameter
validation (:mod:`fruits.params`), preprocessing, the engines, the PCA, the evaluation
and the cluster doctor read these two numbers from here. No import: the parameters
read it without loading NumPy, Pillow or the engines.
"""

#: Side of the square input MobileNetV2 was trained at, as in the study: the default ``image_size``.
INPUT_SIZE = 224

#: Width of MobileNetV2's pooled feature vector (``include_top=False, pooling="avg"``).
FEATURE_DIM = 1280
