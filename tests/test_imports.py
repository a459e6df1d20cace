"""The tierflow package's imports: no import loop, no private name imported across modules.

Why: an import loop is what made ``ingest/fast.py`` take the loader's private helpers inside
functions ("loader imports us") and grow a copy to dodge it (issue 15). Two modules that
import each other cannot be read, tested or moved one at a time. These tests read the
package's source (a small AST walk, nothing is imported) so a loop cannot come back.

What counts as an import of module M by module N (both in the package):
- ``import M`` or ``from M import name`` anywhere in N: at the top, inside a function, under
  ``if TYPE_CHECKING:`` (a loop hidden from the interpreter is still a loop for a reader);
- ``from P import M`` where ``M`` is a module of package ``P``: an import of ``P.M``, not of
  ``P`` (``from tierflow import pipeline`` imports ``tierflow.pipeline``);
- relative imports (``from . import x``, ``from ..config import y``) resolved against N.
Importing ``P.M`` also runs ``P/__init__.py`` in Python; that implied edge is left out,
because a package's ``__init__`` that re-exports its own modules would otherwise form a
"loop" with every module of the package that imports a sibling.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "plugins" / "tierflow"


@dataclass(frozen=True)
class PrivateImport:
    """``from <source> import <name>`` in ``importer``, where ``name`` starts with ``_``."""

    importer: str
    source: str
    name: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.name} from {self.source}"


@dataclass(frozen=True)
class ImportGraph:
    """Modules of one package (dotted names) and the package modules each one imports."""

    edges: dict[str, frozenset[str]]
    private_imports: tuple[PrivateImport, ...]

    def knots(self) -> list[frozenset[str]]:
        """Groups of two or more modules in which every module reaches every other through
        imports (strongly connected components): each holds at least one loop."""
        return sorted((scc for scc in _strongly_connected(self.edges) if len(scc) > 1), key=sorted)

    def cycles(self) -> list[list[str]]:
        """One loop per knot, as a path that starts and ends at the knot's smallest module
        name, e.g. ``[a, b, a]``."""
        return [_cycle_through(self.edges, knot) for knot in self.knots()]


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (``__init__.py``
    is the package itself)."""
    names: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def build_import_graph(package_dir: Path) -> ImportGraph:
    """Read every module of the package at ``package_dir`` and collect its package imports."""
    modules = module_names(package_dir)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private: list[PrivateImport] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges[name].update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute_source(name, is_package, node)
                if source not in modules:
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in modules:
                        edges[name].add(submodule)
                        continue
                    edges[name].add(source)
                    if _is_private(alias.name) and source != name:
                        private.append(PrivateImport(name, source, alias.name, node.lineno))
    return ImportGraph(
        # a module naming itself (an __init__'s `from . import x` of its own name) is no loop
        edges={name: frozenset(targets - {name}) for name, targets in edges.items()},
        private_imports=tuple(sorted(private, key=lambda p: (p.importer, p.line, p.name))),
    )


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute_source(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    # the package a relative import starts from: the module's own package, or itself for
    # an __init__; each further dot goes one package up
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _strongly_connected(edges: dict[str, frozenset[str]]) -> list[frozenset[str]]:
    """Tarjan's strongly connected components (iterative: no recursion limit to mind)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(frozenset(component))
    return found


def _cycle_through(edges: dict[str, frozenset[str]], component: frozenset[str]) -> list[str]:
    """A shortest loop from the component's smallest module back to it, within the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node] & component):
                if child == start:
                    return [*paths[node], start]
                if child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"no loop through {start} in {sorted(component)}")  # a component always has one


def _describe(graph: ImportGraph) -> str:
    """Each knot: a loop through it, then every import between its modules (what to cut)."""
    lines = []
    for knot, cycle in zip(graph.knots(), graph.cycles(), strict=True):
        lines.append(f"  loop: {' -> '.join(cycle)}")
        lines.extend(f"    {a} imports {b}" for a in sorted(knot) for b in sorted(graph.edges[a] & knot))
    return "\n".join(lines)


# -- the package ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return build_import_graph(PACKAGE_DIR)


def test_the_walker_sees_the_package(graph: ImportGraph) -> None:
    # guards the tests below against passing on an empty or misread package
    assert {"tierflow", "tierflow.pipeline", "tierflow.config", "tierflow.demo"} <= set(graph.edges)
    assert "tierflow.config" in graph.edges["tierflow.pipeline"]


def test_no_import_loop(graph: ImportGraph) -> None:
    assert not graph.knots(), "import loops in tierflow:\n" + _describe(graph)


def test_no_private_name_imported_across_modules(graph: ImportGraph) -> None:
    found = "\n".join(f"  {p}" for p in graph.private_imports)
    assert not graph.private_imports, f"private names imported from other tierflow modules:\n{found}"


# -- the walker itself, on a package with a planted loop ------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root / "shop"


def test_walker_finds_a_planted_loop_and_private_import(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "shop/__init__.py": "from shop.orders import place\n",
        # top-level absolute import
        "shop/orders.py": "import shop.stock\n\ndef place():\n    return shop.stock\n",
        # function-level relative import of a module: `from . import billing` is shop.billing
        "shop/stock/__init__.py": "def reserve():\n    from .. import billing\n    return billing\n",
        # `from ..orders import _fee` closes the loop and imports a private name
        "shop/billing.py": "from .orders import _fee, place  # noqa\n",
        # a leaf, and imports that are not loops: a package re-exporting its own module,
        # a module importing its own package, a dunder, a third-party module
        "shop/stock/levels.py": "import json\nfrom shop import __version__\nfrom shop.stock import reserve\n",
        "shop/stock/report.py": "from . import levels\nfrom .levels import json as _json, _LIMIT\n",
    })
    graph = build_import_graph(package)

    assert graph.edges == {
        "shop": {"shop.orders"},
        "shop.orders": {"shop.stock"},
        "shop.stock": {"shop.billing"},
        "shop.billing": {"shop.orders"},
        "shop.stock.levels": {"shop", "shop.stock"},
        "shop.stock.report": {"shop.stock.levels"},
    }
    assert graph.knots() == [{"shop.billing", "shop.orders", "shop.stock"}]
    assert graph.cycles() == [["shop.billing", "shop.orders", "shop.stock", "shop.billing"]]
    assert [str(p) for p in graph.private_imports] == [
        "shop.billing:1 imports _fee from shop.orders",
        "shop.stock.report:2 imports _LIMIT from shop.stock.levels",
    ]


def test_walker_passes_a_package_without_loops(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "shop/__init__.py": "",
        "shop/orders.py": "from shop.stock import reserve\n",
        "shop/stock.py": "def reserve():\n    from shop import prices\n    return prices\n",
        "shop/prices.py": "",
    })
    graph = build_import_graph(package)
    assert graph.edges["shop.orders"] == {"shop.stock"}
    assert graph.edges["shop.stock"] == {"shop.prices"}
    assert graph.knots() == graph.cycles() == []
    assert graph.private_imports == ()
