"""The data plane of one IPsec node, without I/O: SPD + SAD + ESP/AH (RFC 4301 §5).

Outbound (§5.1): look the packet up in the SPD; DISCARD drops it, BYPASS passes it, PROTECT
applies the SAs the policy's templates name (ESP first, then AH around it for an AH+ESP
bundle); a template without an SA is reported as ``acquire`` so that IKE can make one.

Inbound (§5.2): find the SA by SPI, check and strip ESP/AH, then check that the inner packet
is one this SA may carry: its own selector, and the SPD's ``in``/``fwd`` entries.

A gateway driver hands packets in and sends what comes out; so do ``ipseclab encap``, tests
and notebooks, with no root and no sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipseclab.ipsec import ah, esp, ip, pmtu
from ipseclab.ipsec.lifetime import LifetimeEvent, LifetimeKind, LifetimeTracker
from ipseclab.ipsec.sa import Mode, Protocol, SecurityAssociation
from ipseclab.ipsec.sad import SAD
from ipseclab.ipsec.selectors import MalformedPacket, PacketFields, parse_fields
from ipseclab.ipsec.spd import SPD, Policy, PolicyAction, Template
from ipseclab.ipsec.udpencap import NAT_T_PORT, Udp4500Kind, classify, parse_udp
from ipseclab.ipsec.verdict import ProtectError, Status, Unprotected


@dataclass(slots=True)
class Outbound:
    """What to do with one outbound packet.

    ``action`` is ``protect`` (send ``packet``, the protected IP packet), ``bypass`` (send the
    original), ``discard``, ``acquire`` (a policy wants an SA that does not exist yet),
    ``too_big`` (the packet forbids fragmentation and would exceed the SA's path MTU once
    protected: tell its sender ``mtu``, :func:`ipseclab.ipsec.ip.icmp_too_big`, RFC 4301
    §8.2.1) or ``error`` (``detail`` says why, e.g. sequence number overflow). With
    ``protect``, a nonzero ``mtu`` is the SA's path MTU, which ``packet`` exceeds: its DF is
    clear and it should leave in fragments of that size (RFC 4301 §8.1).
    """

    action: str
    packet: bytes | None = None
    sa: SecurityAssociation | None = None
    policy: Policy | None = None
    template: Template | None = None
    detail: str = ""
    mtu: int = 0


@dataclass(frozen=True, slots=True)
class SaExpired:
    """An SA reached a lifetime limit (RFC 4301 §4.4.2.1): soft means rekey, hard means gone.

    After a hard event the engine has already removed the SA from the SAD.
    """

    sa: SecurityAssociation
    event: LifetimeEvent

    @property
    def hard(self) -> bool:
        return self.event.kind is LifetimeKind.HARD


@dataclass
class EngineCounters:
    outbound_protected: int = 0
    outbound_bypass: int = 0
    outbound_discard: int = 0
    outbound_no_policy: int = 0
    outbound_acquire: int = 0
    outbound_too_big: int = 0
    pmtu_learnt: int = 0
    pmtu_ignored: int = 0
    inbound_ok: int = 0
    inbound_no_sa: int = 0
    inbound_dropped: int = 0
    inbound_malformed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class IpsecEngine:
    """SPD and SAD together, with the per-packet processing of RFC 4301 §5.

    ``default_outbound`` is what happens to a packet no SPD entry matches: ``bypass`` as
    Linux does, or ``discard`` as RFC 4301 §4.4.1 prefers.
    """

    def __init__(self, spd: SPD | None = None, sad: SAD | None = None, *,
                 default_outbound: str = "bypass") -> None:
        self.spd = spd if spd is not None else SPD()
        self.sad = sad if sad is not None else SAD()
        self.default_outbound = default_outbound
        self.counters = EngineCounters()
        self.events: list[SaExpired] = []
        self._trackers: dict[SecurityAssociation, LifetimeTracker] = {}

    # -- lifetimes ---------------------------------------------------------------------

    def _account(self, sa: SecurityAssociation, nbytes: int, now: float | None) -> bool:
        """Count traffic against the SA's lifetime; False once it is hard-expired."""
        if sa.lifetime is None or now is None:
            return True
        tracker = self._trackers.get(sa)
        if tracker is None:
            tracker = self._trackers[sa] = LifetimeTracker(sa.lifetime, now)
        if tracker.expired:
            return False
        # As in Linux: the packet that reaches a hard limit still goes; the next one does not.
        for event in tracker.account(nbytes, now):
            self._expire(sa, event)
        return True

    def _expire(self, sa: SecurityAssociation, event: LifetimeEvent) -> None:
        self.events.append(SaExpired(sa, event))
        if event.kind is LifetimeKind.HARD and sa in self.sad:
            self.sad.remove(sa)
            self._trackers.pop(sa, None)

    def poll(self, now: float) -> list[SaExpired]:
        """Check time limits; a driver calls this by :meth:`next_deadline`. Returns new events."""
        before = len(self.events)
        for sa, tracker in list(self._trackers.items()):
            for event in tracker.poll(now):
                self._expire(sa, event)
        return self.events[before:]

    def next_deadline(self) -> float | None:
        deadlines = [d for t in self._trackers.values() if (d := t.next_deadline()) is not None]
        return min(deadlines, default=None)

    def start_lifetimes(self, now: float) -> None:
        """Start the clock of every SA with a lifetime (time limits run from here)."""
        for sa in self.sad:
            if sa.lifetime is not None and sa not in self._trackers:
                self._trackers[sa] = LifetimeTracker(sa.lifetime, now)

    # -- outbound ----------------------------------------------------------------------

    def outbound(self, packet: bytes, now: float | None = None) -> Outbound:
        """Apply the SPD to one IP packet leaving this node.

        With ``now``, traffic counts against the SAs' lifetimes (see :attr:`events`).
        """
        try:
            fields = parse_fields(packet)
        except MalformedPacket as exc:
            self.counters.outbound_discard += 1
            return Outbound("discard", detail=f"malformed: {exc}")
        policy = self.spd.lookup("out", fields)
        if policy is None:
            if self.default_outbound == "bypass":
                self.counters.outbound_no_policy += 1
                return Outbound("bypass", packet, detail="no policy")
            self.counters.outbound_discard += 1
            return Outbound("discard", detail="no policy")
        if policy.action is PolicyAction.BYPASS:
            self.counters.outbound_bypass += 1
            return Outbound("bypass", packet, policy=policy)
        if policy.action is PolicyAction.DISCARD:
            self.counters.outbound_discard += 1
            return Outbound("discard", policy=policy)
        sas = []
        for template in policy.templates:
            sa = self.sa_for(template, fields)
            if sa is None:
                self.counters.outbound_acquire += 1
                return Outbound("acquire", policy=policy, template=template,
                                detail=f"no SA for {template}")
            sas.append(sa)
        # RFC 4301 §4.5: ESP is applied first and AH outside it.
        sas.sort(key=lambda s: s.protocol is Protocol.AH)
        plain_length = len(packet)
        mtu = 0
        if sas[-1].path_mtu:
            mtu = self._path_mtu(sas, packet, now)
            if mtu < 0:
                self.counters.outbound_too_big += 1
                return Outbound("too_big", sa=sas[-1], policy=policy, mtu=-mtu,
                                detail=f"{plain_length} octets with DF set exceed the {-mtu}"
                                       f" that fit in {sas[-1].name}")
        try:
            for sa in sas:
                if not self._account(sa, plain_length, now):
                    return Outbound("acquire", sa=sa, policy=policy, template=None,
                                    detail=f"{sa.name} reached its hard lifetime")
                packet = (esp.encapsulate if sa.protocol is Protocol.ESP
                          else ah.encapsulate)(sa, packet)
                sa.counters.packets += 1
                sa.counters.bytes += plain_length
        except ProtectError as exc:
            return Outbound("error", sa=sa, policy=policy, detail=str(exc))
        self.counters.outbound_protected += 1
        return Outbound("protect", packet, sas[-1], policy, mtu=mtu)

    @staticmethod
    def _path_mtu(sas: list[SecurityAssociation], packet: bytes, now: float | None) -> int:
        """RFC 4301 §8.2.1 for a packet on an SA with a known path MTU: 0 if it fits, the
        path MTU if it is to be fragmented after protection, minus the MTU left for the inner
        packet if its sender must be told (DF set; IPv6, which routers never fragment)."""
        path_mtu = pmtu.current_pmtu(sas[-1], now)
        if not path_mtu:
            return 0
        version = packet[0] >> 4
        limit = pmtu.inner_limit(sas, path_mtu, version)
        if len(packet) <= limit:
            return 0
        if version == 4:
            ihl = (packet[0] & 0x0F) * 4
            # Never an ICMP error about an ICMP error (RFC 1122 §3.2.2): those go in fragments.
            icmp_error = (packet[9] == ip.PROTO_ICMP and len(packet) > ihl
                          and packet[ihl] in (3, 4, 5, 11, 12))
            if packet[6] & 0x40 and not icmp_error:
                return -limit
        elif limit >= pmtu.MIN_PMTU[6]:
            # Below 1280 an IPv6 sender cannot go: the tunnel fragments (RFC 8200 §5).
            icmp_error = packet[6] == ip.PROTO_ICMPV6 and len(packet) > 40 and packet[40] < 128
            if not icmp_error:
                return -limit
        return path_mtu

    def icmp_error(self, message: bytes, version: int, now: float) -> pmtu.PathMtuUpdate:
        """A received ICMP (``version`` 4) or ICMPv6 (6) message, from its ICMP header on:
        if it is a "fragmentation needed" / "Packet Too Big" for a packet one of our
        outbound SAs sent, that SA's path MTU shrinks (RFC 4301 §8.2.1, :mod:`.pmtu`)."""
        update = pmtu.record_icmp_error(self.sad, message, version, now)
        if update.accepted:
            self.counters.pmtu_learnt += 1
        else:
            self.counters.pmtu_ignored += 1
        return update

    def sa_for(self, template: Template, fields: PacketFields) -> SecurityAssociation | None:
        """The SA that fulfils a template: by reqid, protocol and the outer destination."""
        dst = template.dst if template.dst is not None else fields.dst_addr
        return self.sad.lookup_outbound(template.protocol, reqid=template.reqid or 0, dst=dst)

    # -- inbound -----------------------------------------------------------------------

    def inbound(self, packet: bytes, now: float | None = None) -> Unprotected:
        """Process one received IP packet carrying ESP, AH or ESP in UDP 4500."""
        if len(packet) >= 28 and packet[0] == 0x45 and packet[9] == ip.PROTO_ESP:
            # The common case, IPv4 without options carrying ESP, without building a header.
            sa = self.sad.lookup_inbound(Protocol.ESP, int.from_bytes(packet[20:24], "big"),
                                         packet[16:20])
            total = (packet[2] << 8) | packet[3]
            if sa is not None and sa.mode is Mode.TUNNEL and total <= len(packet):
                result = esp.decapsulate(sa, packet)
                if packet[1] & 3:
                    result = self._ecn(result, packet[1])
                return self._count(self._check_inner(self._lifetime_in(result, now)))
        try:
            hdr = ip.parse_inbound_header(packet)
        except ip.MalformedIP as exc:
            return self._count(Unprotected(Status.MALFORMED, detail=str(exc)))
        start, proto = hdr.header_length, hdr.next_header
        if proto == ip.PROTO_UDP:
            try:
                sport, dport, payload = parse_udp(packet[start : hdr.total_length])
            except ip.MalformedIP as exc:
                return self._count(Unprotected(Status.MALFORMED, detail=str(exc)))
            kind = classify(payload) if NAT_T_PORT in (sport, dport) else None
            if kind is Udp4500Kind.KEEPALIVE:
                return self._count(Unprotected(Status.KEEPALIVE))
            if kind is not Udp4500Kind.ESP:
                return self._count(Unprotected(Status.MALFORMED, detail="not ESP in UDP"))
            proto, start = ip.PROTO_ESP, start + 8
        if proto == ip.PROTO_ESP:
            if hdr.total_length - start < 8:
                return self._count(Unprotected(Status.MALFORMED, detail="ESP header truncated"))
            spi = int.from_bytes(packet[start : start + 4], "big")
            sa = self.sad.lookup_inbound(Protocol.ESP, spi, hdr.dst_bytes)
            if sa is None:
                return self._count(Unprotected(Status.NO_SA, spi))
            result = esp.unprotect(sa, packet[start : hdr.total_length])
            if result.status is Status.OK:
                result = esp.inner_packet(sa, result, hdr)
        elif proto == ip.PROTO_AH:
            if hdr.total_length - start < 12:
                return self._count(Unprotected(Status.MALFORMED, detail="AH header truncated"))
            spi = int.from_bytes(packet[start + 4 : start + 8], "big")
            sa = self.sad.lookup_inbound(Protocol.AH, spi, hdr.dst_bytes)
            if sa is None:
                return self._count(Unprotected(Status.NO_SA, spi))
            result = ah.decapsulate(sa, packet)
            if result.status is Status.OK and result.next_header == ip.PROTO_ESP:
                # AH around ESP: carry on with the ESP inside (RFC 4301 §5.2, step 4).
                return self.inbound(result.inner, now)
        else:
            return self._count(Unprotected(Status.MALFORMED, detail=f"protocol {proto}"))
        outer_tc = ip.traffic_class(packet)
        if outer_tc & 3 and result.sa is not None and result.sa.mode is Mode.TUNNEL:
            result = self._ecn(result, outer_tc)
        return self._count(self._check_inner(self._lifetime_in(result, now)))

    @staticmethod
    def _ecn(result: Unprotected, outer_tc: int) -> Unprotected:
        """Carry the outer header's ECN into a tunnel's inner packet (RFC 6040 §4.2)."""
        if result.status is not Status.OK or result.inner is None:
            return result
        inner = ip.ecn_decapsulate(outer_tc, result.inner)
        if inner is None:
            result.status = Status.MALFORMED
            result.detail = "outer header marked CE over a Not-ECT inner packet (RFC 6040 §4.2)"
        else:
            result.inner = inner
        return result

    def _lifetime_in(self, result: Unprotected, now: float | None) -> Unprotected:
        if result.status is Status.OK and not self._account(result.sa, len(result.payload), now):
            result.status = Status.EXPIRED
            result.detail = f"{result.sa.name} reached its hard lifetime"
        return result

    def inbound_datagram(self, datagram: bytes, src: ip.IPAddress,
                         dst: ip.IPAddress, now: float | None = None, *,
                         outer_tc: int = 0) -> Unprotected:
        """Process an ESP datagram that arrived without its IP header (a UDP 4500 socket).

        ``outer_tc`` is the outer header's TOS / Traffic Class, for ECN (RFC 6040 §4.2).
        """
        if len(datagram) < 8:
            return self._count(Unprotected(Status.MALFORMED, detail="ESP header truncated"))
        spi = int.from_bytes(datagram[:4], "big")
        sa = self.sad.lookup_inbound(Protocol.ESP, spi, dst)
        if sa is None:
            sa = self.sad.lookup_inbound(Protocol.ESP, spi)  # behind a NAT dst may differ
        if sa is None:
            return self._count(Unprotected(Status.NO_SA, spi))
        result = esp.unprotect(sa, datagram)
        if result.status is Status.OK:
            outer = None
            if sa.mode.value == "transport":
                outer = ip.parse_header(ip.ip_header(src, dst, result.next_header, 0))
            result = esp.inner_packet(sa, result, outer)
            if outer_tc & 3 and sa.mode is Mode.TUNNEL:
                result = self._ecn(result, outer_tc)
        return self._count(self._check_inner(self._lifetime_in(result, now)))

    def _check_inner(self, result: Unprotected) -> Unprotected:
        """RFC 4301 §5.2 step 4: the inner packet must fit the SA's selectors and the SPD."""
        if result.status is not Status.OK or result.inner is None:
            return result
        sa = result.sa
        try:
            fields = parse_fields(result.inner)
        except MalformedPacket as exc:
            result.status, result.detail = Status.MALFORMED, f"inner packet: {exc}"
            return result
        if sa.selector is not None and not sa.selector.matches(fields, "in"):
            sa.counters.policy_mismatch += 1
            result.status = Status.POLICY_MISMATCH
            result.detail = f"inner packet {fields} is outside the SA's selector {sa.selector}"
            return result
        for direction in ("in", "fwd"):
            policy = self.spd.lookup(direction, fields)
            if policy is None:
                continue
            if policy.action is PolicyAction.DISCARD:
                result.status = Status.POLICY_MISMATCH
                result.detail = f"the {direction} policy discards {fields}"
            elif policy.action is PolicyAction.PROTECT and not any(
                    t.protocol == sa.protocol.value and (not t.reqid or not sa.reqid
                                                         or t.reqid == sa.reqid)
                    for t in policy.templates):
                result.status = Status.POLICY_MISMATCH
                result.detail = f"the {direction} policy for {fields} wants another SA"
            if result.status is Status.POLICY_MISMATCH:
                sa.counters.policy_mismatch += 1
            return result
        if sa.mode is Mode.TUNNEL:
            # As Linux does (XfrmInNoPols): a decrypted tunnel packet needs an in or fwd
            # policy that allows it; transport mode needs none.
            sa.counters.policy_mismatch += 1
            result.status = Status.POLICY_MISMATCH
            result.detail = f"no in/fwd policy allows {fields}"
        return result

    def _count(self, result: Unprotected) -> Unprotected:
        c = self.counters
        c.by_status[result.status.value] = c.by_status.get(result.status.value, 0) + 1
        if result.status is Status.OK:
            c.inbound_ok += 1
        elif result.status is Status.NO_SA:
            c.inbound_no_sa += 1
        elif result.status is Status.MALFORMED:
            c.inbound_malformed += 1
        else:
            c.inbound_dropped += 1
        return result

    def load(self, states: list[SecurityAssociation], policies: list[Policy]) -> None:
        """Add manual SAs and policies (an ``ip xfrm`` file)."""
        for sa in states:
            self.sad.add(sa)
        for policy in policies:
            self.spd.add(policy)
