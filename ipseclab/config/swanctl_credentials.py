"""swanctl.conf's ``secrets`` and ``pools``, and the certificates and keys beside the file.

* ``secrets`` (swanctl.conf(5) ``secrets``): ``ike``/``eap``/``xauth``/``ntlm``/``ppk``
  shared secrets with their ids (:class:`SharedSecret`; only ``ike`` ones are used), and
  ``private``/``rsa``/``ecdsa``/``pkcs8``/``pkcs12`` key files with their passphrases.
* ``pools``: address pools with their attributes, which connections name in ``pools``.
* Credentials, as ``swanctl --load-creds`` finds them in strongSwan's layout beside the file
  (``x509/``, ``x509ca/``, ``private/``, ``rsa/``, ``ecdsa/``, ``pkcs8/``): our certificate and
  the intermediates that lead to its CA, and the private key whose public key fits it, out of
  the secrets' key files and every unencrypted key in those folders.

A mixin of :class:`ipseclab.config.swanctl._Loader`.
"""

from __future__ import annotations

import binascii
import difflib
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ipseclab.config.settings_syntax import Section, Value
from ipseclab.config.swanctl_keys import KEY_KINDS, POOL_ATTRS, SHARED_KINDS, parse_secret
from ipseclab.config.swanctl_model import (
    AuthRound,
    Pool,
    PrivateKeyFile,
    Secrets,
    SharedSecret,
)
from ipseclab.errors import ConfigError
from ipseclab.ike.certs import dn_string, load_certificate, load_crl, load_private_key

if TYPE_CHECKING:
    from ipseclab.config.swanctl import _Loader

__all__ = ["CredentialLoader"]


class CredentialLoader:
    """Secrets, pools, certificates and private keys; mixed into ``_Loader``."""

    def secrets(self: _Loader, sec: Section | None) -> Secrets:
        out = Secrets()
        if sec is None:
            return out
        kinds = SHARED_KINDS + tuple(KEY_KINDS) + ("token",)
        for name, item in sec.items.items():
            path = f"secrets.{name}"
            kind = next((k for k in kinds if name.startswith(k)), None)
            if isinstance(item, Value) or kind is None:
                hint = difflib.get_close_matches(name, kinds, n=1, cutoff=0.4)
                raise ConfigError(f"unknown {path}: secret sections start with one of "
                                  + ", ".join(kinds) + (f"; did you mean '{hint[0]}'?" if hint
                                                        else ""),
                                  file=item.file, line=item.line, token=name)
            values = {k: i for k, i in item.items.items() if isinstance(i, Value)}
            if kind == "token":
                self.check_keys(item, path, set(), {"handle", "slot", "module", "pin"})
            elif kind in SHARED_KINDS:
                for key, value in item.items.items():
                    if isinstance(value, Section) or not (key == "secret"
                                                          or key.startswith("id")):
                        raise self.unknown(value, f"{path}.{key}", key, {"secret", "id"}, "key")
                if "secret" not in values:
                    raise self.err(item, path, "needs a secret")
                ids = [val.text for key, val in values.items() if key.startswith("id")]
                out.shared.append(SharedSecret(kind, name, self.secret(values["secret"], path),
                                               ids))
                if kind != "ike":
                    self.warnings.append(f"{item.file}:{item.line}: {path}: {kind} secrets are"
                                         " not used by ipseclab")
            else:
                self.check_keys(item, path, {"file", "secret"}, set())
                files = self.files(values["file"], f"{path}.file", KEY_KINDS[kind]) \
                    if "file" in values else [None]
                passphrase = self.secret(values["secret"], path) if "secret" in values else None
                out.private_keys.append(PrivateKeyFile(kind, name, files[0], passphrase))
        return out

    def secret(self: _Loader, v: Value, path: str) -> bytes:
        try:
            return parse_secret(v.text)
        except (ValueError, binascii.Error):
            raise ConfigError(f"{path}.secret: bad 0x (hex) or 0s (base64) encoding",
                              file=v.file, line=v.line) from None  # no token: it is secret

    def pools(self: _Loader, sec: Section | None) -> dict[str, Pool]:
        out: dict[str, Pool] = {}
        if sec is None:
            return out
        for name, item in sec.items.items():
            path = f"pools.{name}"
            if isinstance(item, Value):
                raise self.err(item, path, "pools holds only sections")
            attrs: dict[str, list[str]] = {}
            for key, value in item.items.items():
                if isinstance(value, Section) or (key != "addrs" and key not in POOL_ATTRS
                                                  and not key.isdigit()):
                    raise self.unknown(value, f"{path}.{key}", key, POOL_ATTRS | {"addrs"},
                                       "key")
                if key != "addrs":
                    attrs[key] = self.as_list(value)
            addrs = item.items.get("addrs")
            if not isinstance(addrs, Value):
                raise self.err(item, path, "needs addrs")
            if addrs.text not in ("dhcp", "radius"):
                for part in self.as_list(addrs):
                    try:
                        if "-" in part:
                            for a in part.split("-", 1):
                                ipaddress.ip_address(a.strip())
                        else:
                            ipaddress.ip_network(part, strict=False)
                    except ValueError:
                        raise self.err(addrs, f"{path}.addrs", "not an address, subnet or"
                                       " range") from None
            out[name] = Pool(name, addrs.text, attrs)
        return out

    # credentials (swanctl --load-creds: every file in x509/, x509ca/, private/, ...)

    def certificate(self: _Loader, path: Path) -> x509.Certificate:
        cached = self._certs.get(path)
        if cached is None:
            cached = self._certs[path] = load_certificate(path)
        return cached

    def crls(self: _Loader) -> list[x509.CertificateRevocationList]:
        """Every CRL in ``x509crl/``, as ``swanctl --load-creds`` loads them (RFC 5280 §5)."""
        if self._crls is None:
            found = []
            for path in self.folder_files("x509crl"):
                try:
                    found.append(load_crl(path))
                except ConfigError as exc:
                    raise ConfigError(f"{path}: {exc.message}", file=str(path)) from None
            self._crls = found
        return self._crls

    def folder_files(self: _Loader, folder: str) -> list[Path]:
        directory = self.base / folder
        return sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() \
            else []

    def private_keys(self: _Loader, secrets: Secrets) -> list[object]:
        """Every key we can read: the secrets' files (with their passphrases), then the
        unencrypted ones in private/, rsa/, ecdsa/, pkcs8/ as swanctl loads them."""
        if self._keys is not None:
            return self._keys
        keys: list[object] = []
        named = set()
        for entry in secrets.private_keys:
            if entry.file is None or entry.kind == "pkcs12":
                continue
            named.add(entry.file)
            keys.append(load_private_key(entry.file, entry.passphrase))
        for folder in ("private", "rsa", "ecdsa", "pkcs8"):
            for path in self.folder_files(folder):
                if path.resolve() in named:
                    continue
                try:
                    keys.append(load_private_key(path))
                except ConfigError:
                    continue  # encrypted without a secrets entry: swanctl would ask
        self._keys = keys
        return keys

    def local_credentials(self: _Loader, kw: dict[str, object], local: AuthRound,
                          secrets: Secrets, where: str) -> None:
        """Our certificate, intermediates that lead to its CA, and the key that fits it."""
        if not local.certs:
            self.warnings.append(f"{where}.{local.section}: auth pubkey without certs")
            return
        chain = [self.certificate(p) for p in local.certs]
        cas = [self.certificate(p) for p in self.folder_files("x509ca")
               + self.folder_files("x509")]
        current = chain[0]
        for _ in range(8):
            if current.issuer == current.subject:
                break
            issuer = next((c for c in cas if c.subject == current.issuer
                           and c.issuer != c.subject and c not in chain), None)
            if issuer is None:
                break
            chain.append(issuer)
            current = issuer
        kw["local_certs"] = chain
        kw["rsa_pss"] = "pss" in local.auth
        wanted = _spki(chain[0].public_key())
        key = next((k for k in self.private_keys(secrets)
                    if _spki(k.public_key()) == wanted), None)  # type: ignore[attr-defined]
        if key is None:
            self.warnings.append(f"{where}.{local.section}: no private key for certificate"
                                 f" '{dn_string(chain[0].subject)}' in secrets or private/")
        kw["private_key"] = key


def _spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER,  # type: ignore[attr-defined]
                            PublicFormat.SubjectPublicKeyInfo)
