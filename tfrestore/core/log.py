"""The library's status lines ("training the digits classifier …", "schedule scaled to …", the random-weights
notice) go through :mod:`logging`, logger ``tfrestore`` (children ``tfrestore.<module>``).

As Hugging Face's libraries do, the ``tfrestore`` logger gets a handler of its own the first time a line is
logged — bare text on the *current* ``sys.stdout`` (redirections and pytest's capture see it), INFO and above,
not passed on to the root logger (absl's handler there would prefix every line). Stdout, in order with the
progress lines and results: the command lines keep stderr for ``error:`` lines alone — unless the application has
configured that logger first (given it a handler or a level): then its settings stand. So
``logging.getLogger("tfrestore").setLevel(logging.WARNING)`` silences the INFO lines, and a handler of the
application's own sends them to a file. Importing tfrestore configures no logger.

What a command prints as its result (tables, the store's listing) stays ``print``: that is output, not status.
"""
from __future__ import annotations

import logging
import sys

ROOT = "tfrestore"


def logger(name: str) -> logging.Logger:
    """The logger of one part of the library, e.g. ``logger(__name__)``."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


def say(log: logging.Logger, message: str, level: int = logging.INFO) -> None:
    """Log ``message`` at ``level`` (configuring the ``tfrestore`` logger first if nobody has)."""
    _configure()
    log.log(level, message)


def _configure() -> None:
    root = logging.getLogger(ROOT)
    if root.handlers or root.level != logging.NOTSET or not root.propagate:
        return                                  # the application's settings stand
    root.addHandler(CurrentStdout())
    root.setLevel(logging.INFO)
    root.propagate = False


class CurrentStdout(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stdout`` is when a line is logged (redirections and pytest's
    capture see it), with the bare message."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def status(line: str) -> None:
    """One status line of the library (``tfrestore`` logger, INFO): the default ``say`` of the store, the
    trainers and the loop's callbacks."""
    say(logging.getLogger(ROOT), line)
