"""What :func:`ipseclab.config.swanctl.load_swanctl` returns, besides the IKE configuration.

:class:`ipseclab.ike.config.IkeConfig` and :class:`~ipseclab.ike.config.ChildConfig` are what
the engine runs; the dataclasses here hold the rest of what a swanctl.conf says (swanctl.conf(5)):
the authentication rounds of ``local``/``remote`` sections, the connection and child settings
that the engine has no field for (:class:`ConnectionExtras`, :class:`ChildExtras`), the
``secrets`` section (with strongSwan's choice of the shared secret for a pair of identities,
:meth:`Secrets.shared_key`) and the ``pools`` section. :class:`LoadedSwanctl` holds it all,
with the warnings about settings ipseclab will not honour.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from ipseclab.config.swanctl_keys import HASHES
from ipseclab.errors import ConfigError
from ipseclab.ike.config import AddressPool, IkeConfig
from ipseclab.ipsec.pad import IdentityMatcher

__all__ = [
    "AuthRound",
    "ChildExtras",
    "ConnectionExtras",
    "LoadedSwanctl",
    "Pool",
    "PrivateKeyFile",
    "Secrets",
    "SharedSecret",
]


@dataclass
class AuthRound:
    """One ``local<suffix>``/``remote<suffix>`` section: one authentication round (RFC 4739).

    ``auth`` is the method as written (``psk``, ``pubkey``, ``rsa/pss-sha256``, ``eap-tls``);
    :attr:`method` is its family (``psk``, ``pubkey``, ``eap``, ``xauth``, ``null``).
    Certificate and key files are absolute paths, checked to exist.
    """

    side: str
    section: str
    round: int = 0
    auth: str = "pubkey"
    id: str = ""
    certs: list[Path] = field(default_factory=list)
    pubkeys: list[Path] = field(default_factory=list)
    cacerts: list[Path] = field(default_factory=list)
    revocation: str = "relaxed"
    eap_id: str = ""
    groups: list[str] = field(default_factory=list)
    cert_policy: list[str] = field(default_factory=list)
    ca_id: str = ""

    @property
    def method(self) -> str:
        base = self.auth.removeprefix("ike:").split("-", 1)[0].split("/", 1)[0]
        return "pubkey" if base in ("rsa", "ecdsa", "ed25519", "ed448", "bliss") else base

    @property
    def signature_hashes(self) -> list[str]:
        """Hashes named after the method (``pubkey-sha384-sha256``), strongest first."""
        return [p for p in self.auth.split("-")[1:] if p in HASHES]


@dataclass
class ChildExtras:
    """The child settings :class:`ChildConfig` has no field for (yet). Times in seconds."""

    ah_proposals: str = ""
    rand_time: float = 0.0
    close_action: str = "none"
    inactivity: float = 0.0
    updown: str = ""
    hostaccess: bool = False
    policies: bool = True


@dataclass
class ConnectionExtras:
    """The connection settings :class:`IkeConfig` has no field for (yet). Times in seconds."""

    version: int = 0
    dpd_timeout: float = 0.0
    reauth_time: float = 0.0
    over_time: float = 0.0
    rand_time: float = 0.0
    encap: bool = False
    mobike: bool = True
    fragmentation: str = "yes"
    send_certreq: bool = True
    send_cert: str = "ifasked"
    pools: list[str] = field(default_factory=list)
    keyingtries: int = 1
    unique: str = "no"
    local_rounds: list[AuthRound] = field(default_factory=list)
    remote_rounds: list[AuthRound] = field(default_factory=list)
    children: dict[str, ChildExtras] = field(default_factory=dict)


@dataclass
class SharedSecret:
    """An ``ike``/``eap``/``xauth``/``ntlm``/``ppk`` secret and the identities it belongs to."""

    kind: str
    name: str
    secret: bytes = field(repr=False)
    ids: list[str] = field(default_factory=list)


@dataclass
class PrivateKeyFile:
    """A ``private``/``rsa``/``ecdsa``/``pkcs8``/``pkcs12`` entry: a key file and its passphrase."""

    kind: str
    name: str
    file: Path | None
    passphrase: bytes | None = field(default=None, repr=False)


@dataclass
class Secrets:
    """The ``secrets`` section: shared secrets and private key files."""

    shared: list[SharedSecret] = field(default_factory=list)
    private_keys: list[PrivateKeyFile] = field(default_factory=list)

    def shared_key(self, local_id: str, remote_id: str, kind: str = "ike") -> bytes | None:
        """The best secret for this pair of identities, as strongSwan picks it.

        Each secret's ids are scored against both identities (exact 3, wildcard 2, ``%any``
        or a secret without ids 1, no match 0). As in strongSwan's credential manager a
        secret needs to fit only one of them (``id = <the peer>`` alone is the common way to
        write one), the highest sum wins, and the first one written wins a tie.
        """
        best, best_score = None, 0
        for entry in self.shared:
            if entry.kind != kind:
                continue
            mine = max((_id_score(i, local_id) for i in entry.ids), default=1)
            theirs = max((_id_score(i, remote_id) for i in entry.ids), default=1)
            if (mine or theirs) and mine + theirs > best_score:
                best, best_score = entry.secret, mine + theirs
        return best


@dataclass
class Pool:
    """A ``pools { NAME { addrs, dns, ... } }`` entry; attribute values as written."""

    name: str
    addrs: str
    attributes: dict[str, list[str]] = field(default_factory=dict)

    def address_pool(self) -> AddressPool:
        """The engine's view of it (one object per pool, shared by its connections)."""
        if self._engine_pool is None:
            self._engine_pool = AddressPool(self.name, self.addrs,
                                            tuple(self.attributes.get("dns", ())))
        return self._engine_pool

    _engine_pool: AddressPool | None = field(default=None, repr=False, compare=False)


@dataclass
class LoadedSwanctl:
    """Everything one swanctl.conf says. ``extras`` holds per-connection settings that
    :class:`IkeConfig` has no field for; ``warnings`` the settings ipseclab will not honour."""

    connections: dict[str, IkeConfig]
    secrets: Secrets
    pools: dict[str, Pool]
    warnings: list[str]
    extras: dict[str, ConnectionExtras] = field(default_factory=dict)
    base_dir: Path = Path(".")


def _id_score(pattern: str, identity: str) -> int:
    pattern, identity = pattern.strip(), identity.strip()
    if pattern.lower() == "%any" or identity.lower() in ("%any", ""):
        return 1
    if pattern.lower() == identity.lower():
        return 3
    try:
        matcher = IdentityMatcher.parse(pattern)
        probe = IdentityMatcher.parse(identity)
    except ConfigError:
        return 0
    if probe.id_type is None or matcher.id_type != probe.id_type:
        return 0
    value = probe.value
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        addr = ipaddress.ip_address(int(value[0]))  # type: ignore[arg-type]
        return 2 if matcher.matches(probe.id_type, str(addr)) else 0
    return 2 if matcher.matches(probe.id_type, identity.lstrip("@")) else 0
