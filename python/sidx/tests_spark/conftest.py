"""Fixtures of the Spark recipe's tests (python/sidx_spark.py): run them in the
venv scripts/spark-encode.sh sets up (.venv-spark: PySpark, the sidx wheel),
with Java 17+ on PATH and SIDX_BIN naming the sidx binary."""

import importlib.util
import pathlib
import shutil
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("sidx_test_support", HERE.parent / "tests/conftest.py")
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)
ROOT, run, sidx_bin = support.ROOT, support.run, support.sidx_bin
sys.path.insert(0, str(ROOT / "python"))  # sidx_spark


@pytest.fixture(scope="session")
def java():
    # Never a skip: scripts/test.sh runs this suite only where java is found.
    assert shutil.which("java"), "PySpark needs Java 17+ on PATH"
    import pyspark  # noqa: F401  (.venv-spark has it)
