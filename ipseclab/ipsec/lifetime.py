"""SA lifetimes (RFC 4301 §4.4.2.1, RFC 7296 §2.8).

An SA may be limited in bytes, packets and seconds. Reaching a *soft* limit asks for a
replacement SA (rekeying) while the old one keeps working; reaching a *hard* limit ends the
SA. The tracker is sans-IO: the driver passes the current time, feeds it every packet with
:meth:`LifetimeTracker.account` and calls :meth:`LifetimeTracker.poll` at
:meth:`LifetimeTracker.next_deadline`. Every (soft/hard, limit) event is reported exactly
once; if one step crosses a soft and a hard limit, the soft event comes first.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ipseclab.errors import ConfigError

__all__ = ["Lifetime", "LifetimeEvent", "LifetimeKind", "LifetimeLimit", "LifetimeTracker"]


class LifetimeKind(enum.Enum):
    SOFT = "soft"  #: time to rekey
    HARD = "hard"  #: the SA must not be used any more


class LifetimeLimit(enum.Enum):
    BYTES = "bytes"
    PACKETS = "packets"
    SECONDS = "seconds"


@dataclass(frozen=True, slots=True)
class LifetimeEvent:
    """A limit was reached: ``kind`` soft or hard, which ``limit``, the configured ``value``,
    and ``at``, the time passed to the call that noticed it."""

    kind: LifetimeKind
    limit: LifetimeLimit
    value: float
    at: float

    def __str__(self) -> str:
        return f"{self.kind.value} {self.limit.value} limit {self.value:g} reached at {self.at:g}"


@dataclass(frozen=True, slots=True)
class Lifetime:
    """Soft and hard limits of an SA; None means unlimited. A soft limit must not exceed the
    hard limit of the same kind."""

    soft_bytes: int | None = None
    hard_bytes: int | None = None
    soft_packets: int | None = None
    hard_packets: int | None = None
    soft_seconds: float | None = None
    hard_seconds: float | None = None

    def __post_init__(self) -> None:
        for unit in ("bytes", "packets", "seconds"):
            soft, hard = getattr(self, f"soft_{unit}"), getattr(self, f"hard_{unit}")
            for name, value in (("soft", soft), ("hard", hard)):
                if value is not None and value < 0:
                    raise ConfigError(f"{name} {unit} lifetime must not be negative",
                                      token=str(value))
            if soft is not None and hard is not None and soft > hard:
                raise ConfigError(f"soft {unit} lifetime {soft} exceeds hard lifetime {hard}")


class LifetimeTracker:
    """Counts an SA's bytes and packets and reports lifetime events (sans-IO)."""

    __slots__ = ("_created", "_fired", "_limits", "_next_bytes", "_next_packets", "_next_time",
                 "bytes", "lifetime", "packets")

    def __init__(self, lifetime: Lifetime, created: float) -> None:
        self.lifetime = lifetime
        self._created = created
        self.bytes = 0
        self.packets = 0
        self._fired: set[tuple[LifetimeKind, LifetimeLimit]] = set()
        # (kind, limit, configured value, threshold in counter units / absolute time)
        self._limits: list[tuple[LifetimeKind, LifetimeLimit, float, float]] = []
        for kind in (LifetimeKind.SOFT, LifetimeKind.HARD):
            for limit in LifetimeLimit:
                value = getattr(lifetime, f"{kind.value}_{limit.value}")
                if value is not None:
                    threshold = created + value if limit is LifetimeLimit.SECONDS else value
                    self._limits.append((kind, limit, value, threshold))
        self._refresh()

    @property
    def created(self) -> float:
        return self._created

    @property
    def expired(self) -> bool:
        """True once any hard limit was reported."""
        return any(kind is LifetimeKind.HARD for kind, _ in self._fired)

    @property
    def soft_expired(self) -> bool:
        """True once any soft limit was reported (a rekey was asked for)."""
        return any(kind is LifetimeKind.SOFT for kind, _ in self._fired)

    def account(self, nbytes: int, now: float) -> list[LifetimeEvent]:
        """Count one packet of ``nbytes``; the events it triggered (usually none).

        The common case is three comparisons: the next byte, packet and time thresholds are
        precomputed.
        """
        self.bytes += nbytes
        self.packets += 1
        if self.bytes < self._next_bytes and self.packets < self._next_packets and (
            now < self._next_time
        ):
            return []
        return self._collect(now)

    def poll(self, now: float) -> list[LifetimeEvent]:
        """Check the time limits (and anything else due); call at :meth:`next_deadline`."""
        if now < self._next_time and self.bytes < self._next_bytes and (
            self.packets < self._next_packets
        ):
            return []
        return self._collect(now)

    def next_deadline(self) -> float | None:
        """When the next time limit falls due, or None if no time limit is pending."""
        return None if self._next_time == math.inf else self._next_time

    def _collect(self, now: float) -> list[LifetimeEvent]:
        events = []
        current = {LifetimeLimit.BYTES: self.bytes, LifetimeLimit.PACKETS: self.packets,
                   LifetimeLimit.SECONDS: now}
        for kind, limit, value, threshold in self._limits:  # soft limits come first
            if (kind, limit) not in self._fired and current[limit] >= threshold:
                self._fired.add((kind, limit))
                events.append(LifetimeEvent(kind, limit, value, now))
        self._refresh()
        return events

    def _refresh(self) -> None:
        pending = {LifetimeLimit.BYTES: math.inf, LifetimeLimit.PACKETS: math.inf,
                   LifetimeLimit.SECONDS: math.inf}
        for kind, limit, _, threshold in self._limits:
            if (kind, limit) not in self._fired:
                pending[limit] = min(pending[limit], threshold)
        self._next_bytes = pending[LifetimeLimit.BYTES]
        self._next_packets = pending[LifetimeLimit.PACKETS]
        self._next_time = pending[LifetimeLimit.SECONDS]

    def __repr__(self) -> str:
        return (f"LifetimeTracker(bytes={self.bytes}, packets={self.packets}, "
                f"created={self._created:g}, expired={self.expired})")
