"""The Security Policy Database (RFC 4301 §4.4.1).

The SPD decides, for every packet crossing the IPsec boundary, one of three things
(RFC 4301 §4.4.1): PROTECT it with IPsec, BYPASS IPsec, or DISCARD it.

Like Linux xfrm (and unlike the decorrelated SPD of RFC 4301 §4.4.1.2) this SPD is an
ordered list per direction: the entry with the lowest ``priority`` number that matches wins,
and among equal priorities the one added first. RFC 4301 §4.4.1 requires exactly this
ordered-search semantics of an SPD; ordering by priority is how users express it in
``ip xfrm policy`` and strongSwan. ``lookup`` returns None when nothing matches; the caller
then applies the default of RFC 4301 §5.1/§5.2, which is to discard.

A PROTECT entry carries templates, one per transform it requires (ESP and/or AH), like the
``tmpl`` lines of ``ip xfrm policy``: which protocol, which mode, the tunnel endpoints and
optionally the ``reqid`` that ties it to SAs in the SAD.

A gateway with many tunnels has many entries, and the ordered search costs one selector
match per entry before the one that fits. So a direction with more than a few entries
remembers its answer per flow (the packet's selector fields): the first packet of a flow
searches, the next ones look the answer up. Any change to the SPD forgets every answer, so
the result is always what the ordered search gives (``benchmarks/spd_scale.py`` measures).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from ipseclab.errors import ConfigError
from ipseclab.ipsec.selectors import Direction, PacketFields, Selector

__all__ = ["SPD", "Policy", "PolicyAction", "Template"]

_CACHE_FROM = 4  # entries in a direction from which lookups are remembered per flow
_CACHE_MAX = 65536  # flows remembered per direction; beyond, the memory starts afresh

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PolicyAction(enum.Enum):
    """What to do with a packet an SPD entry matches (RFC 4301 §4.4.1)."""

    PROTECT = "protect"
    BYPASS = "bypass"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class Template:
    """One transform a PROTECT policy requires, like a ``tmpl`` of ``ip xfrm policy``.

    ``src``/``dst`` are the tunnel endpoints (outer header) and required in tunnel mode;
    in transport mode they may be None (the packet's own addresses are used). ``reqid``
    links the policy to its SAs; ``spi`` pins one SA, None means any.
    """

    protocol: str = "esp"
    mode: str = "transport"
    src: IPAddress | None = None
    dst: IPAddress | None = None
    reqid: int | None = None
    spi: int | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ("esp", "ah"):
            raise ConfigError("template protocol must be esp or ah", token=str(self.protocol))
        if self.mode not in ("transport", "tunnel"):
            raise ConfigError("template mode must be transport or tunnel", token=str(self.mode))
        # Accept strings for the endpoints, store address objects.
        for name in ("src", "dst"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, ipaddress.IPv4Address
                                                    | ipaddress.IPv6Address):
                try:
                    object.__setattr__(self, name, ipaddress.ip_address(value))
                except ValueError:
                    raise ConfigError(f"template {name} is not an IP address",
                                      token=str(value)) from None
        if self.mode == "tunnel" and (self.src is None or self.dst is None):
            raise ConfigError("a tunnel-mode template needs src and dst (the tunnel endpoints)")
        if self.src is not None and self.dst is not None and self.src.version != self.dst.version:
            raise ConfigError("template src and dst mix IPv4 and IPv6")
        if self.reqid is not None and not 0 <= self.reqid < 2**32:
            raise ConfigError(f"reqid {self.reqid} is not a 32-bit number")
        if self.spi is not None and not 0 < self.spi < 2**32:
            raise ConfigError(f"SPI {self.spi} is not 1..2**32-1")

    def __str__(self) -> str:
        text = f"{self.protocol} {self.mode}"
        if self.src is not None or self.dst is not None:
            text += f" {self.src or 'any'} -> {self.dst or 'any'}"
        if self.reqid is not None:
            text += f" reqid {self.reqid}"
        if self.spi is not None:
            text += f" spi 0x{self.spi:08x}"
        return text


@dataclass(slots=True, eq=False)
class Policy:
    """One SPD entry. ``priority``: lower is tried first (as in Linux xfrm).

    ``packets`` counts the packets :meth:`SPD.lookup` matched to this entry; ``index`` is set
    by the SPD when the entry is added (a handle for listing and removal, like xfrm's index).
    Equality is identity: two entries with the same fields are still two entries.
    """

    selector: Selector
    direction: Direction | str
    action: PolicyAction
    priority: int = 0
    templates: list[Template] = field(default_factory=list)
    packets: int = 0
    index: int | None = None

    def __post_init__(self) -> None:
        try:
            self.direction = Direction(self.direction)
        except ValueError:
            raise ConfigError("policy direction must be out, in or fwd",
                              token=str(self.direction)) from None
        if isinstance(self.action, str):
            try:
                self.action = PolicyAction(self.action.lower())
            except ValueError:
                raise ConfigError("policy action must be protect, bypass or discard",
                                  token=self.action) from None
        self.templates = list(self.templates)
        if self.action is PolicyAction.PROTECT and not self.templates:
            raise ConfigError("a PROTECT policy needs at least one template (esp or ah)")
        if self.action is not PolicyAction.PROTECT and self.templates:
            raise ConfigError(f"a {self.action.name} policy takes no templates")

    def __str__(self) -> str:
        head = (f"{self.selector} dir {self.direction} {self.action.name.lower()} "
                f"priority {self.priority}")
        if self.index is not None:
            head = f"[{self.index}] {head}"
        tmpls = "".join(f"\n    tmpl {t}" for t in self.templates)
        return f"{head} ({self.packets} packets){tmpls}"


class SPD:
    """Ordered policies per direction; first match wins (RFC 4301 §4.4.1)."""

    def __init__(self) -> None:
        self._lists: dict[Direction, list[Policy]] = {d: [] for d in Direction}
        self._flows: dict[Direction, dict[tuple, Policy | None]] = {d: {} for d in Direction}
        self._next_index = 1

    def _changed(self) -> None:
        """The entries changed: every remembered lookup may be wrong now."""
        for flows in self._flows.values():
            flows.clear()

    def add(self, policy: Policy) -> Policy:
        """Insert ``policy`` after every entry of lower or equal priority; returns it.

        Two entries with the same selector and direction are refused, as ``ip xfrm policy add``
        refuses them: remove the old one first.
        """
        if policy.index is not None:
            raise ConfigError(f"policy {policy.index} is already in an SPD")
        entries = self._lists[Direction(policy.direction)]
        for other in entries:
            if other.selector == policy.selector:
                raise ConfigError(f"a policy for {policy.selector} dir {policy.direction} "
                                  f"exists already (index {other.index})")
        pos = len(entries)
        while pos > 0 and entries[pos - 1].priority > policy.priority:
            pos -= 1
        entries.insert(pos, policy)
        policy.index = self._next_index
        self._next_index += 1
        self._changed()
        return policy

    def remove(self, target: Policy | int) -> Policy:
        """Remove an entry given as the Policy object or its index; KeyError if absent."""
        for entries in self._lists.values():
            for i, policy in enumerate(entries):
                if policy is target or policy.index == target:
                    del entries[i]
                    policy.index = None
                    self._changed()
                    return policy
        raise KeyError(f"no policy {target if isinstance(target, int) else target.index}")

    def find(self, selector: Selector, direction: Direction | str) -> Policy | None:
        """The entry with exactly this selector and direction (management, not per packet)."""
        for policy in self._lists[Direction(direction)]:
            if policy.selector == selector:
                return policy
        return None

    def flush(self) -> None:
        """Remove every entry (``ip xfrm policy flush``)."""
        for entries in self._lists.values():
            for policy in entries:
                policy.index = None
            entries.clear()
        self._changed()

    def lookup(
        self, direction: Direction | str, fields: PacketFields, *, count: bool = True
    ) -> Policy | None:
        """The first matching entry in priority order, or None (caller discards).

        ``count=False`` looks without counting (e.g. to explain a decision in a notebook).
        """
        entries = self._lists.get(direction)  # a StrEnum key: "out" finds Direction.OUT
        if entries is None:
            direction = Direction(direction)
            entries = self._lists[direction]
        if len(entries) >= _CACHE_FROM:
            return self._remembered(entries, direction, fields, count)
        for policy in entries:
            if policy.selector.matches(fields, direction):
                if count:
                    policy.packets += 1
                return policy
        return None

    def _remembered(self, entries: list[Policy], direction: str, fields: PacketFields,
                    count: bool) -> Policy | None:
        """:meth:`lookup` by the flow's remembered answer, searching only a new flow."""
        flows = self._flows[direction]  # type: ignore[index]
        flow = fields.flow()
        try:
            policy = flows[flow]
        except KeyError:
            policy = next((p for p in entries if p.selector.matches(fields, direction)), None)
            if len(flows) >= _CACHE_MAX:
                flows.clear()
            flows[flow] = policy
        if policy is not None and count:
            policy.packets += 1
        return policy

    def policies(self, direction: Direction | str | None = None) -> list[Policy]:
        """The entries of one direction (or all: out, in, fwd) in lookup order."""
        if direction is not None:
            return list(self._lists[Direction(direction)])
        return [p for d in Direction for p in self._lists[d]]

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies())

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._lists.values())

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self) or "(empty SPD)"
