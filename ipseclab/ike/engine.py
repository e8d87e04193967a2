"""The IKEv2 engine without I/O: datagrams and time in; datagrams, timers and events out.

Driven like aioquic's connection::

    engine = IkeEngine([config], local_addr="192.0.2.1", rng=None)
    engine.initiate("site-b", now)                   # or wait for a peer
    engine.create_child("site-b", "net2", now)       # CREATE_CHILD_SA over it
    engine.rekey_child_sa(reqid, now); engine.rekey_ike_sa(name, now)  # timers do this too
    engine.reauthenticate_ike_sa(name, now)          # a new IKE SA from scratch (§2.8.3)
    for data, src, dst in engine.datagrams_to_send(): sock.sendto(...)
    engine.receive_datagram(data, src=(addr, port), dst=(addr, port), now=now)
    while (event := engine.next_event()) is not None: ...
    timer = engine.get_timer(); ...; engine.handle_timer(now)

Datagrams are whole IKE messages. On UDP port 4500 the driver strips the four-zero-octet
non-ESP marker (RFC 3948 §2.2) before :meth:`receive_datagram` and prepends it to what
:meth:`datagrams_to_send` gives for a source or destination port other than 500.

This module owns the table of IKE SAs (by our SPI) and the stateless part of the responder
(§2.6 cookies, NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, RFC 6989 refusals), which must not
create state before the initiator has shown it can receive at its address. The SAs
themselves are :class:`ipseclab.ike.ike_sa.IkeSa`.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable

from ipseclab.errors import ConfigError, InvalidKeyShare
from ipseclab.ike import events, negotiation
from ipseclab.ike.child import ChildSa
from ipseclab.ike.config import AddressPool, ChildConfig, IkeConfig
from ipseclab.ike.constants import ExchangeType, HeaderFlag, NotifyType, ProtocolId
from ipseclab.ike.fragments import DEFAULT_FRAGMENT_SIZE, FragmentLimits
from ipseclab.ike.ike_auth import read_sa_init_extras, sa_init_extras
from ipseclab.ike.ike_sa import IkeSa, State
from ipseclab.ike.message import HEADER_SIZE, Message, parse_message
from ipseclab.ike.payload_base import MalformedMessage
from ipseclab.ike.payloads import KeyExchange, Nonce, Notify, SecurityAssociation

Address = tuple[str, int]
Datagram = tuple[bytes, Address, Address]

__all__ = ["IkeEngine"]

_HEADER = struct.Struct("!8s8sBBBBII")


class IkeEngine:
    """All IKE SAs of one node.

    ``configs``: the connections this node knows (initiator and responder alike).
    ``local_addr``: the address to initiate from when a connection's ``local_addrs`` is
    ``%any``. ``rng(n) -> bytes`` supplies SPIs, nonces, IVs and DH private keys (default
    :func:`os.urandom`). ``cookie_threshold``: with this many half-open IKE SAs the
    responder demands cookies (§2.6); 0 means always, None never.

    ``wall_clock(now) -> UNIX time`` turns the ``now`` the driver passes (often
    ``time.monotonic()``) into the time at which certificates are checked; by default
    ``now`` is taken to be UNIX time already. A driver on a monotonic clock passes e.g.
    ``lambda now: now + (time.time() - time.monotonic())``.
    ``invalid_spi_interval``: at most one INVALID_IKE_SPI answer (§2.21.4) per peer address
    in this many seconds; None never answers.
    ``report_keys``: report :class:`~ipseclab.ike.events.IkeSaKeysDerived` as soon as
    IKE_SA_INIT has made the keys (a driver that writes key logs wants it; off by default so
    that the other events stay as they were).
    ``fragment_size``: the largest IP datagram an IKE fragment may fill (strongSwan's
    ``charon.fragment_size``, RFC 7383); ``fragment_limits`` bound what reassembly keeps.
    ``make_before_break``: reauthentication (``reauth_time``) sets up the new IKE SA and
    its child SAs before it deletes the old one; False deletes first (strongSwan's
    ``charon.make_before_break``; see :mod:`ipseclab.ike.reauth`).
    ``mtu``: the largest packet the tunnels carry (a gateway's TUN MTU), what a child's
    ``tfc_padding = mtu`` pads to.
    """

    def __init__(self, configs: IkeConfig | Iterable[IkeConfig], local_addr: str | None = None,
                 rng: Callable[[int], bytes] | None = None, *,
                 cookie_threshold: int | None = 20, retransmit_base: float = 1.0,
                 retransmit_tries: int = 5, half_open_timeout: float = 30.0,
                 wall_clock: Callable[[float], float] | None = None,
                 invalid_spi_interval: float | None = 1.0, report_keys: bool = False,
                 fragment_size: int = DEFAULT_FRAGMENT_SIZE,
                 fragment_limits: FragmentLimits | None = None,
                 make_before_break: bool = True, mtu: int = 1400) -> None:
        configs = [configs] if isinstance(configs, IkeConfig) else list(configs)
        for config in configs:
            config.check()
        self.configs: dict[str, IkeConfig] = {c.name: c for c in configs}
        self.local_addr = local_addr
        self.rng = rng
        self.cookie_threshold = cookie_threshold
        self.retransmit_base = retransmit_base
        self.retransmit_tries = retransmit_tries
        self.half_open_timeout = half_open_timeout
        self.wall_clock = wall_clock
        self.invalid_spi_interval = invalid_spi_interval
        self.report_keys = report_keys
        self.fragment_size = fragment_size
        self.fragment_limits = fragment_limits or FragmentLimits()
        self.make_before_break = make_before_break
        self.mtu = mtu
        self._invalid_spi_sent: dict[str, float] = {}
        self._leases: dict[str, dict[str, IkeSa]] = {}  # pool name -> address -> IKE SA
        self._sas: dict[bytes, IkeSa] = _SaTable(self)  # our SPI -> IKE SA (and by name)
        self._half_open: dict[tuple[bytes, Address], IkeSa] = {}
        self._events: deque[events.Event] = deque()
        self._out: list[Datagram] = []
        self._reqid = 0
        self._reset_indexes()
        self._cookie_secret = self.random(16)
        self.dropped = 0  # messages dropped as malformed, unknown or unauthenticated
        self.internal_errors: list[str] = []  # bugs caught at the boundary; should stay empty

    # -- randomness ---------------------------------------------------------------------

    def random(self, n: int) -> bytes:
        return self.rng(n) if self.rng is not None else os.urandom(n)

    def random_below(self, n: int) -> int:
        """A random number in [0, n), from ``rng`` (0 when n <= 0)."""
        if n <= 0:
            return 0
        return int.from_bytes(self.random(8), "big") % n

    def new_child_spi(self) -> int:
        """A random inbound SPI (>= 256, RFC 4303 §2.1) that no child SA of ours uses."""
        while True:
            spi = int.from_bytes(self.random(4), "big")
            if spi >= 256 and spi not in self._by_spi_in:
                return spi

    def _new_ike_spi(self) -> bytes:
        while True:
            spi = self.random(8)
            if spi != bytes(8) and spi not in self._sas:
                return spi

    def wall_time(self, now: float) -> float:
        """UNIX time at ``now``, for certificate validity (see ``wall_clock``)."""
        return self.wall_clock(now) if self.wall_clock is not None else now

    # -- virtual IP leases (RFC 7296 §2.19) ------------------------------------------------

    def leases(self, pool: str) -> dict[str, str]:
        """Addresses of ``pool`` in use: address -> the IKE SA's name."""
        return {a: sa.name for a, sa in self._leases.get(pool, {}).items()}

    def _lease(self, pool: AddressPool, sa: IkeSa, wanted: str | None = None) -> str | None:
        """An address of ``pool`` for ``sa``: the one it wants if free, else the first free
        one (a peer identity that had one before gets the lowest free address, as the
        others do). None when the pool is exhausted."""
        used = self._leases.setdefault(pool.name, {})
        owner = used.get(wanted) if wanted is not None else None
        if wanted is not None and wanted in pool and (owner is None or _same_peer(owner, sa)):
            # The same peer asking again for the address it holds (a reauthentication,
            # make-before-break) gets it: the newer IKE SA holds the lease from now on.
            used[wanted] = sa
            return wanted
        for address in pool.addresses():
            if address not in used:
                used[address] = sa
                return address
        return None

    def _release_leases(self, sa: IkeSa) -> None:
        for used in self._leases.values():
            for address in [a for a, owner in used.items() if owner is sa]:
                del used[address]

    def _move_leases(self, old: IkeSa, new: IkeSa) -> None:
        """A rekeyed IKE SA (§2.18) keeps the addresses of the one it replaces."""
        for used in self._leases.values():
            for address, owner in list(used.items()):
                if owner is old:
                    used[address] = new

    def new_reqid(self) -> int:
        self._reqid += 1
        return self._reqid

    def _duplicate_child(self, sa: IkeSa, config: ChildConfig, local_ts: list,
                         remote_ts: list) -> ChildSa | None:
        """A live child SA of another IKE SA with the same peer and the same config and
        selectors (what a reauthentication recreates, §2.8.3): the new one takes its reqid."""
        key = (config.name, tuple(local_ts), tuple(remote_ts))
        return next((c for c in self._by_selectors.get(key, ()) if c.replaced_by is None
                     and (other := self._child_home[id(c)]) is not sa
                     and _same_peer(other, sa)), None)  # the oldest, if there are several

    def _reqid_lives_on(self, reqid: int) -> bool:
        return reqid in self._by_reqid

    def _release_waiting(self, gone: list[ChildSa], now: float) -> None:
        """Child SAs that waited for one of ``gone`` to go may send now."""
        waiting = [c for child in gone for c in self._waiting.pop(id(child), ())]
        for child in self._in_sa_order(waiting):
            sa = self._child_home[id(child)]
            self._touch(sa)
            child.waits_for = child.wait_ends = None
            if not child.outbound_ready and child.state == "installed":
                child.outbound_ready = True
                sa._event(events.ChildSaOutboundReady, now, child=child.config.name,
                          reqid=child.reqid, spi_in=child.spi_in,
                          spi_out=child.spi_out, outbound=child.outbound)

    # -- indexes: what used to be a scan of every IKE SA's child SAs ------------------------
    #
    # Each index is changed in one place: _child_added and _child_removed, which an IKE SA's
    # child list (ike_sa.ChildList) calls on every change, and _SaTable for the IKE SAs.
    # check_indexes() recomputes them all by a full scan (the tests call it after each step).

    def _reset_indexes(self) -> None:
        self._child_home: dict[int, IkeSa] = {}
        """id(child SA) -> the IKE SA whose list holds it (the owner of an indexed child)."""
        self._by_spi_in: dict[int, list[ChildSa]] = {}
        """Inbound SPI -> child SAs: new_child_spi() must not hand out one in use."""
        self._by_reqid: dict[int, list[ChildSa]] = {}
        """reqid -> child SAs: rekey/delete by reqid, and whether a reqid lives on."""
        self._by_selectors: dict[tuple, list[ChildSa]] = {}
        """(child config name, local TS, remote TS) -> child SAs: _duplicate_child()."""
        self._waiting: dict[int, list[ChildSa]] = {}
        """id(child SA) -> child SAs whose outbound SA waits for it to go (waits_for)."""
        self._timer_at: dict[IkeSa, float | None] = {}
        """IKE SA -> its next_timer() when last computed: what _timer_heap holds for it."""
        self._timer_heap: list[tuple[float, int, IkeSa]] = []
        """(time, SA order, IKE SA), a min-heap; entries that no longer match _timer_at are
        stale and skipped (lazy invalidation), so get_timer() needs no scan."""
        self._timer_dirty: set[IkeSa] = set()
        """IKE SAs touched since their timer was last computed (see _touch)."""
        self._by_peer: dict[tuple, list[IkeSa]] = {}
        """("id", config, peer identity) and ("addr", config, peer address) -> IKE SAs that
        became established with them: INITIAL_CONTACT and ``unique`` (§2.4) need no scan."""

    def _child_added(self, sa: IkeSa, child: ChildSa) -> None:
        self._child_home[id(child)] = sa
        _index_add(self._by_spi_in, child.spi_in, child)
        _index_add(self._by_reqid, child.reqid, child)
        _index_add(self._by_selectors, _selector_key(child), child)
        if child.waits_for is not None:
            _index_add(self._waiting, id(child.waits_for), child)
        self._touch(sa)

    def _child_removed(self, sa: IkeSa, child: ChildSa) -> None:
        if self._child_home.get(id(child)) is sa:  # not if it has moved on to another SA
            del self._child_home[id(child)]
        _index_remove(self._by_spi_in, child.spi_in, child)
        _index_remove(self._by_reqid, child.reqid, child)
        _index_remove(self._by_selectors, _selector_key(child), child)
        if child.waits_for is not None:
            _index_remove(self._waiting, id(child.waits_for), child)
        self._touch(sa)

    def _position(self, child: ChildSa) -> tuple[int, int]:
        """Where a scan of every IKE SA's child list meets ``child``: (SA order, index)."""
        sa = self._child_home[id(child)]
        return sa._order, next(i for i, c in enumerate(sa.children) if c is child)

    def _in_sa_order(self, children: Iterable[ChildSa]) -> list[ChildSa]:
        """``children`` in the order a scan of every IKE SA's child list meets them."""
        return sorted({id(c): c for c in children}.values(), key=self._position)

    def _touch(self, sa: IkeSa) -> None:
        """``sa`` may have a new next_timer(): get_timer() computes it again."""
        self._timer_dirty.add(sa)

    def _touched(self, sa: IkeSa) -> IkeSa:
        self._timer_dirty.add(sa)
        return sa

    def _refresh_timers(self) -> None:
        """Compute next_timer() again for the touched IKE SAs and those linked to them by a
        rekey or reauthentication (§2.18, §2.8.3: one IKE SA's exchange changes the other)."""
        while self._timer_dirty:
            todo, self._timer_dirty = self._timer_dirty, set()
            seen: set[IkeSa] = set()
            while todo:
                sa = todo.pop()
                if sa in seen:
                    continue
                seen.add(sa)
                todo.update(s for s in (sa._rekeyed_to, sa._successor, sa._reauth_of,
                                        sa._reauth_by) if s is not None)
                if self._sas.get(sa.local_spi) is not sa:
                    self._timer_at.pop(sa, None)
                    continue
                at = sa.next_timer()
                if sa not in self._timer_at or at != self._timer_at[sa]:
                    self._timer_at[sa] = at
                    if at is not None:
                        heapq.heappush(self._timer_heap, (at, sa._order, sa))
        if len(self._timer_heap) > 2 * len(self._timer_at) + 64:  # mostly stale: rebuild
            self._timer_heap = [(at, sa._order, sa) for sa, at in self._timer_at.items()
                                if at is not None]
            heapq.heapify(self._timer_heap)

    def _timer_valid(self, entry: tuple[float, int, IkeSa]) -> bool:
        at, _, sa = entry
        return self._timer_at.get(sa) == at and self._sas.get(sa.local_spi) is sa

    def check_indexes(self) -> None:
        """Recompute every index by a full scan and raise AssertionError where one differs
        (for tests: an index that drifts from the SAs would be a silent bug)."""
        children = [(sa, c) for sa in self._sas.values() for c in sa.children]

        def scan(key: Callable[[ChildSa], object]) -> dict[object, list[int]]:
            out: dict[object, list[int]] = {}
            for _, c in children:
                out.setdefault(key(c), []).append(id(c))
            return {k: sorted(v) for k, v in out.items()}

        def index(table: dict) -> dict[object, list[int]]:
            return {k: sorted(id(c) for c in v) for k, v in table.items()}

        problems = []
        if {id(c): sa for sa, c in children} != self._child_home:
            problems.append("child owners")
        for name, table, key in (("inbound SPI", self._by_spi_in, lambda c: c.spi_in),
                                 ("reqid", self._by_reqid, lambda c: c.reqid),
                                 ("selectors", self._by_selectors, _selector_key)):
            if index(table) != scan(key):
                problems.append(name)
        waiting = scan(lambda c: id(c.waits_for))
        waiting.pop(id(None), None)
        if index(self._waiting) != waiting:
            problems.append("waiting child SAs")
        for sa in self._sas.values():
            if sa.state is State.ESTABLISHED and any(
                    sa not in self._by_peer.get(key, ()) for key in (
                        ("id", id(sa.config), sa.remote_id),
                        ("addr", id(sa.config), sa.remote[0]))):
                problems.append(f"peer index misses {sa.name}")
                break
        if {sa.name: sa for sa in self._sas.values()} != self._sas.by_name:
            problems.append("IKE SAs by name")
        if [sa._order for sa in self._sas.values()] != sorted(sa._order
                                                              for sa in self._sas.values()):
            problems.append("IKE SA order")
        times = [t for sa in self._sas.values() if (t := sa.next_timer()) is not None]
        if self.get_timer() != (min(times) if times else None):
            problems.append(f"next timer {self.get_timer()} != {min(times) if times else None}")
        if problems:
            raise AssertionError("IkeEngine indexes differ from a scan: " + ", ".join(problems))

    # -- the driver API -------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        """Everything to send now, as (data, (src addr, port), (dst addr, port))."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> events.Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to be called next, or None: the earliest
        next_timer() of all IKE SAs, from the timer heap (no scan)."""
        self._refresh_timers()
        heap = self._timer_heap
        while heap and not self._timer_valid(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> None:
        """Run the timers of the IKE SAs that have one due, in the order of the SA table, as
        a scan of it would: also an SA made due by an earlier one's timer in this call, but
        not one this call creates, and each at most once."""
        self._refresh_timers()
        last = self._sas.last_order()
        current = -1  # the order of the SA whose timer runs now
        due: list[tuple[int, IkeSa]] = []  # a min-heap by SA order
        seen: set[IkeSa] = set()
        kept: list[tuple[float, int, IkeSa]] = []  # taken off the timer heap, not run now

        def collect() -> None:
            """Take the due entries off the timer heap: SAs still ahead of ``current`` go
            to ``due`` (their timer is computed again first), the others back later."""
            heap = self._timer_heap
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                sa = entry[2]
                if not self._timer_valid(entry):
                    continue
                if sa in seen or not current < sa._order <= last:
                    kept.append(entry)
                    continue
                seen.add(sa)
                heapq.heappush(due, (sa._order, sa))
                del self._timer_at[sa]  # so that _refresh_timers puts it back in the heap
                self._touch(sa)

        try:
            collect()
            while due:
                current, sa = heapq.heappop(due)
                self._refresh_timers()
                timer = self._timer_at.get(sa)
                if self._sas.get(sa.local_spi) is sa and timer is not None and timer <= now:
                    self._touch(sa)
                    self._guard(sa.handle_timer, now)
                    self._refresh_timers()
                collect()
        finally:
            for entry in kept:
                heapq.heappush(self._timer_heap, entry)

    def initiate(self, connection: str, now: float, child: str | None = None) -> IkeSa:
        """Start IKE_SA_INIT for ``connection``, with its first (or the named) child SA."""
        config = self.configs.get(connection)
        if config is None:
            raise ConfigError(f"no connection named '{connection}'", token=connection)
        local, remote = config.endpoints(self.local_addr)
        if local is None or remote is None:
            raise ConfigError(f"connection {connection}: initiating needs concrete local and"
                              " remote addresses")
        child_config = config.child(child) if config.children else None
        return self._start_ike_sa(config, (local, config.local_port),
                                  (remote, config.remote_port), child_config, now)

    def _start_ike_sa(self, config: IkeConfig, local: Address, remote: Address,
                      child: ChildConfig | None, now: float, *,
                      reauthenticates: IkeSa | None = None) -> IkeSa:
        sa = IkeSa(self, initiator=True, local=local, remote=remote,
                   spi_i=self._new_ike_spi(), config=config)
        sa._reauth_of = reauthenticates
        self._sas[sa.spi_i] = sa
        sa.start(child, now)
        return sa

    @property
    def ike_sas(self) -> list[IkeSa]:
        return list(self._sas.values())

    def find_ike_sa(self, name: str) -> IkeSa | None:
        """By the 32-hex-digit name events carry."""
        return self._sas.by_name.get(name)

    def delete_ike_sa(self, name: str, now: float) -> bool:
        sa = self.find_ike_sa(name)
        if sa is None:
            return False
        self._touched(sa).delete(now)
        return True

    def _established_sa(self, name_or_connection: str) -> IkeSa | None:
        """An IKE SA by its name, else the newest established one of that connection."""
        sa = self.find_ike_sa(name_or_connection)
        if sa is not None:
            return sa
        live = [s for s in self._sas.values() if s.config is not None
                and s.config.name == name_or_connection and s.state is State.ESTABLISHED
                and not s._replaced()]
        return live[-1] if live else None

    def create_child(self, ike_sa: str, child: str, now: float) -> bool:
        """Ask for one more child SA over an established IKE SA (CREATE_CHILD_SA, §1.3.1).

        ``ike_sa``: the IKE SA's name (as events carry it) or its connection's name;
        ``child``: a child of that connection's config. Its ``esp_proposals`` with a DH group
        mean PFS (a KE payload). The outcome is a ChildSaEstablished or ChildSaFailed event.
        False if there is no established IKE SA to do it over.
        """
        sa = self._established_sa(ike_sa)
        if sa is None or sa.config is None or sa.state is not State.ESTABLISHED:
            return False
        self._touch(sa)
        return sa.create_child(sa.config.child(child), now)

    def rekey_child_sa(self, reqid: int, now: float) -> bool:
        """Rekey the (newest) child SA of ``reqid`` now (§1.3.3), as its timer would."""
        for sa in self._holders(self._by_reqid.get(reqid, ())):
            self._touch(sa)
            for child in reversed(sa.children):
                if child.reqid == reqid and sa._may_rekey(child):
                    return sa.create_child(child.config, now, old=child)
        return False

    def rekey_ike_sa(self, name: str, now: float) -> bool:
        """Rekey the IKE SA ``name`` (or the newest of connection ``name``) now (§1.3.2,
        §2.18), as its timer would."""
        sa = self._established_sa(name)
        return sa is not None and self._touched(sa).rekey(now)

    def reauthenticate_ike_sa(self, name: str, now: float) -> bool:
        """Replace the IKE SA ``name`` (or the newest of connection ``name``) by a new one
        from scratch now (§2.8.3), as its ``reauth_time`` would; the outcome comes as events
        (:mod:`ipseclab.ike.reauth`)."""
        sa = self._established_sa(name)
        return sa is not None and self._touched(sa).reauthenticate(now)

    def child_sa_expiring(self, spi: int, inbound: bool, hard: bool, now: float) -> bool:
        """One SA of a child SA pair reached a byte or packet limit (RFC 4301 §4.4.2.1), as
        the data plane found: soft rekeys the pair (§1.3.3), hard deletes it (§1.4.1).
        ``spi`` is the SA's SPI, ours for the inbound SA, the peer's for the outbound one.
        False if no current child SA has it (a rekeyed one that still sees packets)."""
        # Inbound: the IKE SAs that have a child SA with this SPI (from the index); outbound
        # SPIs are the peer's and not indexed: all IKE SAs, O(n) (rare: a volume limit).
        sas = (self._holders(self._by_spi_in.get(spi, ())) if inbound
               else list(self._sas.values()))
        for sa in sas:
            self._touch(sa)
            for child in sa.children:
                if (child.spi_in if inbound else child.spi_out) != spi:
                    continue
                if hard:
                    if child.spi_in in sa._deleting or sa.state is not State.ESTABLISHED:
                        return False
                    sa._request_child_delete([child], now)
                    return True
                return sa._may_rekey(child) and sa.create_child(child.config, now, old=child)
        return False

    def delete_child_sa(self, reqid: int, now: float) -> bool:
        for sa in self._holders(self._by_reqid.get(reqid, ())):
            self._touch(sa)
            if sa.delete_child(reqid, now):
                return True
        return False

    def _holders(self, children: Iterable[ChildSa]) -> list[IkeSa]:
        """The IKE SAs holding ``children``, in the order of the SA table."""
        holders = {id(sa): sa for c in children if (sa := self._child_home.get(id(c)))}
        return sorted(holders.values(), key=lambda sa: sa._order)

    def check_liveness(self, name: str, now: float) -> bool:
        sa = self.find_ike_sa(name)
        if sa is None or sa.state is not State.ESTABLISHED:
            return False
        self._touched(sa).check_liveness(now)
        return True

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> None:
        """Handle one received IKE message. Never raises on anything a peer can send."""
        self._guard(self._receive, bytes(data), src, dst, now)

    # -- internals ------------------------------------------------------------------------

    def _guard(self, function: Callable, *args: object) -> None:
        try:
            function(*args)
        except Exception as error:  # the boundary §2.21 wants unbreakable
            self.dropped += 1
            self.internal_errors.append(f"{type(error).__name__}: {error}")

    def _forget(self, sa: IkeSa) -> None:
        if self._sas.get(sa.local_spi) is sa:
            del self._sas[sa.local_spi]
        self._timer_at.pop(sa, None)
        self._half_open.pop((sa.spi_i, sa.remote), None)
        for key, value in list(self._half_open.items()):
            if value is sa:
                del self._half_open[key]

    def _rekey_index(self, sa: IkeSa) -> None:
        """Hook for when an SA learns its peer's SPI: its name changes (by our SPI it is
        still where it was)."""
        self._sas.renamed(sa)

    def _initial_contact(self, sa: IkeSa, now: float) -> None:
        """INITIAL_CONTACT (§2.4): the peer has no other IKE SA with us; drop the old ones."""
        for other in self._older_duplicates(sa):
            other._delete(now, "replaced after INITIAL_CONTACT", by_peer=True)

    def _in_contact(self, sa: IkeSa) -> bool:
        """Another established IKE SA of ours with the peer of ``sa`` (its address and our
        config): then ``sa`` must not send INITIAL_CONTACT (§2.4)."""
        return any(other is not sa and other.state is State.ESTABLISHED
                   and other.config is sa.config and other.remote[0] == sa.remote[0]
                   for other in self._by_peer.get(("addr", id(sa.config), sa.remote[0]), ()))

    def _unique_replace(self, sa: IkeSa, now: float) -> None:
        """swanctl's ``unique = replace``: an older IKE SA of the same peer identity goes, with
        a Delete, since its peer may still think it alive (§1.4.1)."""
        for other in self._older_duplicates(sa):
            other.delete(now)

    def _older_duplicates(self, sa: IkeSa) -> list[IkeSa]:
        """The other established IKE SAs of the config and peer identity of ``sa``, in the
        order of the SA table."""
        found = [other for other in self._by_peer.get(("id", id(sa.config), sa.remote_id), ())
                 if other is not sa and other.state is State.ESTABLISHED
                 and other.config is sa.config and other.remote_id == sa.remote_id]
        return sorted(found, key=lambda other: other._order)

    def _receive(self, data: bytes, src: Address, dst: Address, now: float) -> None:
        try:
            message = parse_message(data)
        except MalformedMessage as error:
            self.dropped += 1
            self._answer_malformed_init(data, error, src, dst)
            return
        if (message.exchange_type == ExchangeType.IKE_SA_INIT and not message.is_response
                and message.is_initiator and message.spi_r == bytes(8)):
            self._on_init_request(message, data, src, dst, now)
            return
        local_spi = message.spi_r if message.is_initiator else message.spi_i
        sa = self._sas.get(local_spi)
        if sa is None:
            self.dropped += 1
            self._answer_invalid_spi(message, src, dst, now)
            return
        self._touch(sa)
        sa.receive(message, data, src, dst, now)

    def _answer_malformed_init(self, data: bytes, error: MalformedMessage, src: Address,
                               dst: Address) -> None:
        """A broken IKE_SA_INIT request still gets its error notify (§2.21.1, §1.5)."""
        if len(data) < HEADER_SIZE:
            return
        spi_i, spi_r, _, _, exchange, flags, message_id, _ = _HEADER.unpack_from(data)
        if (exchange == ExchangeType.IKE_SA_INIT and flags & HeaderFlag.I
                and not flags & HeaderFlag.R and message_id == 0 and spi_r == bytes(8)):
            self._stateless_reply(spi_i, Notify(error.notify, error.data), src, dst)

    def _answer_invalid_spi(self, message: Message, src: Address, dst: Address,
                            now: float) -> None:
        """§2.21.4: a request for an IKE SA we do not know (we may have restarted) MAY get
        an unprotected INVALID_IKE_SPI answer, with its SPIs and Message ID copied; a
        response never does. Rate-limited per peer address, for unauthenticated input."""
        if message.is_response or self.invalid_spi_interval is None:
            return
        last = self._invalid_spi_sent.get(src[0])
        if last is not None and now - last < self.invalid_spi_interval:
            return
        if len(self._invalid_spi_sent) > 1024:
            self._invalid_spi_sent.clear()
        self._invalid_spi_sent[src[0]] = now
        flags = HeaderFlag.R | (HeaderFlag(0) if message.is_initiator else HeaderFlag.I)
        reply = Message(message.spi_i, message.spi_r, message.exchange_type, flags,
                        message.message_id, [Notify(NotifyType.INVALID_IKE_SPI)])
        self._out.append((reply.to_bytes(), dst, src))

    def _stateless_reply(self, spi_i: bytes, notify: Notify, src: Address,
                         dst: Address) -> None:
        reply = Message(spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlag.R, 0, [notify])
        self._out.append((reply.to_bytes(), dst, src))

    def _cookie(self, nonce: bytes, src: Address, spi_i: bytes) -> bytes:
        """Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>) (§2.6)."""
        digest = hashlib.sha256(nonce + ipaddress.ip_address(src[0]).packed + spi_i
                                + self._cookie_secret).digest()
        return b"\x00" + digest

    def half_open_count(self) -> int:
        return sum(1 for sa in self._half_open.values() if sa.state is State.INIT_DONE)

    def _on_init_request(self, message: Message, data: bytes, src: Address, dst: Address,
                         now: float) -> None:
        known = self._half_open.get((message.spi_i, src))
        if known is not None:
            if known.init_request == data and known.state is State.INIT_DONE:
                self._out.append((known.init_response, dst, src))  # retransmission (§2.1)
            return
        candidates = [c for c in self.configs.values() if c.matches_addresses(dst[0], src[0])]
        reply = lambda notify: self._stateless_reply(message.spi_i, notify, src, dst)  # noqa
        sa_payload = message.find(SecurityAssociation)
        ke = message.find(KeyExchange)
        nonce = message.find(Nonce)
        if sa_payload is None or ke is None or nonce is None:
            reply(Notify(NotifyType.INVALID_SYNTAX))
            return
        if self.cookie_threshold is not None and self.half_open_count() >= self.cookie_threshold:
            expected = self._cookie(nonce.data, src, message.spi_i)
            cookies = message.notifies(NotifyType.COOKIE)
            if not cookies or not negotiation.auth_equal(cookies[0].data, expected):
                reply(Notify(NotifyType.COOKIE, expected))
                return
        ours = [p for c in candidates for p in c.ike_proposals]
        theirs = negotiation.read_proposals(sa_payload, ProtocolId.IKE)
        choice = negotiation.choose_proposal(ours, theirs, ke.group)
        if choice is None:
            reply(Notify(NotifyType.NO_PROPOSAL_CHOSEN))
            # No state is kept (§2.6), but the operator needs to see why (§2.7).
            self._events.append(events.NegotiationFailed(
                message.spi_i.hex() + bytes(8).hex(), NotifyType.NO_PROPOSAL_CHOSEN,
                f"no IKE proposal of {src[0]} is acceptable (KE group {ke.group})",
                received=negotiation.describe_offer(sa_payload, ProtocolId.IKE),
                configured="; ".join(f"{c.name}: {', '.join(str(p) for p in c.ike_proposals)}"
                                     for c in candidates) or "no connection for these addresses",
                time=now))
            return
        wire, proposal = choice
        group = proposal.dh[0]
        if ke.group != group.iana_id:
            reply(Notify.invalid_ke_payload(group.iana_id))
            return
        dh = negotiation.generate_dh(group, self.rng)
        try:
            g_ir = dh.exchange(ke.data)
        except InvalidKeyShare:
            reply(Notify(NotifyType.INVALID_SYNTAX))  # RFC 6989: refuse the key share
            return
        sa = IkeSa(self, initiator=False, local=dst, remote=src, spi_i=message.spi_i,
                   spi_r=self._new_ike_spi(), candidates=candidates)
        sa.config = candidates[0]
        sa.created = now
        sa.ni = nonce.data
        sa.nr = self.random(32)
        sa.dh = dh
        sa._derive(proposal, g_ir, now=now)
        sa.nat_detected = sa._check_natd(message, bytes(8))
        sa.peer_hashes, sa.peer_certreq = read_sa_init_extras(message.payloads)
        payloads = [
            negotiation.sa_payload_for([proposal], ProtocolId.IKE, numbers=[wire.number]),
            KeyExchange(group.iana_id, dh.public_bytes()),
            Nonce(sa.nr),
            *sa._natd_notifies(),
            *sa_init_extras(candidates),
        ]
        if any(c.childless != "never" for c in candidates):
            payloads.append(Notify(NotifyType.CHILDLESS_IKEV2_SUPPORTED))  # RFC 6023 §3
        if message.notifies(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) and any(
                c.fragmentation != "no" for c in candidates):
            payloads.append(Notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))  # RFC 7383 §2.3
            sa.peer_fragmentation = True
        response = Message(sa.spi_i, sa.spi_r, ExchangeType.IKE_SA_INIT, HeaderFlag.R, 0,
                           payloads).to_bytes()
        sa.init_request = data
        sa.init_response = response
        sa.expected_request_id = 1
        sa.expires = now + self.half_open_timeout
        self._sas[sa.spi_r] = sa
        self._half_open[(sa.spi_i, src)] = sa
        self._out.append((response, dst, src))

    def _established(self, sa: IkeSa) -> None:
        """A responder SA is no longer half-open; every SA goes into the index of peers."""
        for key, value in list(self._half_open.items()):
            if value is sa:
                del self._half_open[key]
        keys = (("id", id(sa.config), sa.remote_id), ("addr", id(sa.config), sa.remote[0]))
        if sa._peer_keys != keys:
            self._unindex_peer(sa)
            sa._peer_keys = keys
            for key in keys:
                self._by_peer.setdefault(key, []).append(sa)

    def _unindex_peer(self, sa: IkeSa) -> None:
        for key in sa._peer_keys:
            sas = self._by_peer.get(key, [])
            if sa in sas:
                sas.remove(sa)
            if not sas:
                self._by_peer.pop(key, None)
        sa._peer_keys = ()


def _same_peer(owner: IkeSa, sa: IkeSa) -> bool:
    """Another established IKE SA of the same connection, peer identity and peer address."""
    return (owner is not sa and owner.state is State.ESTABLISHED and owner.config is sa.config
            and owner.remote_id == sa.remote_id and owner.remote[0] == sa.remote[0])


def _selector_key(child: ChildSa) -> tuple:
    return child.config.name, tuple(child.local_ts), tuple(child.remote_ts)


def _index_add(index: dict, key: object, child: ChildSa) -> None:
    index.setdefault(key, []).append(child)


def _index_remove(index: dict, key: object, child: ChildSa) -> None:
    """Take ``child`` itself (not an equal one) out of ``index[key]``; gone keys go."""
    children = index.get(key)
    if children is None:
        return
    for i, c in enumerate(children):
        if c is child:
            del children[i]
            break
    if not children:
        del index[key]


class _SaTable(dict):
    """The engine's IKE SAs by our SPI (a dict), which also keeps them by name (what
    find_ike_sa() looks up) and numbers them in the order they came (``IkeSa._order``, the
    order a scan of the table meets them), for the engine's indexes."""

    def __init__(self, engine: IkeEngine) -> None:
        super().__init__()
        self.engine = engine
        self.by_name: dict[str, IkeSa] = {}
        self._names: dict[IkeSa, str] = {}  # the name each SA is in by_name under
        self._count = 0

    def __setitem__(self, spi: bytes, sa: IkeSa) -> None:
        old = self.get(spi)
        if old is not None and old is not sa:
            del self[spi]
        if sa._order < 0:
            self._count += 1
            sa._order = self._count
        super().__setitem__(spi, sa)
        self.by_name[sa.name] = sa
        self._names[sa] = sa.name
        self.engine._touch(sa)

    def __delitem__(self, spi: bytes) -> None:
        sa = self[spi]
        super().__delitem__(spi)
        self.engine._unindex_peer(sa)
        name = self._names.pop(sa, None)
        if name is not None and self.by_name.get(name) is sa:
            del self.by_name[name]
        self.engine._touch(sa)

    def pop(self, spi: bytes, *default: IkeSa | None) -> IkeSa | None:
        if spi not in self:
            return super().pop(spi, *default)
        sa = self[spi]
        del self[spi]
        return sa

    def clear(self) -> None:
        """All IKE SAs go at once (a benchmark does this): so do all indexes."""
        super().clear()
        self.by_name.clear()
        self._names.clear()
        self.engine._reset_indexes()

    def renamed(self, sa: IkeSa) -> None:
        """``sa`` learnt the peer's SPI, part of its name."""
        old = self._names.get(sa)
        if old is None:
            return
        if self.by_name.get(old) is sa:
            del self.by_name[old]
        self.by_name[sa.name] = sa
        self._names[sa] = sa.name

    def last_order(self) -> int:
        return self._count
