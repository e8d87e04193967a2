"""The Security Association Database (RFC 4301 §4.4.2).

Inbound, a receiver finds the SA of a packet by its SPI (and protocol, and destination,
RFC 4301 §4.1 "unicast SAs"). Outbound, the SPD names a template (protocol, mode, tunnel
endpoints, reqid) and the SAD finds the SA that fulfils it. Linux keys that link by
``reqid``; so do we, with the endpoints as tie-breakers.
"""

from __future__ import annotations

from collections.abc import Iterator

from ipseclab.ipsec.ip import IPAddress
from ipseclab.ipsec.sa import Protocol, SecurityAssociation


class SAD:
    """All SAs of one node, for both directions."""

    def __init__(self) -> None:
        self._by_spi: dict[tuple[Protocol, int], list[SecurityAssociation]] = {}
        self._all: list[SecurityAssociation] = []

    def add(self, sa: SecurityAssociation) -> None:
        self._by_spi.setdefault((sa.protocol, sa.spi), []).append(sa)
        self._all.append(sa)

    def remove(self, sa: SecurityAssociation) -> None:
        self._all.remove(sa)
        group = self._by_spi[(sa.protocol, sa.spi)]
        group.remove(sa)
        if not group:
            del self._by_spi[(sa.protocol, sa.spi)]

    def flush(self) -> None:
        self._by_spi.clear()
        self._all.clear()

    def __iter__(self) -> Iterator[SecurityAssociation]:
        return iter(list(self._all))

    def __len__(self) -> int:
        return len(self._all)

    def lookup_inbound(self, protocol: Protocol | str, spi: int,
                       dst: IPAddress | None = None) -> SecurityAssociation | None:
        """The SA for a received packet: by protocol and SPI, then by destination."""
        group = self._by_spi.get((Protocol(protocol), spi))
        if not group:
            return None
        if dst is None or len(group) == 1:
            return group[0] if dst is None or group[0].dst == dst else None
        for sa in group:
            if sa.dst == dst:
                return sa
        return None

    def lookup_outbound(self, protocol: Protocol | str, *, reqid: int = 0,
                        src: IPAddress | None = None,
                        dst: IPAddress | None = None) -> SecurityAssociation | None:
        """The SA that fulfils an SPD template; the newest wins (make-before-break rekey)."""
        protocol = Protocol(protocol)
        for sa in reversed(self._all):
            if sa.protocol is not protocol:
                continue
            if reqid and sa.reqid != reqid:
                continue
            if dst is not None and sa.dst != dst:
                continue
            if src is not None and sa.src != src:
                continue
            return sa
        return None
