"""The layers in pyproject's [tool.importlinter] hold (entry points > cycle runner > stages, services and the
demo world, which never import each other > core) and lib/flywheel has no import cycles. Both read every
import, function-level ones included."""

import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def test_the_import_linter_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One shortest cycle through each import that has a way back, each cycle once."""
    cycles = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycle = [importer, *back]  # importer -> imported -> ... -> importer
                cycles.setdefault(frozenset(cycle), cycle)
    return sorted(cycles.values())


def test_no_import_cycles_among_the_workbench_modules():
    cycles = import_cycles(grimp.build_graph("flywheel", cache_dir=None))
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_a_cycle_is_found_and_named():
    graph = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=importer, imported=imported)
    assert import_cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]
