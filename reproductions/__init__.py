"""One module per paper or experiment; each exposes ``DESCRIPTION``, ``EXPERIMENTS`` (where it has several) and the
paper contract (:mod:`reproductions.paper`): a frozen ``Flags`` dataclass of the command-line flags it takes,
``default_out(flags)`` and ``run(flags, ctx)``.

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
    "adversarial": "reproductions.adversarial",
    "layer_inversion": "reproductions.layer_inversion",
    "dip": "reproductions.dip",
    "ae_prior": "reproductions.ae_prior",
}


def get(paper: str):
    if paper not in PAPERS:
        raise ValueError(f"unknown paper '{paper}'; valid: {', '.join(PAPERS)}")
    module, _, attribute = PAPERS[paper].partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded
