"""The report's Spark queries against the same answer computed with NumPy on the driver."""

from __future__ import annotations

import numpy as np

from fruits.report import explore
from fruits.storage.layout import OutputLayout


def test_nearest_neighbours_are_the_closest_images_by_euclidean_distance(spark, tmp_path):
    rng = np.random.default_rng(3)
    labels = [f"class{index}" for index in range(8)]
    rows = [(f"/nowhere/{label}/{number}.jpg", label, rng.normal(size=5).round(1).tolist())
            for label in labels for number in range(30)]  # rounded: exact distance ties, broken by path
    layout = OutputLayout(str(tmp_path / "run"))
    spark.createDataFrame(rows, "path string, label string, pca_features array<float>").repartition(3) \
        .write.parquet(layout.pca)

    found = explore.nearest_neighbours(spark, layout, queries=4, neighbours=5, seed=7)

    vectors = {path: np.asarray(values, dtype=np.float32).astype(np.float64) for path, _, values in rows}
    assert sorted(found["query"].unique()) == [0, 1, 2, 3]
    assert found.groupby("query")["label"].first().nunique() == 4  # one query per class
    for _, group in found.groupby("query"):
        group = group.sort_values("rank")
        assert group["rank"].tolist() == [0, 1, 2, 3, 4, 5]
        query = group["path"].iloc[0]
        expected = sorted((float(np.sum((vectors[path] - vectors[query]) ** 2)), path)
                          for path in vectors if path != query)[:5]
        assert group["path"].iloc[1:].tolist() == [path for _, path in expected]
        np.testing.assert_allclose(group["distance"].iloc[1:], [np.sqrt(d2) for d2, _ in expected], rtol=1e-9)
        assert all(pixels.shape == (100, 100, 3) for pixels in group["pixels"])  # unreadable: blank tiles


def test_pca_points_are_every_row_or_a_seeded_sample_without_repeats(spark, tmp_path):
    rows = [(f"/nowhere/{index}.jpg", f"class{index % 3}", [float(index), float(-index), 0.5])
            for index in range(40)]
    layout = OutputLayout(str(tmp_path / "run"))
    spark.createDataFrame(rows, "path string, label string, pca_features array<float>").repartition(4) \
        .write.parquet(layout.pca)

    every = explore.pca_points(spark, layout, max_points=100)
    assert sorted(every["pc1"]) == [float(index) for index in range(40)]
    assert (every["pc2"] == -every["pc1"]).all()
    assert all(every["label"] == [f"class{int(pc1) % 3}" for pc1 in every["pc1"]])

    sample = explore.pca_points(spark, layout, max_points=10, seed=5)
    assert len(sample) == 10 and sample["pc1"].is_unique and set(sample["pc1"]) <= set(every["pc1"])
    again = explore.pca_points(spark, layout, max_points=10, seed=5)
    assert sorted(again["pc1"]) == sorted(sample["pc1"])  # the same seed, the same sample


def test_class_counts_come_from_the_manifest_or_else_from_features(spark, tmp_path):
    import json

    rows = [(f"/nowhere/{label}/{index}.jpg", label, [0.0]) for label, n in (("b", 3), ("a", 2)) for index in range(n)]
    layout = OutputLayout(str(tmp_path / "run"))
    spark.createDataFrame(rows, "path string, label string, features array<float>").write.parquet(layout.features)

    with open(layout.manifest, "w") as handle:
        json.dump({"featurized_by_class": {"b": 30, "a": 20}}, handle)  # what the run's write step counted
    recorded = explore.class_counts(spark, layout)
    assert recorded.to_dict() == {"a": 20, "b": 30} and list(recorded.index) == ["a", "b"]

    with open(layout.manifest, "w") as handle:
        json.dump({"run_id": "written before runs counted classes"}, handle)
    counted = explore.class_counts(spark, layout)
    assert counted.to_dict() == {"a": 2, "b": 3} and list(counted.index) == ["a", "b"]
