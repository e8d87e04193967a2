"""Every lesson notebook runs top to bottom without errors, and matches notebooks/build.py."""

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


def _builder():
    spec = importlib.util.spec_from_file_location("nb_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_exist_and_are_up_to_date(tmp_path):
    built = _builder().build(tmp_path)
    assert {p.name for p in built} == {p.name for p in PATHS}
    assert len(PATHS) >= 4
    for path in PATHS:
        fresh = nbformat.read(tmp_path / path.name, as_version=4)
        stored = nbformat.read(path, as_version=4)
        assert [c.source for c in fresh.cells] == [c.source for c in stored.cells], (
            f"{path.name} differs from notebooks/build.py: run python notebooks/build.py")


def test_lessons_have_goals_checks_and_summary():
    for path in PATHS:
        nb = nbformat.read(path, as_version=4)
        text = [c.source for c in nb.cells]
        assert "Learning goals" in text[0], path.name
        assert any("RFC" in t for t in text if t), path.name
        assert any("Your turn" in t for t in text), path.name
        assert any(c.cell_type == "code" and "assert " in c.source for c in nb.cells), path.name
        assert "Summary" in text[-1], path.name


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert os.environ["MPLBACKEND"] == "Agg"
