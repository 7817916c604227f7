# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-all
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fruits! — MobileNetV2 features and their PCA, on local Spark
#
# Reads a folder of images (one sub-folder per class, the label is the folder's name),
# computes MobileNetV2 ImageNet features (1280 per image) in Spark tasks (a `mapInArrow`
# function feeds batches of images to the chosen engine), reduces them with a one-pass PCA
# (Spark sums the features' moments, NumPy decomposes them on the driver and projects each
# batch; the model is saved as a Spark ML `PCAModel`) and writes everything next to a
# `manifest.json`. The same library calls run on EMR in `02-featurize-emr`; only the
# parameters and the session differ. Without `input_path`, the run uses synthetic images the project generates.

# %% tags=["parameters"]
# Generated from fruits.params (RunParams, SessionParams) by tools/sync_derived.py: change defaults there.
# Other values: -p NAME VALUE, or a YAML file (fruits run -f params/local-full.yaml; papermill -f).
input_path = None  # folder of class sub-folders (local or s3://); None: generated synthetic demo images
output_dir = "output/demo"  # receives runs/<run id>/ (features/, pca/, manifest.json, ...) and current.json
weights = None  # "imagenet", a Keras .h5 path (local or s3://), "random"; None: FRUITS_WEIGHTS, then Keras' cache
k = 50  # PCA components kept
variance_target = None  # e.g. 0.9: keep the fewest components reaching it (overrides k)
engine = "onnx"  # "onnx" (default, equal to Keras), "keras" (the reference), "tflite" (int8 phone model), "onnx-int8" (faster, close to onnx)
image_size = 224  # 100: fast mode at Fruits-360's native size (different features)
batch_size = None  # images per network call inside a task; None: the engine's own (1 for ONNX Runtime, 32 for Keras)
partitions = None  # Spark partitions for featurization; None: from the image count
threads_per_task = 1  # network threads per Spark task
mode = "error"  # "overwrite" replaces a run in output_dir, "incremental" adds new images to it
pca = "refit"  # "reuse": incremental runs keep the previous PCA model
seed = 0  # random weights and sample images
train_path = None  # labelled training set: score the features with a classifier
keep_runs = 2  # runs kept under output_dir/runs/, this one included; older ones are deleted
run_id = None  # this run's folder under output_dir/runs/; None: a new one, sorting by time
shared_paths = None  # folders mounted on every node (NFS, EFS), comma-separated: off local[N], local paths must be under one
master = "local[2]"  # Spark master: local[N], spark://HOST:PORT, or yarn on a cluster node
driver_memory = "4g"  # local Spark JVM heap

# %% [markdown]
# ## Checks before Spark starts
# Parameters, input folder, output folder and weights are checked here; a mistake stops
# the run before any Spark job.

# %%
from fruits.inputs.listing import spread_sample
from fruits.report import explore, plots
from fruits.params import RunParams
from fruits.run.execute import execute
from fruits.run.plan import prepare
from fruits.storage.reach import master_of
from fruits.report.display import (confusion_figure, evaluation_figure, per_class_figure,
                                   register_matplot_magic, show_banners, show_evaluation, show_table,
                                   summary_table)

register_matplot_magic()  # `%matplot figure` draws a figure here as in the PySpark (Livy) kernel

prepared = prepare(RunParams.from_namespace(globals()), master=master_of(globals()))  # paths every executor reaches
show_banners(prepared.banners)
print(f"{prepared.input_path}: {len(prepared.source.folders)} class folders; Spark lists their files")
print(prepared.weights.describe())

# %% [markdown]
# ## Spark session

# %% tags=["session"]
from fruits.spark.session import local_spark

spark = local_spark(master, driver_memory=driver_memory, short_run=prepared.short_run)  # small local input: a JVM quick to warm up
spark.version

# %% [markdown]
# ## Featurize, reduce, write

# %%
result = execute(spark, prepared)
show_table(summary_table(result.manifest))

# %% [markdown]
# ## Images per class

# %%
figure = plots.class_counts(explore.class_counts(spark, result.layout))
# %matplot figure

# %% [markdown]
# ## Sample images

# %%
figure = plots.sample_grid(explore.sample_images(
    spread_sample(spark.read.parquet(result.layout.features), per_label=2, seed=seed), count=16, seed=seed))
# %matplot figure

# %% [markdown]
# ## Explained variance

# %%
figure = plots.variance_curve(result.pca.spectrum, result.pca.k, variance_target=variance_target)
# %matplot figure

# %% [markdown]
# ## The images on the first two principal components
# At most 5,000 images, drawn at random; each class's name sits at its centroid. The HTML
# report adds an interactive version of this map (hover a point to see its image).

# %%
figure = plots.pca_map(explore.pca_points(spark, result.layout, seed=seed))
# %matplot figure

# %% [markdown]
# ## What looks alike to the network
# Images from six random classes, each followed by the five images closest to it in the
# k-dimensional PCA space (Euclidean distance, searched over every image of the run). Fruits-360
# photographs each fruit from many angles, so close neighbours are often other views of it.

# %%
figure = plots.nearest_neighbours(explore.nearest_neighbours(spark, result.layout, seed=seed))
# %matplot figure

# %% [markdown]
# ## Are the features any good?
# With `train_path`, a logistic regression is trained on the PCA features of a labelled
# training set and scored on this run's images, for k and for a sweep of k.

# %%
show_evaluation(result.manifest)

# %%
figure = evaluation_figure(result.manifest)
# %matplot figure

# %% [markdown]
# ### Which classes are recognised worst?

# %%
figure = per_class_figure(result.manifest)
# %matplot figure

# %% [markdown]
# ### Which classes does it confuse, in pictures?
# For the most confused pairs: images of the true class that the classifier took for another
# class, next to images of that other class.

# %%
figure = confusion_figure(spark, result.layout, result.manifest)
# %matplot figure

# %% [markdown]
# ## Rejected files
# Every file that was given but not featurized, with the reason (first 50).

# %%
show_table(explore.rejected(spark, result.layout, limit=50), empty="No file was rejected.")

# %% [markdown]
# ## Timings

# %%
figure = plots.timings(explore.timings(result.manifest), images_per_second=result.manifest["images_per_second"])
# %matplot figure
