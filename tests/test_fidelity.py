"""Every experiment as the spec says: the settings tables against values typed from ../shared/spec/
(tests/spec_values/), the fidelity document kept current, and a tiny-run test for every experiment main.py lists."""
import ast
import pathlib

import pytest

import spec_values

TESTS = pathlib.Path(__file__).parent
ROOT = TESTS.parent


def listed_experiments() -> set[tuple[str, str]]:
    """(paper, experiment) for everything ``main.py --list`` offers; a paper without experiments counts once as
    (paper, "*")."""
    import reproductions
    out = set()
    for paper in reproductions.PAPERS:
        exps = getattr(reproductions.get(paper), "EXPERIMENTS", None) or {"*": ""}
        out |= {(paper, e) for e in exps}
    return out


@pytest.mark.parametrize("paper", spec_values.PAPER_ORDER)
def test_settings_match_the_spec(paper):
    rows = [r for r in spec_values.rows() if r.paper == paper]
    assert rows, f"no spec rows for {paper}"
    ns = spec_values.namespace()
    wrong = []
    for r in rows:
        try:
            actual = spec_values.read(r, ns)
        except Exception as e:           # a renamed table is a failure to report, not a crash of the test
            wrong.append(f"{r.experiment} / {r.setting}: `{r.code}` raised {type(e).__name__}: {e}")
            continue
        if not spec_values.same(r.value, actual, r.rel):
            wrong.append(f"{r.experiment} / {r.setting} ({r.spec}): spec {r.value!r}, code `{r.code}` = {actual!r}")
    assert not wrong, "\n".join(wrong)


def _test_names() -> dict[str, set[str]]:
    names = {}
    for f in TESTS.glob("test_*.py"):
        tree = ast.parse(f.read_text())
        names[f.name] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return names


def test_every_row_names_a_test_that_exists_and_covers_a_listed_experiment():
    names, listed = _test_names(), listed_experiments()
    missing = []
    for r in spec_values.rows():
        for ref in filter(None, (t.strip() for t in r.test.split(","))):
            file, _, func = ref.partition("::")
            if func.split("[")[0] not in names.get(file, set()):
                missing.append(f"{r.paper}/{r.setting}: no test {ref}")
        if r.experiment != "*" and (r.paper, r.experiment) not in listed:
            missing.append(f"{r.paper}/{r.setting}: experiment '{r.experiment}' is not one main.py lists")
    assert not missing, "\n".join(missing)


def test_every_listed_experiment_has_spec_rows():
    covered = {(r.paper, r.experiment) for r in spec_values.rows()}
    papers_all = {r.paper for r in spec_values.rows() if r.experiment == "*"}
    bare = sorted((p, e) for p, e in listed_experiments()
                  if p in spec_values.PAPER_ORDER and (p, e) not in covered and p not in papers_all)
    assert not bare, f"experiments without a single spec row: {bare}"


def test_the_fidelity_document_is_current():
    doc = ROOT / "docs" / "fidelity.md"
    assert doc.exists() and doc.read_text() == spec_values.markdown(), \
        "docs/fidelity.md is out of date: run python tests/fidelity_doc.py"


def marked_experiments() -> dict[tuple[str, str], list[str]]:
    """(paper, experiment) → the tests marked ``@pytest.mark.experiment(paper, experiment)`` (also inside
    ``pytest.param(..., marks=...)``); ``experiment(paper)`` marks a paper without experiments."""
    found: dict[tuple[str, str], list[str]] = {}
    for f in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.mark.experiment":
                args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                key = (args[0], args[1] if len(args) > 1 else "*")
                found.setdefault(key, []).append(f.name)
    return found


def test_every_experiment_main_lists_has_a_tiny_run_test():
    marked = marked_experiments()
    untested = sorted(listed_experiments() - set(marked))
    assert not untested, f"experiments without a tiny-run test (@pytest.mark.experiment): {untested}"
    unknown = sorted(set(marked) - listed_experiments())
    assert not unknown, f"tests marked for experiments main.py does not list: {unknown}"
