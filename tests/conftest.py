import sys, os; sys.path.insert(0, os.path.dirname(__file__))
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import contextlib  # noqa: E402

import pytest  # noqa: E402


@contextlib.contextmanager
def shared_net_builds():
    """Within the block, ``nets.build`` returns one model per (net, weights, size, seed, options): the same seeded
    weights a fresh build gives, built once (a random AlexNet takes longer to build than a tiny run). Yields the
    {key: model} cache."""
    from tfrestore import nets
    built, original = {}, nets.build

    def build(name, weights="auto", image_size=None, seed=0, quiet=False, **kwargs):
        key = (name, str(weights), image_size, seed, tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = original(name, weights=weights, image_size=image_size, seed=seed, quiet=quiet, **kwargs)
        return built[key]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nets, "build", build)
        yield built


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path_factory, monkeypatch):
    """Every test sees an empty weight store unless it writes one."""
    monkeypatch.setenv("TFRESTORE_HOME", str(tmp_path_factory.mktemp("tfrestore_home")))
