"""Configuration of IKE connections: one dataclass per connection, shaped like swanctl.conf.

    connections { NAME { local_addrs, remote_addrs, proposals, local { id, auth },
                         remote { id, auth }, children { NAME { local_ts, remote_ts, mode,
                         esp_proposals, rekey_time, life_time, ... } } } }

The swanctl.conf parser builds these; tests and notebooks build them by hand. Strings stay
as the user wrote them (proposal strings, selector strings, identities); :meth:`IkeConfig.check`
parses them once so that a mistake is reported before the first packet, as one line.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property

from ipseclab.crypto.proposals import Proposal, parse_proposals
from ipseclab.errors import ConfigError
from ipseclab.ipsec.pad import IdentityMatcher
from ipseclab.ipsec.selectors import TrafficSelector

__all__ = ["ChildConfig", "IkeConfig"]

DYNAMIC = "dynamic"  # swanctl's default TS: the IKE address of this side


@dataclass
class ChildConfig:
    """One ``children { NAME { ... } }`` section: what the child SA protects and how.

    ``local_ts``/``remote_ts`` hold swanctl selector strings (``10.1.0.0/24``,
    ``10.1.0.0/24[tcp/80]``, ``dynamic`` for the IKE address of that side). Times in seconds.
    """

    name: str
    local_ts: list[str] = field(default_factory=lambda: [DYNAMIC])
    remote_ts: list[str] = field(default_factory=lambda: [DYNAMIC])
    mode: str = "tunnel"
    esp_proposals: str = "default"
    rekey_time: float = 3600.0
    life_time: float = 3960.0
    replay_window: int = 32
    start_action: str = "none"  # none | trap | start
    dpd_action: str = "clear"

    def __post_init__(self) -> None:
        if self.mode not in ("tunnel", "transport"):
            raise ConfigError(f"child {self.name}: mode must be tunnel or transport",
                              token=self.mode)

    @cached_property
    def proposals(self) -> list[Proposal]:
        return parse_proposals(self.esp_proposals, "esp")

    def selectors(self, which: str, address: str) -> list[TrafficSelector]:
        """``local_ts`` or ``remote_ts`` as selectors; ``dynamic`` becomes ``address``."""
        texts = self.local_ts if which == "local" else self.remote_ts
        return [TrafficSelector.parse(address if t.strip() == DYNAMIC else t) for t in texts]


@dataclass
class IkeConfig:
    """One ``connections { NAME { ... } }`` section with PSK authentication.

    ``local_id``/``remote_id`` are swanctl identities (``192.0.2.1``, ``@gw.example``,
    ``user@example.org``, ``%any`` for the remote). An empty ``local_id`` means the local
    IKE address. ``remote_addrs`` may hold ``%any`` (a responder for anyone).
    """

    name: str
    local_addrs: list[str] = field(default_factory=lambda: ["%any"])
    remote_addrs: list[str] = field(default_factory=lambda: ["%any"])
    proposals: str = "default"
    local_id: str = ""
    local_auth: str = "psk"
    remote_id: str = "%any"
    remote_auth: str = "psk"
    psk: bytes = field(default=b"", repr=False)
    children: list[ChildConfig] = field(default_factory=list)
    local_port: int = 500
    remote_port: int = 500
    dpd_delay: float = 0.0
    rekey_time: float = 14400.0
    over_time: float | None = None  # the IKE SA dies at rekey_time + over_time (None: 10%)
    send_initial_contact: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.psk, str):
            self.psk = self.psk.encode()
        for side, auth in (("local", self.local_auth), ("remote", self.remote_auth)):
            if auth != "psk":
                raise ConfigError(f"connection {self.name}: {side} auth '{auth}' is not"
                                  " supported yet, only psk", token=auth)

    @cached_property
    def ike_proposals(self) -> list[Proposal]:
        return parse_proposals(self.proposals, "ike")

    @cached_property
    def remote_id_matcher(self) -> IdentityMatcher:
        return IdentityMatcher.parse(self.remote_id or "%any")

    @property
    def life_time(self) -> float:
        """When an IKE SA that could not be rekeyed is deleted (swanctl's ``over_time``)."""
        if not self.rekey_time:
            return 0.0
        over = self.over_time if self.over_time is not None else self.rekey_time / 10
        return self.rekey_time + over

    def child(self, name: str | None = None) -> ChildConfig:
        for child in self.children:
            if name is None or child.name == name:
                return child
        raise ConfigError(f"connection {self.name} has no child '{name}'", token=name)

    def check(self) -> None:
        """Parse every string once, so a mistake shows up as a ConfigError now."""
        if not self.psk:
            raise ConfigError(f"connection {self.name}: auth psk needs a secret")
        _ = self.ike_proposals, self.remote_id_matcher
        for child in self.children:
            _ = child.proposals
            child.selectors("local", "0.0.0.0")
            child.selectors("remote", "0.0.0.0")

    def matches_addresses(self, local: str, remote: str) -> bool:
        """Whether a peer at ``remote`` talking to ``local`` may use this connection."""
        return _address_in(local, self.local_addrs) and _address_in(remote, self.remote_addrs)


def _address_in(address: str, allowed: list[str]) -> bool:
    addr = ipaddress.ip_address(address)
    for text in allowed:
        text = text.strip()
        if text in ("%any", "%any4", "%any6", "0.0.0.0/0", "::/0"):
            if text == "%any" or (text in ("%any4", "0.0.0.0/0")) == (addr.version == 4):
                return True
            continue
        try:
            if "-" in text:
                first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
                if first.version == addr.version and first <= addr <= last:  # type: ignore
                    return True
            elif addr in ipaddress.ip_network(text, strict=False):
                return True
        except ValueError:
            continue  # a DNS name: resolving it is the driver's business
    return False
