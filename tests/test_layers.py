"""The import graph: no module of domicile imports itself back through others. The layering
between packages is import-linter's contract (pyproject.toml, run by `make lint`)."""

from __future__ import annotations

import grimp

PACKAGES = ("domicile.router", "domicile.shards", "domicile.audit", "domicile.migrations")


def circular_imports(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    """Every direct import ``a -> b`` where ``b`` also leads back to ``a``."""
    return sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )


def test_no_module_imports_in_a_circle() -> None:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    assert circular_imports(graph) == []


def test_a_circle_is_found() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(module)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.z", imported="a.x")
    assert circular_imports(graph) == [("a.x", "a.y"), ("a.y", "a.x")]
