"""The import rules BUILD.md states hold, package by package (its package table: each part imports only the parts
above it) and module by module (its module map: every module imports, within the project, only what its "may
import" column allows; ``—``: nothing of the project; ``everything``: anything; ``nets.*``: the nets package); and
nothing in ``tfrestore/`` imports ``reproductions`` or ``main``. Read from the source with ``ast``, not by
importing, so a violation is named with its line."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _rules() -> dict[str, list[str]]:
    """BUILD.md's module map: path → allowed names (relative to ``tfrestore``)."""
    rules = {}
    for line in (ROOT / "BUILD.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`tfrestore/") or cells[0].endswith("/`"):
            continue
        path = cells[0].strip("`")
        allowed = [] if cells[2] in ("—", "-") else re.findall(r"`([^`]+)`", cells[2])
        rules[path] = allowed
    return rules


def _project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module relative to tfrestore) for every import of the project's own code in ``path``."""
    package = path.relative_to(ROOT / "tfrestore").with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(ROOT / "tfrestore").parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - (node.level - 1)]) if node.level > 1 else list(package)
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] in ("tfrestore", "reproductions", "main"):
                mod = node.module.removeprefix("tfrestore").lstrip(".") if node.module.startswith("tfrestore") \
                    else "!" + node.module
            else:
                continue
            for a in node.names:   # `from tfrestore.core import files` imports the module core.files
                sub = ".".join(filter(None, [mod, a.name]))
                out.append((node.lineno, sub if not mod.startswith("!") and _is_module(sub) else mod))
        elif isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top == "tfrestore":
                    out.append((node.lineno, a.name.removeprefix("tfrestore").lstrip(".")))
                elif top in ("reproductions", "main"):
                    out.append((node.lineno, "!" + a.name))
    return out


def _is_module(name: str) -> bool:
    path = ROOT / "tfrestore" / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _allowed(mod: str, allowed: list[str]) -> bool:
    if "everything" in allowed:
        return True
    for a in allowed:
        a = a.removeprefix("tfrestore.")
        if a.endswith(".*") and (mod == a[:-2] or mod.startswith(a[:-1])):
            return True
        if mod == a or mod.startswith(a + "."):
            return True
    return False


def test_every_module_is_in_the_map():
    rules = _rules()
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tfrestore").rglob("*.py"))
    missing = [m for m in modules if m not in rules]
    assert not missing, f"modules without a row in BUILD.md's map: {missing}"


@pytest.mark.parametrize("path", sorted(_rules()))
def test_imports_follow_the_map(path):
    allowed = _rules()[path]
    file = ROOT / path
    assert file.exists(), f"BUILD.md names {path}, which does not exist"
    bad = []
    for line, mod in _project_imports(file):
        if mod.startswith("!"):
            bad.append(f"line {line}: {mod[1:]} (tfrestore never imports reproductions or main)")
        elif mod and not _allowed(mod, allowed):
            bad.append(f"line {line}: {mod}")
    assert not bad, f"{path} imports what BUILD.md does not allow ({allowed or '—'}): " + "; ".join(bad)


def _package_rules() -> dict[str, list[str]]:
    """BUILD.md's package table: package (``core``, ``data``, …) → the packages it may import."""
    rules = {}
    for line in (ROOT / "BUILD.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`tfrestore/") and (cells[0].endswith("/`") or
                                                                        cells[0] == "`tfrestore/data.py`"):
            name = cells[0].strip("`").removeprefix("tfrestore/").rstrip("/").removesuffix(".py")
            rules[name] = [] if cells[2] in ("—", "-") else re.findall(r"`([^`]+)`", cells[2])
    return rules


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT / "tfrestore").parts
    return parts[0].removesuffix(".py") if len(parts) > 1 or parts[0] != "__init__.py" else ""


def test_every_package_is_in_the_table():
    rules = _package_rules()
    packages = {_package_of(p) for p in (ROOT / "tfrestore").rglob("*.py")} - {""}
    assert packages == set(rules), f"packages vs BUILD.md's package table: {sorted(packages ^ set(rules))}"


def test_packages_import_only_those_above_them():
    """Package level: a module imports its own package or one its package's row allows, so the parts form a
    stack (core, measure → nets → optimize → train → models, priors → restore) with no cycle."""
    rules = _package_rules()
    bad = []
    for file in sorted((ROOT / "tfrestore").rglob("*.py")):
        own = _package_of(file)
        if not own:
            continue
        for line, mod in _project_imports(file):
            top = mod.split(".")[0]
            if mod and not mod.startswith("!") and top != own and top not in rules[own]:
                bad.append(f"{file.relative_to(ROOT)} line {line}: {mod} ({own} may import {rules[own] or '—'})")
    assert not bad, "imports across packages that BUILD.md's package table does not allow: " + "; ".join(bad)
