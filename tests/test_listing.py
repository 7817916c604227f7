import pytest

from fruits.listing import UNLABELLED, InputError, label_for, list_inputs


def _touch(path, content=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def test_label_is_the_parent_folder():
    assert label_for("/d/Test/Apple Braeburn/1.jpg", "/d/Test") == "Apple Braeburn"
    assert label_for("/d/Test/Kiwi/deeper/2.jpg", "/d/Test") == "deeper"
    assert label_for("/d/Test/3.jpg", "/d/Test/") == UNLABELLED
    assert label_for("s3://b/Test/Kiwi/4.jpg", "s3://b/Test") == "Kiwi"


def test_listing_sorts_images_from_everything_else(tmp_path):
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
    listing = list_inputs(str(root))
    labels = {image.path.rsplit("/", 1)[1]: image.label for image in listing.images}
    assert labels == {"a.jpg": "Kiwi", "b.JPEG": "Kiwi", "c.PnG": "Pomme d'été",
                      "d.jpg": "nested", "loose.jpg": UNLABELLED}
    reasons = {path.rsplit("/", 1)[1]: reason for path, reason in listing.skipped}
    assert set(reasons) == {".DS_Store", "_hidden.jpg", "README.txt", "zero.jpg"}
    assert reasons["zero.jpg"] == "empty file (0 bytes)"
    assert reasons["README.txt"].startswith("not an image file name")
    assert reasons[".DS_Store"].startswith("hidden or system file")
    assert listing.total == 9
    assert all(image.path.startswith(str(root)) for image in listing.images)


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list_inputs(str(tmp_path / "nope"))


def test_empty_input_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "Kiwi").mkdir(parents=True)
    with pytest.raises(InputError, match="is empty"):
        list_inputs(str(tmp_path / "empty"))


def test_input_without_images_is_a_clear_error(tmp_path):
    _touch(tmp_path / "docs" / "notes.txt")
    with pytest.raises(InputError, match="no readable image"):
        list_inputs(str(tmp_path / "docs"))


def test_a_file_is_not_an_input_folder(tmp_path):
    _touch(tmp_path / "one.jpg")
    with pytest.raises(InputError, match="is a file"):
        list_inputs(str(tmp_path / "one.jpg"))
