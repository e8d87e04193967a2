"""swanctl.conf, strongSwan's configuration file, read into ipseclab's IKE configuration.

A config written for strongSwan 5.9 loads here unchanged (see swanctl.conf(5) and
strongswan.conf(5), whose syntax it shares):

* ``name { ... }`` sections, ``key = value`` lines, ``#`` comments; a value ends at a newline,
  a ``#`` or a ``}``, words are joined by one space, ``"quoted strings"`` may hold any
  character (escapes ``\\n \\t \\" \\\\``) and span lines;
* ``include PATTERN`` (shell glob, relative to the including file) adds to the section it
  stands in; sections of the same name merge and a later value replaces an earlier one;
* ``name : other, connections.base { ... }`` inherits the referenced sections' settings;
* ``key =`` with no value clears the key, so its default applies.

:func:`load_swanctl` maps ``connections``, ``secrets`` and ``pools`` to :class:`IkeConfig`
and :class:`ChildConfig` objects (certificates, the private key that fits ours, trusted CAs,
``send_cert``, ``send_certreq``, ``vips`` and ``pools`` included), with what those do not hold
in :class:`ConnectionExtras`. As ``swanctl --load-creds`` does, every unencrypted key in
``private/`` (``rsa/``, ``ecdsa/``, ``pkcs8/``) is a candidate for ``certs``, and a remote
``auth = pubkey`` without ``cacerts`` trusts every CA in ``x509ca/``.
Times take ``s``/``m``/``h``/``d`` suffixes and strongSwan's defaults (rekey_time 4h for IKE,
1h for children, a child's life_time = rekey_time + 10 %, an IKE SA's over_time 10 % of the
longer of rekey_time and reauth_time, ...). Certificates and keys are found in
strongSwan's layout beside the file (``x509/``, ``x509ca/``, ``private/``, ``rsa/``,
``ecdsa/``, ``pubkey/``). Keys that ipseclab does not implement are accepted and listed in
:attr:`LoadedSwanctl.warnings`; unknown keys are errors that suggest the nearest known key.

The parts live in modules of their own; this one puts them together and is the one to import:

* :mod:`.settings_syntax`: the syntax above, read into a tree of sections and values;
* :mod:`.swanctl_model`: the dataclasses :func:`load_swanctl` returns;
* :mod:`.swanctl_keys`: the keys swanctl.conf(5) defines, value formats, and the loader's
  value reading and key checking (:class:`~.swanctl_keys.ValueReader`);
* :mod:`.swanctl_connections`: ``connections``, their auth rounds and ``children``;
* :mod:`.swanctl_credentials`: ``secrets``, ``pools``, certificates and private keys.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from ipseclab.config.settings_syntax import MAX_INCLUDE_DEPTH, Section, Value, parse_settings
from ipseclab.config.swanctl_connections import ConnectionLoader
from ipseclab.config.swanctl_credentials import CredentialLoader
from ipseclab.config.swanctl_keys import TOP, ValueReader, parse_secret, parse_time
from ipseclab.config.swanctl_model import (
    AuthRound,
    ChildExtras,
    ConnectionExtras,
    LoadedSwanctl,
    Pool,
    PrivateKeyFile,
    Secrets,
    SharedSecret,
)
from ipseclab.ike.config import IkeConfig

__all__ = [
    "MAX_INCLUDE_DEPTH",
    "AuthRound",
    "ChildExtras",
    "ConnectionExtras",
    "LoadedSwanctl",
    "Pool",
    "PrivateKeyFile",
    "Secrets",
    "Section",
    "SharedSecret",
    "Value",
    "load_swanctl",
    "parse_secret",
    "parse_settings",
    "parse_time",
]


class _Loader(ConnectionLoader, CredentialLoader, ValueReader):
    """Maps the settings tree onto the configuration objects, collecting warnings."""

    def __init__(self, base_dir: Path) -> None:
        self.base = base_dir
        self.warnings: list[str] = []
        self._certs: dict[Path, x509.Certificate] = {}
        self._keys: list[object] | None = None
        self._crls: list[x509.CertificateRevocationList] | None = None

    def load(self, root: Section) -> LoadedSwanctl:
        for name, item in root.items.items():
            if name not in TOP or isinstance(item, Value):
                raise self.unknown(item, name, name, TOP, "section" if isinstance(
                    item, Section) else "key")
        secrets = self.secrets(root.items.get("secrets"))  # type: ignore[arg-type]
        pools = self.pools(root.items.get("pools"))  # type: ignore[arg-type]
        authorities = root.items.get("authorities")
        if isinstance(authorities, Section) and authorities.items:
            self.warnings.append(f"{authorities.file}:{authorities.line}: authorities (CRL/OCSP"
                                 " locations) are not implemented by ipseclab and are ignored")
        connections: dict[str, IkeConfig] = {}
        extras: dict[str, ConnectionExtras] = {}
        section = root.items.get("connections")
        if isinstance(section, Section):
            for key, item in section.items.items():
                if isinstance(item, Value):
                    raise self.err(item, f"connections.{key}", "connections holds only sections")
                connections[key], extras[key] = self.connection(item, secrets, pools)
        return LoadedSwanctl(connections, secrets, pools, self.warnings, extras, self.base)


def load_swanctl(path: str | Path, base_dir: str | Path | None = None) -> LoadedSwanctl:
    """Read a swanctl.conf (with its includes) into IkeConfig objects and their secrets.

    ``base_dir`` is where ``x509/``, ``x509ca/``, ``private/`` ... live; by default the
    folder of the file, as in /etc/swanctl. Raises :class:`ConfigError` with file and line.
    """
    path = Path(path)
    root = parse_settings(path)
    base = Path(base_dir) if base_dir is not None else path.parent
    return _Loader(base.resolve()).load(root)
