"""Configuration of IKE connections: one dataclass per connection, shaped like swanctl.conf.

    connections { NAME { local_addrs, remote_addrs, proposals, local { id, auth },
                         remote { id, auth }, children { NAME { local_ts, remote_ts, mode,
                         esp_proposals, rekey_time, life_time, ... } } } }

The swanctl.conf parser builds these; tests and notebooks build them by hand. Strings stay
as the user wrote them (proposal strings, selector strings, identities); :meth:`IkeConfig.check`
parses them once so that a mistake is reported before the first packet, as one line.

Authentication is chosen per direction, as in swanctl: ``local_auth`` is how we prove who we
are (``psk``, or ``pubkey``: a signature with ``private_key`` and our ``local_certs``),
``remote_auth`` what we demand of the peer (``psk``, or ``pubkey``: a certificate chain up to
one of ``remote_cacerts``, or one of the pinned ``remote_certs``). Certificates and keys are
``cryptography`` objects; :mod:`ipseclab.config.swanctl` loads them from files.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from cryptography import x509

from ipseclab.crypto.proposals import Proposal, parse_proposals
from ipseclab.errors import ConfigError
from ipseclab.ike.constants import ProtocolId
from ipseclab.ipsec.lifetime import Lifetime
from ipseclab.ipsec.pad import IdentityMatcher
from ipseclab.ipsec.selectors import TrafficSelector

__all__ = ["AddressPool", "ChildConfig", "IkeConfig", "auth_family"]

DYNAMIC = "dynamic"  # swanctl's default TS: the IKE address of this side

_PUBKEY_WORDS = ("pubkey", "rsa", "ecdsa", "ed25519", "ed448")


def auth_family(auth: str) -> str:
    """``psk``, ``pubkey`` (also for ``rsa/pss-sha256``, ``ecdsa-sha384``, ...) or the
    first word of anything else (``eap``, ``null``), as swanctl.conf's ``auth`` groups them."""
    base = auth.strip().lower().removeprefix("ike:").split("-", 1)[0].split("/", 1)[0]
    return "pubkey" if base in _PUBKEY_WORDS else base


@dataclass(frozen=True)
class AddressPool:
    """A swanctl ``pools { NAME { addrs = ... } }`` entry: virtual IPs for road warriors
    (RFC 7296 §2.19). ``addrs`` is a subnet (network and broadcast addresses are not handed
    out, as strongSwan does) or a range ``first-last``; ``dns`` are sent as INTERNAL_IP4_DNS
    / INTERNAL_IP6_DNS. Which address is leased to whom is the engine's state, not this."""

    name: str
    addrs: str
    dns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _ = self.bounds

    @cached_property
    def bounds(self) -> tuple[int, int, int]:
        """(IP version, first, last) as integers."""
        text = self.addrs.strip()
        try:
            if "-" in text:
                first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
                if first.version != last.version or last < first:  # type: ignore[operator]
                    raise ValueError
                return first.version, int(first), int(last)
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f"pool {self.name}: addrs must be a subnet or a range"
                              " first-last", token=self.addrs) from None
        first, last = int(net.network_address), int(net.broadcast_address)
        if net.num_addresses > 2:
            first, last = first + 1, last - 1
        return net.version, first, last

    @property
    def version(self) -> int:
        return self.bounds[0]

    def __contains__(self, address: object) -> bool:
        try:
            addr = ipaddress.ip_address(str(address))
        except ValueError:
            return False
        version, first, last = self.bounds
        return addr.version == version and first <= int(addr) <= last

    def addresses(self) -> Iterator[str]:
        version, first, last = self.bounds
        cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        for number in range(first, last + 1):
            yield str(cls(number))


@dataclass
class ChildConfig:
    """One ``children { NAME { ... } }`` section: what the child SA protects and how.

    ``local_ts``/``remote_ts`` hold swanctl selector strings (``10.1.0.0/24``,
    ``10.1.0.0/24[tcp/80]``, ``dynamic`` for the IKE address of that side). Times in seconds.

    Volume limits (RFC 4301 §4.4.2.1; 0: none): after ``rekey_bytes``/``rekey_packets`` in
    either direction the child SA is rekeyed, less a random part of up to ``rand_bytes``/
    ``rand_packets`` (default: the difference to the life limit) so that both peers do not
    start at once; at ``life_bytes``/``life_packets`` (default: 10% above the rekey limit)
    it is deleted. ``tfc_padding`` pads
    what we send to at least that many bytes (RFC 4303 §2.7); ``"mtu"`` to the engine's
    ``mtu``, the largest packet the tunnel carries.
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
    rekey_bytes: int = 0
    life_bytes: int = 0
    rand_bytes: int | None = None
    rekey_packets: int = 0
    life_packets: int = 0
    rand_packets: int | None = None
    tfc_padding: int | str = 0
    ah_proposals: str = ""  # AH instead of ESP (RFC 4302): integrity only, no encryption

    def __post_init__(self) -> None:
        if self.mode not in ("tunnel", "transport"):
            raise ConfigError(f"child {self.name}: mode must be tunnel or transport",
                              token=self.mode)
        for unit in ("bytes", "packets"):
            rekey, life = getattr(self, f"rekey_{unit}"), getattr(self, f"life_{unit}")
            if rekey > 0 and not life:
                life = rekey + rekey // 10  # strongSwan's default: 10 % more
                setattr(self, f"life_{unit}", life)
            if rekey < 0 or life < 0 or (rekey and life and life < rekey):
                raise ConfigError(f"child {self.name}: life_{unit} {life} is below"
                                  f" rekey_{unit} {rekey}", token=f"life_{unit}")
        if self.tfc_padding != "mtu" and not (isinstance(self.tfc_padding, int)
                                              and self.tfc_padding >= 0):
            raise ConfigError(f"child {self.name}: tfc_padding takes a number of bytes or mtu",
                              token=str(self.tfc_padding))

    def volume_lifetime(self, jitter: Callable[[int], int]) -> Lifetime | None:
        """The byte and packet limits as an SA lifetime (None without any); ``jitter(n)`` is
        a random number in [0, n) taken off each soft limit."""
        limits: dict[str, int | None] = {}
        for unit in ("bytes", "packets"):
            rekey, life = getattr(self, f"rekey_{unit}"), getattr(self, f"life_{unit}")
            rand = getattr(self, f"rand_{unit}")
            if rand is None:
                rand = life - rekey if rekey and life else 0
            limits[f"soft_{unit}"] = max(1, rekey - jitter(min(rand, rekey))) if rekey else None
            limits[f"hard_{unit}"] = life or None
        if not any(limits.values()):
            return None
        return Lifetime(**limits)  # type: ignore[arg-type]

    @property
    def protocol(self) -> str:
        """``ah`` when ``ah_proposals`` is set, else ``esp`` (one or the other per child SA;
        IKEv2 negotiates no AH+ESP bundles)."""
        return "ah" if self.ah_proposals else "esp"

    @property
    def protocol_id(self) -> int:
        """The protocol's number in IKE payloads (RFC 7296 §3.3.1)."""
        return ProtocolId.AH if self.ah_proposals else ProtocolId.ESP

    @cached_property
    def proposals(self) -> list[Proposal]:
        if self.ah_proposals:
            return parse_proposals(self.ah_proposals, "ah")
        return parse_proposals(self.esp_proposals, "esp")

    def selectors(self, which: str, address: str) -> list[TrafficSelector]:
        """``local_ts`` or ``remote_ts`` as selectors; ``dynamic`` becomes ``address``."""
        texts = self.local_ts if which == "local" else self.remote_ts
        return list(_parse_selectors(tuple(texts), address))


@dataclass
class IkeConfig:
    """One ``connections { NAME { ... } }`` section.

    ``local_id``/``remote_id`` are swanctl identities (``192.0.2.1``, ``@gw.example``,
    ``user@example.org``, ``C=CH, O=Org, CN=host``, ``%any`` for the remote). An empty
    ``local_id`` means the subject DN of our certificate with pubkey, else the local IKE
    address. ``remote_addrs`` may hold ``%any`` (a responder for anyone).

    pubkey: ``local_certs`` is our end-entity certificate first, then intermediates;
    ``private_key`` its key; ``rsa_pss`` signs RSA with PSS (``auth = rsa/pss``).
    ``send_cert`` is ``always``, ``ifasked`` (when the peer sent a CERTREQ) or ``never``.
    ``fragmentation`` (RFC 7383): ``yes`` announces support and sends oversized encrypted
    messages in fragments when the peer supports them too, ``accept`` announces it but sends
    whole messages, ``force`` acts as yes (IKEv2 never fragments IKE_SA_INIT), ``no`` does
    not announce it. Fragments a peer sends are accepted in every case, as strongSwan does.
    ``vips``: virtual IPs to ask for (``0.0.0.0``, ``::``, or a wish); ``pools``: where a
    responder takes the addresses it hands out (RFC 7296 §2.19).
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
    reauth_time: float = 0.0  # a new IKE SA from scratch this often (RFC 7296 §2.8.3); 0: never
    over_time: float | None = None  # the IKE SA dies this long after its first rekey or
    # reauthentication was due (None: 10% of the longer of rekey_time and reauth_time)
    send_initial_contact: bool = True
    local_certs: list[x509.Certificate] = field(default_factory=list, repr=False)
    private_key: object | None = field(default=None, repr=False)
    remote_cacerts: list[x509.Certificate] = field(default_factory=list, repr=False)
    remote_certs: list[x509.Certificate] = field(default_factory=list, repr=False)
    remote_crls: list[x509.CertificateRevocationList] = field(default_factory=list, repr=False)
    revocation: str = "relaxed"  # relaxed | ifuri | strict, swanctl's remote.revocation
    send_cert: str = "ifasked"
    send_certreq: bool = True
    rsa_pss: bool = False
    signature_authentication: bool = True  # announce RFC 7427 hashes (else classic methods)
    vips: list[str] = field(default_factory=list)
    pools: list[AddressPool] = field(default_factory=list)
    fragmentation: str = "yes"  # yes | accept | force | no (RFC 7383, as swanctl.conf)
    encap: bool = False  # swanctl's encap: claim a NAT (RFC 7296 §2.23) so ESP goes in UDP
    unique: str = "no"  # swanctl's unique: no | never | replace | keep
    # swanctl's childless (RFC 6023): allow (announce it, accept childless IKE_AUTH), force
    # (initiate childless: the first child SA by CREATE_CHILD_SA), never
    childless: str = "allow"

    def __post_init__(self) -> None:
        if isinstance(self.psk, str):
            self.psk = self.psk.encode()
        if "pss" in self.local_auth.lower():
            self.rsa_pss = True
        self.local_auth = auth_family(self.local_auth)
        self.remote_auth = auth_family(self.remote_auth)
        for side, auth in (("local", self.local_auth), ("remote", self.remote_auth)):
            if auth not in ("psk", "pubkey"):
                raise ConfigError(f"connection {self.name}: {side} auth '{auth}' is not"
                                  " supported, only psk and pubkey", token=auth)
        if self.send_cert not in ("always", "ifasked", "never"):
            raise ConfigError(f"connection {self.name}: send_cert must be always, ifasked or"
                              " never", token=self.send_cert)
        if self.childless not in ("allow", "force", "never"):
            raise ConfigError(f"connection {self.name}: childless must be allow, force or"
                              " never", token=self.childless)
        if self.revocation not in ("relaxed", "ifuri", "strict"):
            raise ConfigError(f"connection {self.name}: revocation must be relaxed, ifuri or"
                              " strict", token=self.revocation)
        if self.fragmentation not in ("yes", "accept", "force", "no"):
            raise ConfigError(f"connection {self.name}: fragmentation must be yes, accept,"
                              " force or no", token=self.fragmentation)

    @cached_property
    def ike_proposals(self) -> list[Proposal]:
        return parse_proposals(self.proposals, "ike")

    @cached_property
    def remote_id_matcher(self) -> IdentityMatcher:
        return IdentityMatcher.parse(self.remote_id or "%any")

    @property
    def life_time(self) -> float:
        """When an IKE SA that was neither rekeyed nor reauthenticated in time is deleted:
        ``over_time`` after the earlier of the two was due, as strongSwan does."""
        times = [t for t in (self.rekey_time, self.reauth_time) if t]
        return min(times) + self.effective_over_time if times else 0.0

    @property
    def effective_over_time(self) -> float:
        """``over_time``, or its default: 10% of the longer of rekey_time and reauth_time."""
        if self.over_time is not None:
            return self.over_time
        return max(self.rekey_time, self.reauth_time) / 10

    def child(self, name: str | None = None) -> ChildConfig:
        for child in self.children:
            if name is None or child.name == name:
                return child
        raise ConfigError(f"connection {self.name} has no child '{name}'", token=name)

    @property
    def certificate(self) -> x509.Certificate | None:
        """Our end-entity certificate, if any."""
        return self.local_certs[0] if self.local_certs else None

    def check(self) -> None:
        """Parse every string once, so a mistake shows up as a ConfigError now."""
        if "psk" in (self.local_auth, self.remote_auth) and not self.psk:
            raise ConfigError(f"connection {self.name}: auth psk needs a secret")
        if self.local_auth == "pubkey":
            if self.private_key is None:
                raise ConfigError(f"connection {self.name}: auth pubkey needs a private key"
                                  " (secrets { private { file = ... } })")
            if not self.local_certs:
                raise ConfigError(f"connection {self.name}: auth pubkey needs a certificate"
                                  " (local { certs = ... })")
        if self.remote_auth == "pubkey" and not (self.remote_cacerts or self.remote_certs):
            raise ConfigError(f"connection {self.name}: remote auth pubkey needs a CA"
                              " certificate to trust (remote { cacerts = ... })")
        for vip in self.vips:
            try:
                ipaddress.ip_address(vip)
            except ValueError:
                raise ConfigError(f"connection {self.name}: vips takes addresses such as"
                                  " 0.0.0.0", token=vip) from None
        _ = self.ike_proposals, self.remote_id_matcher
        for child in self.children:
            _ = child.proposals
            child.selectors("local", "0.0.0.0")
            child.selectors("remote", "0.0.0.0")

    def matches_addresses(self, local: str, remote: str) -> bool:
        """Whether a peer at ``remote`` talking to ``local`` may use this connection."""
        return _address_in(local, self.local_addrs) and _address_in(remote, self.remote_addrs)

    def endpoints(self, default_local: str | None = None) -> tuple[str | None, str | None]:
        """The first single address of ``local_addrs`` and of ``remote_addrs``: where an
        initiator (or a trap's template) sends from and to. Ranges, subnets, ``%any`` and
        names give none; the local side then falls back to ``default_local``."""
        local = next((a for a in self.local_addrs if _concrete(a)), default_local)
        return local, next((a for a in self.remote_addrs if _concrete(a)), None)


@functools.lru_cache(maxsize=1024)
def _parse_selectors(texts: tuple[str, ...], address: str) -> tuple[TrafficSelector, ...]:
    """The selectors of a ``local_ts``/``remote_ts`` list, parsed once per list and address
    (every negotiation asks again; the selectors are frozen, so sharing them is safe)."""
    return tuple(TrafficSelector.parse(address if t.strip() == DYNAMIC else t) for t in texts)


@functools.lru_cache(maxsize=1024)
def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@functools.lru_cache(maxsize=1024)
def _concrete(text: str) -> bool:
    try:
        _ip_address(text)
    except ValueError:
        return False
    return True


_ANY_OF = {"%any4": "0.0.0.0/0", "%any6": "::/0"}


@functools.lru_cache(maxsize=1024)
def _address_range(text: str) -> tuple[int, int, int] | None:
    """A ``local_addrs``/``remote_addrs`` entry as (IP version, first, last), the addresses
    as numbers, version 0 for ``%any``; None for a DNS name (resolving it is the driver's
    business). Parsed once per entry: every IKE_SA_INIT request asks which connections its
    addresses fit."""
    text = text.strip()
    if text == "%any":
        return 0, 0, 0
    text = _ANY_OF.get(text, text)
    try:
        if "-" in text:
            first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            if first.version != last.version:
                return None
            return first.version, int(first), int(last)
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.broadcast_address)


def _address_in(address: str, allowed: list[str]) -> bool:
    addr = _ip_address(address)
    for text in allowed:
        bounds = _address_range(text)
        if bounds is None:
            continue
        version, first, last = bounds
        if version == 0 or (version == addr.version and first <= int(addr) <= last):
            return True
    return False
