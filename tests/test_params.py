import pytest

from fruits.params import RunParams


def test_defaults_are_valid():
    params = RunParams().validate()
    assert params.k == 50 and params.is_demo


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("k", 0), ("k", 1281), ("k", "50"), ("k", 2.5), ("k", True),
        ("variance_target", 0), ("variance_target", 1.5), ("variance_target", float("nan")),
        ("engine", "torch"), ("batch_size", 0), ("batch_size", 5000), ("partitions", 0),
        ("threads_per_task", 0), ("mode", "append"), ("seed", -1),
        ("input_path", ""), ("output_dir", " "), ("weights", 3),
    ],
)
def test_bad_value_names_the_parameter(name, value):
    with pytest.raises(ValueError, match=rf"^{name} "):
        RunParams(**{name: value}).validate()


def test_unknown_parameter_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="unknown parameter.*colour.*known: .*batch_size"):
        RunParams.from_mapping({"colour": "red"})


def test_from_namespace_ignores_notebook_only_settings():
    params = RunParams.from_namespace({"k": 7, "master": "local[1]", "variance_target": 0.8})
    assert params.k == 7 and params.variance_target == 0.8
