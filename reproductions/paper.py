"""The paper contract: what every reproduction declares, and what ``main.py`` builds from it.

A reproduction module declares

- ``DESCRIPTION`` (one line) and ``EXPERIMENTS`` (name → one line; the default first, or ``DEFAULT_EXPERIMENT``);
- ``Flags``: a frozen dataclass of the command-line flags it takes — typed fields made with :func:`flag` (help
  text, where the default comes from), validated in ``__post_init__`` with errors that name the fix;
- ``run(flags: Flags, ctx: RunContext) -> Result``.

``main.py`` learns everything from that: which flags a paper takes (any other is refused, naming the ones it
does take), their types and defaults for ``--list``, and the run-level settings every paper shares
(:class:`RunContext`: output folder, TensorBoard folder, seed, resume, overwrite, progress). A run keeps its
results in memory (:class:`Result`) and writes them once, at the end (:meth:`Result.write`).
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def flag(default: Any, help: str, *, source: str = "") -> Any:
    """A command-line flag of a paper's ``Flags``: its default, one line of help and, for a paper's constant,
    where the value comes from (e.g. ``"mv2016.md §2"``)."""
    return dataclasses.field(default=default, metadata={"help": help, "source": source})


def weights_flag() -> Any:
    """The ``--weights`` flag every paper on a converted network takes."""
    return flag("auto", "'auto' (the weight store, else seeded random), 'random', or a file")


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Run-level settings every paper takes (``--out``, ``--logdir``, ``--seed``, ``--resume``, ``--overwrite``)
    and how it reports progress."""
    out: Path
    logdir: Path
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    @classmethod
    def create(cls, default_out: str, *, out: str | Path | None = None, logdir: str | Path | None = None,
               seed: int | None = None, resume: bool = False, overwrite: bool = False,
               progress: bool = True) -> "RunContext":
        folder = Path(out or default_out)
        return cls(out=folder, logdir=Path(logdir or folder / "tb"), seed=0 if seed is None else int(seed),
                   resume=bool(resume), overwrite=bool(overwrite), progress=progress)

    def sub(self, name: str) -> "RunContext":
        """The same run, writing into ``out/name`` (and ``logdir/name``): one part of a multi-part experiment."""
        return dataclasses.replace(self, out=self.out / name, logdir=self.logdir / name)


@dataclasses.dataclass
class Result:
    """What a run produced, in memory until :meth:`write`: the metrics (``metrics.json``), the text table, the
    figure's panels, PNGs, arrays, and extra plots (``plots``: file name → a function writing that file)."""
    title: str
    metrics: dict
    table: str = ""
    figure_panels: Sequence[tuple[np.ndarray, str]] = ()
    figure_columns: int | None = None
    pngs: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    png_text: dict[str, str] | None = None
    plots: dict[str, Callable[[Path], object]] = dataclasses.field(default_factory=dict)

    def write(self, out: str | Path) -> Path:
        from tfrestore.core import report
        out = Path(out)
        for name, write in self.plots.items():
            write(out / name)
        return report.write(out, title=self.title, metrics=self.metrics, table=self.table,
                            figure_panels=self.figure_panels, figure_columns=self.figure_columns, pngs=self.pngs,
                            arrays=self.arrays, png_text=self.png_text)


def fields(flags_class: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(flags_class))


def field_type(flags_class: type, name: str) -> Any:
    """The resolved annotation of a Flags field (``int``, ``str | None``, ``tuple[str, ...] | None`` …)."""
    return typing.get_type_hints(flags_class)[name]


def convert(value: Any, annotation: Any) -> Any:
    """A command-line value (absl's: str, int, float, bool, list) as the field's type: lists become tuples."""
    if value is None:
        return None
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return convert(value, args[0])
    if origin is tuple or annotation is tuple:
        return tuple(value)
    return value


def describe(flags_class: type) -> list[str]:
    """``--name (type, default D): help [source]`` for each field, for ``main.py --list``."""
    out = []
    for f in fields(flags_class):
        t = field_type(flags_class, f.name)
        tname = getattr(t, "__name__", str(t).replace("typing.", ""))
        src = f" [{f.metadata['source']}]" if f.metadata.get("source") else ""
        out.append(f"--{f.name} ({tname}, default {f.default!r}): {f.metadata.get('help', '')}{src}")
    return out
