"""One weight store with a trained digits classifier (and, on request, small digit priors) per test session.

Training the digits net takes ~10 s on the 2-core CI machine; the adversarial and inverter tests share one
instead of each module training its own. Tests point ``$TFRESTORE_HOME`` at :func:`trained_home` (or copy the
weights into their own store with :func:`copy_classifier`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

CLASSIFIER_STEPS = 400          # ~0.99 validation accuracy on the embedded digits
PRIOR_STEPS, PRIOR_PATCHES = 300, 5000
_HOME: dict[str, Path] = {}


def in_store(home: Path, fn):
    old = os.environ.get("TFRESTORE_HOME")
    os.environ["TFRESTORE_HOME"] = str(home)
    try:
        return fn()
    finally:
        if old is None:
            os.environ.pop("TFRESTORE_HOME", None)
        else:
            os.environ["TFRESTORE_HOME"] = old


def trained_home(tmp_path_factory, priors: tuple[str, ...] = ()) -> Path:
    """The session's store: the digits classifier trained once, and the named catalogue priors trained into it
    (``PRIOR_STEPS`` steps on ``PRIOR_PATCHES`` patches) the first time they are asked for."""
    from tfrestore.models import classifier
    from tfrestore.priors import catalogue
    if "home" not in _HOME:
        home = tmp_path_factory.mktemp("digits_store")
        in_store(home, lambda: classifier.train(steps=CLASSIFIER_STEPS, progress=False))
        _HOME["home"] = home
    home = _HOME["home"]
    for name in priors:
        if in_store(home, lambda: catalogue.load(name, "digits")) is None:
            in_store(home, lambda: catalogue.train(name, "digits", steps=PRIOR_STEPS, patches=PRIOR_PATCHES,
                                                    progress=False))
    return home


def copy_classifier(tmp_path_factory, to: Path) -> Path:
    """``to`` as a store holding the session's trained digits classifier (and nothing else)."""
    from tfrestore.nets import weights
    src = in_store(trained_home(tmp_path_factory), lambda: weights.weight_path("digits"))
    dst = in_store(to, lambda: weights.weight_path("digits"))
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return to
