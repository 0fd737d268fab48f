import sys, os; sys.path.insert(0, os.path.dirname(__file__))
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path_factory, monkeypatch):
    """Every test sees an empty weight store unless it writes one."""
    monkeypatch.setenv("TFRESTORE_HOME", str(tmp_path_factory.mktemp("tfrestore_home")))
