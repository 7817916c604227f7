"""The input's listing: refusals on the driver before Spark, then one row per file from the executors."""

import pytest

from fruits.inputs.listing import (EMPTY, HIDDEN, UNLABELLED, InputError, check_input, label_for, list_files,
                                   skip_reason)


def _touch(path, content=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def test_label_is_the_parent_folder():
    assert label_for("/d/Test/Apple Braeburn/1.jpg", "/d/Test") == "Apple Braeburn"
    assert label_for("/d/Test/Kiwi/deeper/2.jpg", "/d/Test") == "deeper"
    assert label_for("/d/Test/3.jpg", "/d/Test/") == UNLABELLED
    assert label_for("s3://b/Test/Kiwi/4.jpg", "s3://b/Test") == "Kiwi"


def test_skip_reasons_by_name_and_size():
    assert skip_reason("/in/K/a.jPeG", 1) is None
    assert skip_reason("/in/K/.DS_Store", 10) == HIDDEN
    assert skip_reason("/in/K/_SUCCESS", 0) == HIDDEN
    assert skip_reason("/in/K/notes.txt", 10).startswith("not an image file name")
    assert skip_reason("/in/K/zero.png", 0) == EMPTY


def test_listing_sorts_images_from_everything_else(spark, tmp_path):
    root = tmp_path / "in"
    _touch(root / "Kiwi" / "a.jpg")
    _touch(root / "Kiwi" / "b.JPEG")
    _touch(root / "Pomme d'été" / "c.PnG")
    _touch(root / "Kiwi" / "nested" / "d.jpg")
    _touch(root / "loose.jpg")
    _touch(root / "Kiwi" / ".DS_Store")
    _touch(root / "Kiwi" / "_hidden.jpg")
    _touch(root / "README.txt")
    _touch(root / "Kiwi" / "zero.jpg", b"")
    _touch(root / ".hidden-folder" / "e.jpg")  # a hidden folder's files are given too
    source = check_input(str(root))
    assert source.folders == tuple(str(root / name) for name in (".hidden-folder", "Kiwi", "Pomme d'été"))
    assert source.has_loose_files
    listing = list_files(spark, source, str(tmp_path / "scratch" / "listing"))
    rows = {row.path.rsplit("/", 1)[1]: row for row in listing.frame.collect()}
    assert len(rows) == listing.total == 10
    labels = {name: row.label for name, row in rows.items() if row.reason is None}
    assert labels == {"a.jpg": "Kiwi", "b.JPEG": "Kiwi", "c.PnG": "Pomme d'été",
                      "d.jpg": "nested", "loose.jpg": UNLABELLED, "e.jpg": ".hidden-folder"}
    reasons = {row.path.rsplit("/", 1)[1]: row.reason for row in listing.skipped().collect()}
    assert set(reasons) == {".DS_Store", "_hidden.jpg", "README.txt", "zero.jpg"}
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert reasons["README.txt"].startswith("not an image file name")
    assert reasons[".DS_Store"].startswith("hidden or system file")
    assert listing.classes == {".hidden-folder": 1, "Kiwi": 2, "Pomme d'été": 1, "nested": 1, UNLABELLED: 1}
    assert listing.image_count == 6 and listing.skipped_count == 4
    assert all(path.startswith(str(root) + "/") for path in (row.path for row in rows.values()))
    assert rows["a.jpg"].size == 1 and rows["a.jpg"].modified == pytest.approx((root / "Kiwi" / "a.jpg").stat().st_mtime)


def test_the_listing_is_a_snapshot(spark, tmp_path):
    """Counts and every later DataFrame come from the Parquet written once, not from a new listing."""
    root = tmp_path / "in"
    for index in range(5):
        _touch(root / "Kiwi" / f"{index}.jpg")
    listing = list_files(spark, check_input(str(root)), str(tmp_path / "listing"))
    _touch(root / "Kiwi" / "late.jpg")
    (root / "Kiwi" / "0.jpg").unlink()
    assert listing.images().count() == listing.image_count == 5
    assert "late.jpg" not in {row.path.rsplit("/", 1)[1] for row in listing.images().collect()}


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_input(str(tmp_path / "nope"))


def test_empty_input_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is empty"):
        check_input(str(tmp_path / "empty"))


def test_input_of_empty_folders_is_refused_after_the_listing(spark, tmp_path):
    (tmp_path / "empty" / "Kiwi").mkdir(parents=True)
    source = check_input(str(tmp_path / "empty"))  # the driver looks at the top level only
    with pytest.raises(InputError, match="is empty: it holds no files"):
        list_files(spark, source, str(tmp_path / "listing"))


def test_input_without_images_is_a_clear_error(spark, tmp_path):
    _touch(tmp_path / "docs" / "b" / "notes.txt")
    _touch(tmp_path / "docs" / "a.jpg", b"")
    with pytest.raises(InputError, match=r"holds 2 file\(s\) but no readable image .*; first: .*/docs/a.jpg "
                                         r"\(empty file \(0 bytes\)\)"):
        list_files(spark, check_input(str(tmp_path / "docs")), str(tmp_path / "listing"))


def test_a_file_is_not_an_input_folder(tmp_path):
    _touch(tmp_path / "one.jpg")
    with pytest.raises(InputError, match="is a file"):
        check_input(str(tmp_path / "one.jpg"))


def test_an_unknown_scheme_cannot_be_opened():
    with pytest.raises(InputError, match="cannot be opened"):
        check_input("nosuchscheme://bucket/images")


def test_the_listing_labels_its_jobs_and_gives_the_step_its_label_back(spark, tmp_path):
    """Its jobs show "fruits: list ..."; the caller's label is back afterwards, also when it fails."""
    from fruits.spark.jobs import DESCRIPTION_PROPERTY, job_description

    context = spark.sparkContext
    (tmp_path / "in" / "Kiwi").mkdir(parents=True)
    (tmp_path / "in" / "Kiwi" / "a.jpg").write_bytes(b"x")
    context.setJobDescription("fruits: evaluation")
    try:
        with job_description(spark, "inside"):
            assert context.getLocalProperty(DESCRIPTION_PROPERTY) == "inside"
        assert context.getLocalProperty(DESCRIPTION_PROPERTY) == "fruits: evaluation"
        with pytest.raises(RuntimeError), job_description(spark, "inside"):
            raise RuntimeError("a job of the block failed")
        assert context.getLocalProperty(DESCRIPTION_PROPERTY) == "fruits: evaluation"
        list_files(spark, check_input(str(tmp_path / "in")), str(tmp_path / "listing"))
        assert context.getLocalProperty(DESCRIPTION_PROPERTY) == "fruits: evaluation"
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "notes.txt").write_text("not an image")
        with pytest.raises(InputError):
            list_files(spark, check_input(str(tmp_path / "docs")), str(tmp_path / "listing-2"))
        assert context.getLocalProperty(DESCRIPTION_PROPERTY) == "fruits: evaluation"
    finally:
        context.setJobDescription(None)
