"""The spec's settings, typed by hand from ``../shared/spec/``, beside the code that should hold them.

One module per paper (``mv2015.py``, ``mv2016.py``, …) defines ``ROWS``: a list of :class:`Row`. Each row names
a setting, its value and section in the spec, a Python expression that reads the value the code uses (from the
reproductions' settings tables and constants; evaluated with ``reproductions.<paper module>`` and ``tfrestore``
imported), and the test that holds the behaviour (that the code *uses* the setting, not only that it is typed
right). ``tests/test_fidelity.py`` compares every row; ``python tests/fidelity_doc.py`` writes
``docs/fidelity.md`` from the same rows, and a test checks that the file is current.

The values here are copied from the spec, never from the code: a row is only worth something if it can
disagree with the code.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from typing import Any

PAPER_ORDER = ("mv2015", "mv2016", "representation_study", "deconv", "foe_priors", "dip", "ae_prior",
               "adversarial", "layer_inversion")


@dataclasses.dataclass(frozen=True)
class Row:
    """One setting of one experiment (``experiment="*"``: every experiment of the paper)."""
    paper: str
    experiment: str
    setting: str
    value: Any                  # as the spec gives it (numbers, strings, tuples of them)
    spec: str                   # file and section, e.g. "mv2015.md §2"
    code: str                   # an expression reading the code's value, e.g. "mv2015.MOMENTUM"
    test: str = ""              # "test_file.py::test_name" holding the behaviour; "" = the fidelity test only
    rel: float = 1e-6           # relative tolerance for numbers


def rows() -> list[Row]:
    """Every paper's rows, papers in README order."""
    out = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: _order(m.name)):
        out.extend(importlib.import_module(f"{__name__}.{info.name}").ROWS)
    return out


def _order(name: str) -> tuple[int, str]:
    return (PAPER_ORDER.index(name) if name in PAPER_ORDER else len(PAPER_ORDER), name)


def namespace() -> dict:
    """What a row's ``code`` expression may use: each paper's reproduction module by its --paper name, tfrestore,
    numpy."""
    import numpy as np

    import reproductions
    import tfrestore
    ns = {"np": np, "tfrestore": tfrestore, "reproductions": reproductions}
    for paper in reproductions.PAPERS:
        ns[paper] = reproductions.get(paper)
    return ns


def read(row: Row, ns: dict | None = None) -> Any:
    return eval(row.code, ns or namespace())   # noqa: S307 — expressions written in this folder


def same(expected: Any, actual: Any, rel: float = 1e-6) -> bool:
    """Equal up to ``rel`` for numbers, element by element for sequences and dicts; str / bool exactly."""
    if isinstance(expected, (bool, str)) or expected is None:
        return expected == actual
    if isinstance(expected, (int, float)):
        try:
            return math.isclose(float(expected), float(actual), rel_tol=rel, abs_tol=0.0 if expected else 1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, dict):
        return isinstance(actual, dict) and set(expected) == set(actual) and all(
            same(v, actual[k], rel) for k, v in expected.items())
    if isinstance(expected, (list, tuple)):
        try:
            actual = list(actual)
        except TypeError:
            return False
        return len(expected) == len(actual) and all(same(e, a, rel) for e, a in zip(expected, actual))
    return expected == actual


def _cell(v: Any) -> str:
    text = repr(v) if not isinstance(v, str) else v
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """docs/fidelity.md: per paper and experiment, each setting with its spec value and section, where the code
    sets it and the test that holds it."""
    lines = ["# Fidelity table", "",
             "Every setting the spec gives for each paper and experiment: its value and section in "
             "`../shared/spec/`, where the code sets it, and the test that holds it. Generated from "
             "`tests/spec_values/` by `python tests/fidelity_doc.py`; `tests/test_fidelity.py` compares every row "
             "with the code (and fails when this file is out of date).", ""]
    paper = None
    for r in rows():
        if r.paper != paper:
            paper = r.paper
            lines += ["", f"## {paper}", "", "| experiment | setting | spec value | spec | code | test |",
                      "|---|---|---|---|---|---|"]
        test = r.test or f"test_fidelity.py::test_settings_match_the_spec[{r.paper}]"
        lines.append(f"| {_cell(r.experiment)} | {_cell(r.setting)} | {_cell(r.value)} | {_cell(r.spec)} | "
                     f"`{_cell(r.code)}` | `{_cell(test)}` |")
    return "\n".join(lines) + "\n"
