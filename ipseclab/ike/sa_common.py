"""What :class:`ipseclab.ike.ike_sa.IkeSa` and its exchange mixins share: the states of an IKE
SA, and two small helpers over the inner payloads of a message (RFC 7296).

It sits apart so that :mod:`.ike_auth`, :mod:`.create_child` and :mod:`.informational` can use
the states without importing :mod:`.ike_sa`, which imports them.
"""

from __future__ import annotations

import enum

from ipseclab.ike.constants import NotifyType
from ipseclab.ike.payload_base import Payload

__all__ = ["State", "find_payload", "notify_name"]


class State(enum.StrEnum):
    INIT_SENT = "init-sent"  # initiator: IKE_SA_INIT request out
    INIT_DONE = "init-done"  # responder: IKE_SA_INIT answered, half-open
    AUTH_SENT = "auth-sent"  # initiator: IKE_AUTH request out
    ESTABLISHED = "established"
    DELETING = "deleting"  # our Delete of the IKE SA is out
    DELETED = "deleted"


def find_payload(payloads: list[Payload], cls: type) -> Payload | None:
    """The first payload of class ``cls`` in ``payloads``, None if there is none."""
    return next((p for p in payloads if isinstance(p, cls)), None)  # type: ignore[return-value]


def notify_name(notify: int) -> str:
    """A notify type as RFC 7296 names it, for events and reasons a person reads."""
    try:
        return NotifyType(notify).name
    except ValueError:
        return f"notify {notify}"
