"""What the user gave, listed, read and compared in Spark: the driver never holds a list of every image.

Modules, one job each:

:mod:`~fruits.inputs.listing`
    driver checks (:func:`~fruits.inputs.listing.check_input`: exists, a folder, not
    empty; top level only), then the listing on the executors, written once as
    Parquet (:func:`~fruits.inputs.listing.list_files`); every file is an image or
    skipped with its reason.
:mod:`~fruits.inputs.reading`
    the images' bytes, read by the executors from the listing's rows; a file that
    cannot be read gets a reason instead.
:mod:`~fruits.inputs.inventory`
    incremental runs: the listing against the previous run's ``inventory/``, by joins.
:mod:`~fruits.inputs.calibration`
    the ``onnx-int8`` calibration paths, chosen in Spark by the engine's own rule.
"""
