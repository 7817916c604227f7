"""On EMR PySpark comes with Spark (/usr/lib/spark/python), not from pip: the library finds it there."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def fake_spark_home(root: Path) -> Path:
    """A Spark installation laid out like EMR's: python/pyspark and python/lib/py4j-*-src.zip."""
    package = root / "python" / "pyspark"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = 'emr-spark'\n")
    (root / "python" / "lib").mkdir()
    with zipfile.ZipFile(root / "python" / "lib" / "py4j-0.10.9.7-src.zip", "w") as archive:
        archive.writestr("py4j/__init__.py", "")
    return root


def test_a_python_without_pyspark_imports_the_installed_spark(tmp_path):
    home = fake_spark_home(tmp_path / "spark")
    # -S: no site-packages, so the venv's pyspark wheel is out of reach, as on an EMR node.
    code = ("import sys; sys.path.insert(0, 'lib'); from fruits.spark.session import use_installed_spark; "
            "use_installed_spark(); import pyspark, py4j; print(pyspark.__version__, py4j.__file__)")
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={"SPARK_HOME": str(home), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("emr-spark ") and "py4j-0.10.9.7-src.zip" in result.stdout


def test_no_pyspark_and_no_spark_is_a_clear_error(tmp_path):
    code = ("import sys; sys.path.insert(0, 'lib'); from fruits.spark.session import use_installed_spark; "
            "use_installed_spark()")
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, timeout=60)
    if Path("/usr/lib/spark").is_dir():
        pytest.skip("this machine has /usr/lib/spark")
    assert result.returncode == 1 and "set SPARK_HOME" in result.stderr


def test_spark_home_without_pyspark_is_refused(tmp_path):
    from fruits.spark.session import spark_python_paths

    with pytest.raises(FileNotFoundError, match="no PySpark in"):
        spark_python_paths(str(tmp_path))
