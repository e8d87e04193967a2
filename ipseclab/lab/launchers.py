"""Importing the launcher modules registers them (``impl: ipseclab``, ``impl: strongswan``).

They are imported on first use rather than with the lab package, because they import the
drivers and the runner, which import the lab package themselves.
"""

from __future__ import annotations

import importlib

LAUNCHER_MODULES = ("ipseclab.lab.ipseclab_gateway", "ipseclab.lab.strongswan")


def load_launchers() -> None:
    for name in LAUNCHER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
