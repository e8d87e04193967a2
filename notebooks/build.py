"""Build the lesson notebooks from Python source: ``python notebooks/build.py [directory]``.

The notebooks are generated so that a change is reviewed as a diff of Python, not of JSON:
each lesson's cells live in their own module, ``lessons/nb01_esp_by_hand.py`` and so on,
the helpers they share in ``lessons/cells.py``. Every code cell runs without root and
without a network, except the cells tagged ``needs-root``; ``tests/test_notebooks.py``
executes them all. Each lesson: learning goals, explanations citing the RFC, exercises
("Your turn") followed by a check cell, and a summary.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Collection
from pathlib import Path
from types import ModuleType

import nbformat
from nbformat.v4 import new_notebook

HERE = Path(__file__).resolve().parent
PACKAGE = "nb_lessons"  # notebooks/lessons/, imported under this name


def lesson(module: str) -> ModuleType:
    """The module ``notebooks/lessons/<module>.py``.

    The package is loaded by path under a private name: notebooks/ need not be on sys.path
    (tests load this file by path), and "import lessons" could find another package.
    """
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, HERE / "lessons" / "__init__.py",
            submodule_search_locations=[str(HERE / "lessons")])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.{module}")


ROOT_CHECK = lesson("cells").ROOT_CHECK  # the guard cell; tests run it without root

NOTEBOOKS = {
    "01-esp-by-hand.ipynb": lesson("nb01_esp_by_hand").CELLS,
    "02-transport-vs-tunnel.ipynb": lesson("nb02_transport_vs_tunnel").CELLS,
    "03-ah-vs-esp.ipynb": lesson("nb03_ah_vs_esp").CELLS,
    "04-anti-replay.ipynb": lesson("nb04_anti_replay").CELLS,
    "05-ikev2-handshake.ipynb": lesson("nb05_ikev2_handshake").CELLS,
    "06-rekey-dpd-nat.ipynb": lesson("nb06_rekey_dpd_nat").CELLS,
    "07-interop.ipynb": lesson("nb07_interop").CELLS,
    "09-capstone.ipynb": lesson("nb09_capstone").CELLS,
}
# whole lessons in Mininet: tests without root skip them
ROOT_ONLY = {"06-rekey-dpd-nat.ipynb", "07-interop.ipynb", "09-capstone.ipynb"}


def write(notebooks: dict[str, list], directory: Path = HERE,
          root_only: Collection[str] = ROOT_ONLY) -> list[Path]:
    """Write ``{file name: cells}`` as notebooks into ``directory``; the paths written.

    Both generators (this file and ``build_attacks.py``) write through here, so every
    notebook gets the same metadata and stable cell ids. A name in ``root_only`` is marked
    as a whole-lesson lab (``metadata.ipseclab.needs_root``) that tests skip without root.
    """
    written = []
    for name, cells in notebooks.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        if name in root_only:
            nb.metadata["ipseclab"] = {"needs_root": True}
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{i:02d}"  # stable ids keep rebuilt notebooks diff-free
        path = directory / name
        nbformat.write(nb, path)
        written.append(path)
    return written


def build(directory: Path = HERE) -> list[Path]:
    return write(NOTEBOOKS, directory)


if __name__ == "__main__":
    for p in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
