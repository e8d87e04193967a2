"""Every lesson notebook runs top to bottom without errors, and matches notebooks/build.py.

Lessons that run a Mininet lab need root: a whole notebook marked ``needs_root`` in its
metadata (06, 07, 09) is skipped without root; cells tagged ``needs-root`` (the second half
of 02) are left out, and the rest of the notebook still runs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
IS_ROOT = os.geteuid() == 0


def _needs_root(nb) -> bool:
    return bool(nb.metadata.get("ipseclab", {}).get("needs_root"))


def _root_cell(cell) -> bool:
    return "needs-root" in cell.get("metadata", {}).get("tags", [])


GENERATORS = ("build.py", "build_attacks.py")  # lessons 01-09; the attack lessons 08*


def _builder(name: str = "build.py"):
    spec = importlib.util.spec_from_file_location(f"nb_{name[:-3]}", NOTEBOOKS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_exist_and_are_up_to_date(tmp_path):
    built = [p for name in GENERATORS for p in _builder(name).build(tmp_path)]
    assert {p.name for p in built} == {p.name for p in PATHS}
    assert len(PATHS) >= 4
    for path in PATHS:
        fresh = nbformat.read(tmp_path / path.name, as_version=4)
        stored = nbformat.read(path, as_version=4)
        assert [c.source for c in fresh.cells] == [c.source for c in stored.cells], (
            f"{path.name} differs from its generator: run python notebooks/build.py"
            " and python notebooks/build_attacks.py")


def test_lessons_have_goals_checks_and_summary():
    for path in PATHS:
        nb = nbformat.read(path, as_version=4)
        text = [c.source for c in nb.cells]
        assert "Learning goals" in text[0], path.name
        assert any("RFC" in t for t in text if t), path.name
        assert any("Your turn" in t for t in text), path.name
        assert any(c.cell_type == "code" and "assert " in c.source for c in nb.cells), path.name
        assert "Summary" in text[-1], path.name


def test_lab_lessons_guard_root_first():
    """A lesson that needs root says so before it starts anything, with one clear line."""
    builder = _builder()
    for path in PATHS:
        nb = nbformat.read(path, as_version=4)
        root_cells = [c for c in nb.cells if _root_cell(c)]
        assert _needs_root(nb) == (path.name in builder.ROOT_ONLY), path.name
        if _needs_root(nb) or root_cells:
            assert "os.geteuid() != 0" in root_cells[0].source, path.name
            assert all("Lab(" not in c.source for c in nb.cells[:nb.cells.index(root_cells[0])]
                       if c.cell_type == "code"), path.name


def test_root_check_stops_without_root(tmp_path):
    """The guard cell raises one line, no traceback, for a user who is not root."""
    source = _builder().ROOT_CHECK.source.replace("os.geteuid() != 0", "True")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3")
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="needs root"):
        client.execute()
    (error,) = nb.cells[0].outputs
    assert error["traceback"] == [error["traceback"][0]] and "sudo" in error["traceback"][0]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    if _needs_root(nb) and not IS_ROOT:
        pytest.skip("this lesson runs a Mininet lab: needs root")
    if not IS_ROOT:
        nb.cells = [c for c in nb.cells if not _root_cell(c)]
    client = nbclient.NotebookClient(nb, timeout=90, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert os.environ["MPLBACKEND"] == "Agg"
