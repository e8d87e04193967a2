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
        self._outbound_cache: dict[tuple, SecurityAssociation | None] = {}

    def add(self, sa: SecurityAssociation) -> None:
        if sa.reqid and not sa.path_mtu:
            # RFC 4301 §8.2.1 keeps a path MTU per SA. A rekeyed SA takes the same path, so
            # it starts from its predecessor's (and its age) rather than lose a packet to it.
            old = self._find_outbound(sa.protocol, sa.reqid, sa.src, sa.dst)
            if old is not None and old.path_mtu:
                sa.path_mtu, sa.path_mtu_at = old.path_mtu, old.path_mtu_at
        self._by_spi.setdefault((sa.protocol, sa.spi), []).append(sa)
        self._all.append(sa)
        self._outbound_cache.clear()

    def remove(self, sa: SecurityAssociation) -> None:
        self._outbound_cache.clear()
        self._all.remove(sa)
        group = self._by_spi[(sa.protocol, sa.spi)]
        group.remove(sa)
        if not group:
            del self._by_spi[(sa.protocol, sa.spi)]

    def flush(self) -> None:
        self._outbound_cache.clear()
        self._by_spi.clear()
        self._all.clear()

    def __iter__(self) -> Iterator[SecurityAssociation]:
        return iter(list(self._all))

    def __contains__(self, sa: object) -> bool:
        return sa in self._all

    def __len__(self) -> int:
        return len(self._all)

    def lookup_inbound(self, protocol: Protocol | str, spi: int,
                       dst: IPAddress | bytes | None = None) -> SecurityAssociation | None:
        """The SA for a received packet: by protocol and SPI, then by destination.

        ``dst`` may be the address as bytes, straight from the packet.
        """
        group = self._by_spi.get((protocol, spi))  # Protocol is a str enum: "esp" works too
        if not group:
            return None
        if dst is None:
            return group[0]
        packed = dst if isinstance(dst, bytes) else dst.packed
        for sa in group:
            if sa.dst_packed == packed:
                return sa
        return None

    def lookup_outbound(self, protocol: Protocol | str, *, reqid: int = 0,
                        src: IPAddress | None = None,
                        dst: IPAddress | None = None) -> SecurityAssociation | None:
        """The SA that fulfils an SPD template; the newest wins (make-before-break rekey)."""
        key = (protocol, reqid, src, dst)
        try:
            return self._outbound_cache[key]
        except KeyError:
            pass
        found = self._outbound_cache[key] = self._find_outbound(Protocol(protocol), reqid,
                                                                  src, dst)
        return found

    def _find_outbound(self, protocol: Protocol, reqid: int, src: IPAddress | None,
                       dst: IPAddress | None) -> SecurityAssociation | None:
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
