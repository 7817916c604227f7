import re

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


def test_session_params_default_to_the_spark_settings_and_name_a_bad_value():
    from fruits.spark import settings as spark_settings
    from fruits.params import SessionParams

    assert SessionParams().validate() == SessionParams(spark_settings.LOCAL_MASTER, spark_settings.DRIVER_MEMORY)
    with pytest.raises(ValueError, match="^master must be a non-empty string, got ''"):
        SessionParams(master="").validate()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("k", 2.0, "k must be an integer, got 2.0"),
    ("k", None, "k must be an integer, got None"),
    ("partitions", "4", "partitions must be an integer or null, got '4'"),
    ("output_dir", None, "output_dir must be a string, got None"),
    ("seed", False, "seed must be an integer, got False"),
])
def test_check_type_refuses_what_the_field_cannot_hold(name, value, message):
    from fruits.params import check_type

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_type(name, value, [RunParams])


@pytest.mark.parametrize(("name", "value"), [("k", 7), ("variance_target", 1), ("variance_target", 0.5),
                                             ("partitions", None), ("weights", "x.h5")])
def test_check_type_accepts_what_the_field_can_hold(name, value):
    from fruits.params import check_type

    check_type(name, value, [RunParams])
