# Shared body of notebooks/01-featurize-local.py and notebooks/02-featurize-emr.py.
# tools/sync_derived.py copies it into both (make sync-notebooks); edit it here, not there.
# The cells above the "notebook's own session" line follow each notebook's parameters cell;
# the cells below it follow each notebook's own "## Spark session" cells. Each cell keeps its
# markdown heading: the HTML report shows it.

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

# %% notebook's own session

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
