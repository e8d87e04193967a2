"""The attack library: weak configurations, working attacks, and the fix that stops each.

Every attack is a module with ``WEAK`` and ``RECOMMENDED`` (names of configurations under
``topologies/attacks/<attack>/``) and ``run(lab_or_none, config="weak"|"recommended", ...)
-> AttackResult``. It runs for real against the lab's own ``impl: ipseclab`` gateways in the
``on-path-attacker`` topology's namespaces, sends its packets from mallory or a host, and
reports what it learned or forged and the gateway counters that explain a failure.

The IKE attacks (weak PSK, weak DH, unchecked DH values, downgrade) run IKEv2 gateways
(``*.swanctl.conf`` configurations, :mod:`ipseclab.attacks.ike_common`); where the attacker
rewrites IKE messages in flight (unchecked DH, downgrade), mallory's relay
(:mod:`ipseclab.attacks.ike_relay`) diverts the IKE datagrams between the gateways inside
mallory's namespace and sends them on rewritten, with the original addresses.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ipseclab.attacks.common import AttackResult

__all__ = ["ATTACKS", "AttackInfo", "AttackResult", "load"]


@dataclass(frozen=True)
class AttackInfo:
    name: str
    one_line: str
    module: str  # dotted module path, imported on use

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


ATTACKS: dict[str, AttackInfo] = {a.name: a for a in (
    AttackInfo("esp-null", "integrity-only ESP-NULL or AH: mallory reads the payload",
               "ipseclab.attacks.esp_null"),
    AttackInfo("bitflip", "ESP-CBC without integrity: IV flips leak a secret, raise an amount",
               "ipseclab.attacks.bitflip"),
    AttackInfo("replay", "replay-window 0: a recorded command is carried out again",
               "ipseclab.attacks.replay"),
    AttackInfo("gcm-nonce-reuse", "static GCM keys reused after a restart: XOR, H, forgery",
               "ipseclab.attacks.gcm_nonce_reuse"),
    AttackInfo("weak-psk", "rogue responder gets IKE_AUTH; the PSK falls to a word list offline",
               "ipseclab.attacks.weak_psk"),
    AttackInfo("weak-dh", "a toy DH group: mallory solves the log, opens IKE_AUTH and ESP",
               "ipseclab.attacks.weak_dh"),
    AttackInfo("unchecked-dh", "a peer without RFC 6989 checks takes g^x = 1: a known key",
               "ipseclab.attacks.unchecked_dh"),
    AttackInfo("downgrade", "stripped proposals fail AUTH; a forged INVALID_KE still downgrades",
               "ipseclab.attacks.downgrade"),
    AttackInfo("traffic-analysis", "lengths without TFC padding; transport vs tunnel endpoints",
               "ipseclab.attacks.traffic_analysis"),
    AttackInfo("sweet32", "64-bit blocks (3DES): the birthday bound under one SA",
               "ipseclab.attacks.sweet32"),
)}


def load(name: str) -> ModuleType:
    """The module of a registered attack."""
    from ipseclab.attacks.common import nearest_name

    info = ATTACKS.get(name)
    if info is None:
        from ipseclab.errors import ConfigError

        raise ConfigError(f"unknown attack '{name}'{nearest_name(name, list(ATTACKS))};"
                          f" known: {', '.join(ATTACKS)}")
    return info.load()
