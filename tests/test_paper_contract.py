"""The paper contract (reproductions/paper.py) holds for every paper: a frozen ``Flags`` dataclass whose fields are
command-line flags with help text, ``default_out(flags)``, ``run(flags, ctx)``; and no function in
``reproductions/`` longer than 60 lines or with more than 8 parameters (issue 22). Read from the source and the
modules, not from a run."""
from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

import reproductions
from reproductions import paper

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES, MAX_PARAMS = 60, 8


def _functions():
    for path in sorted((ROOT / "reproductions").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                yield f"{path.name}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1, len(params)


def test_no_function_in_reproductions_is_over_60_lines_or_8_parameters():
    bad = [f"{name} ({lines} lines, {params} parameters)" for name, lines, params in _functions()
           if lines > MAX_LINES or params > MAX_PARAMS]
    assert not bad, "split these (a settings object or (flags, ctx) instead of many arguments): " + "; ".join(bad)


@pytest.mark.parametrize("name", reproductions.PAPERS)
def test_every_paper_declares_its_flags_and_runs_with_a_context(name):
    mod = reproductions.get(name)
    assert dataclasses.is_dataclass(mod.Flags) and mod.Flags.__dataclass_params__.frozen, f"{name}: Flags"
    main_flags = set(_main_flags())
    for f in dataclasses.fields(mod.Flags):
        assert f.name in main_flags, f"{name}.Flags.{f.name} is not a main.py flag"
        assert f.metadata.get("help"), f"{name}.Flags.{f.name} has no help text (use paper.flag)"
        assert f.name not in ("out", "logdir", "seed", "resume", "overwrite"), f"{f.name} belongs to RunContext"
    assert list(inspect.signature(mod.run).parameters) == ["flags", "ctx"], f"{name}.run(flags, ctx)"
    defaults = mod.Flags()
    assert isinstance(mod.default_out(defaults), str)
    assert paper.describe(mod.Flags), name


def _main_flags():
    text = (ROOT / "main.py").read_text()
    import re
    return re.findall(r'flags\.DEFINE_\w+\("(\w+)"', text)


_FAKE = '''
import dataclasses
from reproductions import paper

DESCRIPTION = "a paper on the contract, for the test"
CALLS = []


@dataclasses.dataclass(frozen=True)
class Flags:
    steps: int | None = paper.flag(None, "steps")
    layers: tuple[str, ...] | None = paper.flag(None, "layers", source="nowhere §0")

    def __post_init__(self):
        if self.steps == 13:
            raise ValueError("13 steps is unlucky: pass another --steps")


def default_out(flags):
    return "runs/fake"


def run(flags, ctx):
    CALLS.append((flags, ctx))
    return {}
'''


def test_main_builds_a_papers_flags_and_context_and_refuses_what_it_does_not_take(tmp_path, monkeypatch, capsys):
    import importlib
    import main
    (tmp_path / "fake_paper.py").write_text(_FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(reproductions.PAPERS, "fake", "fake_paper")
    fake = importlib.import_module("fake_paper")

    def call(*args):
        main.FLAGS.unparse_flags()
        return main.main(main._parse(["main.py", "--verbose", "--paper=fake", *args]))

    try:
        assert call("--steps=3", "--layers=a,b", f"--out={tmp_path / 'o'}", "--seed=5") == 0
        (flags, ctx), = fake.CALLS
        assert flags == fake.Flags(steps=3, layers=("a", "b"))              # the list flag as the field's tuple
        assert (ctx.out, ctx.logdir, ctx.seed, ctx.resume) == (tmp_path / "o", tmp_path / "o" / "tb", 5, False)
        assert call("--task=denoise") == 2
        assert "--paper=fake does not take --task; it takes --layers, --out, --logdir, --steps, --seed, --resume" \
            in capsys.readouterr().err
        assert call("--steps=13") == 2 and "error: 13 steps is unlucky" in capsys.readouterr().err
        assert call() == 0 and fake.CALLS[-1][1].out == Path("runs/fake") and fake.CALLS[-1][1].seed == 0
    finally:
        main.FLAGS.unparse_flags()
