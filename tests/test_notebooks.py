"""Notebook hygiene: committed without outputs, one literal-only `parameters` cell, thin code cells."""

import ast
from pathlib import Path

import nbformat
import pytest

from flywheel.cycle import NOTEBOOKS

REPO = Path(__file__).resolve().parents[1]
ALL_NOTEBOOKS = sorted(
    p for p in (REPO / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
)
MAX_CELL_LINES = 25


def test_every_stage_has_its_notebook():
    for stage, path in NOTEBOOKS.items():
        assert (REPO / path).is_file(), stage
        assert Path(path).parent.name == stage


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs (run nbstripout)"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_of_literals(path):
    book = nbformat.read(path, as_version=4)
    tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell may only assign"
        ast.literal_eval(node.value)  # raises on anything computed


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_cells_stay_thin(path):
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert len(cell.source.splitlines()) <= MAX_CELL_LINES, f"{path.name}: move logic into lib/"
    assert book.cells[0].cell_type == "markdown", (
        f"{path.name}: start with a markdown cell saying what it does"
    )
