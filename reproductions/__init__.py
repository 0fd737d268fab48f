"""One module per paper or experiment; each exposes ``DESCRIPTION``, ``EXPERIMENTS`` (where it has several) and a
keyword-only ``run(...) -> dict`` whose arguments are the command-line flags it takes.

``PAPERS`` maps the ``--paper`` flag of ``main.py`` to the module that runs it.
"""
import importlib

PAPERS = {
    "forward": "reproductions.forward",
    "mv2015": "reproductions.mv2015",
    "mv2016": "reproductions.mv2016",
    "representation_study": "reproductions.representation_study",
    "deconv": "reproductions.deconv_layer",
    "foe_priors": "reproductions.foe_priors",
}


def get(paper: str):
    if paper not in PAPERS:
        raise ValueError(f"unknown paper '{paper}'; valid: {', '.join(PAPERS)}")
    return importlib.import_module(PAPERS[paper])
