"""Build the attack notebooks (lesson 08): ``python notebooks/build_attacks.py [directory]``.

One notebook per family of :mod:`ipseclab.attacks`. They have this second generator so
that lessons 01-09 in ``build.py`` and these can change independently; each lesson's cells
live in ``lessons/nb08*.py``, the cells they share in ``lessons/attack_cells.py``, and
``lesson`` and ``write`` come from ``build.py``. Each lesson: the weak configuration, the
cryptography done by hand (no root), the attack run for real in the lab (root; the lab
cells print why they are skipped otherwise), the fix and the counters that show why the
attack fails, exercises with checks, and a summary. Every attack targets only the lab's own
hosts inside the ``on-path-attacker`` topology.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load_base():
    # A private copy of build.py: "import build" could find PyPA's build package instead.
    spec = importlib.util.spec_from_file_location("nb_build_base", HERE / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_base = _load_base()
lesson = _base.lesson

NOTEBOOKS = {
    "08a-esp-null-and-ah.ipynb": lesson("nb08a_esp_null_and_ah").CELLS,
    "08b-encryption-without-integrity.ipynb": lesson("nb08b_encryption_without_integrity").CELLS,
    "08c-replay.ipynb": lesson("nb08c_replay").CELLS,
    "08d-gcm-nonce-reuse.ipynb": lesson("nb08d_gcm_nonce_reuse").CELLS,
    "08e-traffic-analysis.ipynb": lesson("nb08e_traffic_analysis").CELLS,
    "08f-weak-psk.ipynb": lesson("nb08f_weak_psk").CELLS,
    "08g-weak-dh.ipynb": lesson("nb08g_weak_dh").CELLS,
    "08h-downgrade.ipynb": lesson("nb08h_downgrade").CELLS,
}


def build(directory: Path = HERE) -> list[Path]:
    return _base.write(NOTEBOOKS, directory)


if __name__ == "__main__":
    for p in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
