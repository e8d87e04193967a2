"""The small pieces the gateway daemon is built from, apart so the daemon reads as packet paths.

* :class:`GatewayOptions`: everything ``ipseclab gateway`` takes on its command line.
* :class:`DriverCounters`: what the daemon counts beside the engine's own counters (RFC 4301
  §4.4.1 wants the SAD's; these say where in the daemon a packet went or was lost).
* :class:`RateLimitedLog`: a peer controls what arrives, so it must not control how much is
  logged; at most one line per kind and interval.
* :class:`IkeHandler` and :class:`GatewayExtension`: how IKE plugs in (RFC 3948 §2.2 puts IKE
  and ESP on the same UDP 4500; RFC 4301 §5.1 step 3 asks key management for missing SAs).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ipseclab.drivers.gateway_routes import DEFAULT_MARK, DEFAULT_TABLE
from ipseclab.drivers.tun import DEFAULT_MTU
from ipseclab.ipsec import ip

if TYPE_CHECKING:
    from ipseclab.drivers.gateway import Gateway

__all__ = ["AddressCache", "DriverCounters", "GatewayExtension", "GatewayOptions", "IkeHandler",
           "RateLimitedLog"]


class IkeHandler(Protocol):
    """Receives IKE messages that arrived on UDP 4500 after the non-ESP marker (RFC 3948 §2.2).

    ``message`` starts at the IKE header; ``remote`` is (address, port); ``local`` our address.
    """

    def __call__(self, message: bytes, remote: tuple[str, int], local: str) -> None: ...


class GatewayExtension(Protocol):
    """What keys the gateway beyond manual SAs (IKE: :mod:`ipseclab.drivers.ike_gateway`).

    ``start`` runs once the sockets and the TUN are up, ``close`` before they go;
    ``acquire`` gets each packet a PROTECT policy has no SA for (RFC 4301 §5.1, step 3);
    ``handle`` answers control commands first and returns NotImplemented for the rest;
    ``sa_lifetime`` hears of each SA that reached a byte or packet limit (soft: rekey it;
    hard: the data plane has dropped it already).
    """

    def start(self, gateway: Gateway) -> None: ...

    def close(self) -> None: ...

    def acquire(self, result: Any, packet: bytes) -> None: ...

    def handle(self, request: dict[str, Any]) -> Any: ...

    def sa_lifetime(self, sa: Any, hard: bool) -> None: ...


@dataclass
class GatewayOptions:
    """Everything ``ipseclab gateway`` takes on its command line."""

    name: str
    manual: Path | None = None
    swanctl: Path | None = None
    control: Path | None = None
    keylog_dir: Path | None = None
    tun: str = "ipsec0"
    mtu: int = DEFAULT_MTU
    mark: int = DEFAULT_MARK
    table: int = DEFAULT_TABLE
    pidfile: Path | None = None
    ike_retransmit: tuple[float, int] = (1.0, 5)  # first timeout (doubling), retransmissions
    make_before_break: bool = True  # reauthentication order (strongSwan's charon option)


@dataclass
class DriverCounters:
    """What the daemon itself counts, beside the engine's counters."""

    tun_read: int = 0
    tun_written: int = 0
    wire_received: int = 0
    wire_sent: int = 0
    protected: int = 0
    bypassed: int = 0
    discarded: int = 0
    acquire: int = 0
    protect_errors: int = 0
    send_errors: int = 0
    fragmented: int = 0  # protected packets too big for the link, sent as IPv4 fragments
    too_big_sent: int = 0  # ICMP errors to inner senders: too big for the path MTU
    tun_write_errors: int = 0
    keepalives: int = 0
    ike_received: int = 0
    ike_dropped: int = 0
    udp_malformed: int = 0
    inbound_rejected: int = 0
    internal_errors: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class RateLimitedLog:
    """At most one line per ``interval`` seconds per key, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self.logger, self.interval = logger, interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, key: str, message: str, *args: object, level: int = logging.WARNING,
                 exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        more = self._suppressed.pop(key, 0)
        if more:
            message += f" ({more} similar suppressed)"
        self.logger.log(level, message, *args, exc_info=exc_info)


class AddressCache(dict):
    """Packed address bytes -> ipaddress object, so a packet does not build one each time."""

    def get_address(self, packed: bytes) -> ip.IPAddress:
        addr = self.get(packed)
        if addr is None:
            if len(self) > 4096:
                self.clear()
            addr = self[packed] = ipaddress.ip_address(packed)
        return addr
