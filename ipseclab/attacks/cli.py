"""``ipseclab attack``: list the attack library, or run one attack against the lab.

Registered in ``ipseclab/cli.py`` like the gateway commands::

    from ipseclab.attacks.cli import register as _register_attack
    _register_attack(command)
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from ipseclab.errors import IpsecLabError


def setup(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    p.description = ("Run an attack of the library against the lab's own gateways (Mininet"
                     " namespaces, on-path-attacker topology): it succeeds against the weak"
                     " configuration and fails against the recommended one. Needs root.")
    p.add_argument("name", nargs="?", help="the attack (see --list)")
    p.add_argument("--list", action="store_true", help="list the attacks and exit")
    p.add_argument("--config", default="weak",
                   help="weak or recommended (esp-null also: ah); default weak")
    p.add_argument("--out", default=None,
                   help="directory for the lab's work files and result.json")

    def run(a: argparse.Namespace) -> int:
        from ipseclab.attacks import ATTACKS, load

        if a.list or not a.name:
            width = max(len(n) for n in ATTACKS)
            for info in ATTACKS.values():
                print(f"{info.name:<{width}}  {info.one_line}")
            return 0
        module = load(a.name)
        if os.geteuid() != 0:
            raise IpsecLabError("ipseclab attack builds network namespaces: run it as root")
        out = Path(a.out) if a.out else None
        workdir = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            workdir = out / "lab"
        result = module.run(None, config=a.config, workdir=workdir)
        print(result.report())
        if out is not None:
            (out / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
            print(f"result in {out / 'result.json'}")
        return 0
    return run


def register(command: Callable) -> None:
    """Add ``attack`` to the ``ipseclab`` command (``command`` is cli.py's decorator)."""
    command("attack", "run an attack of the library against weak and recommended configs")(
        setup)
