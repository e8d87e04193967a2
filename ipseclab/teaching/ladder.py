"""IKE ladder diagrams (stub): the exchanges of a capture as arrows between two peers.

Planned API, not implemented yet: drawing the payloads of IKE_AUTH and later exchanges
needs the SK payloads decrypted (RFC 7296 §3.14) with the keys of the capture's
``ikev2_decryption_table``, which the capture decoder does not do yet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rung:
    """One IKE message: who sent it, the exchange (RFC 7296 §3.1) and its payload names."""

    time: float
    sender: str
    receiver: str
    exchange: str
    response: bool
    message_id: int
    payloads: tuple[str, ...] = ()


def ladder(capture, keylog=None) -> list[Rung]:
    """The IKE messages of a capture, in order. Not implemented yet."""
    raise NotImplementedError("IKE ladder diagrams need IKE decryption of captures (planned)")


def plot_ladder(rungs: list[Rung], ax=None):
    """Draw the rungs as a ladder diagram. Not implemented yet."""
    raise NotImplementedError("IKE ladder diagrams need IKE decryption of captures (planned)")
