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
1h for children, life_time = rekey_time + 10 %, ...). Certificates and keys are found in
strongSwan's layout beside the file (``x509/``, ``x509ca/``, ``private/``, ``rsa/``,
``ecdsa/``, ``pubkey/``). Keys that ipseclab does not implement are accepted and listed in
:attr:`LoadedSwanctl.warnings`; unknown keys are errors that suggest the nearest known key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import glob
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ipseclab.crypto.proposals import parse_proposals
from ipseclab.errors import ConfigError
from ipseclab.ike.certs import dn_string, load_certificate, load_private_key
from ipseclab.ike.config import AddressPool, ChildConfig, IkeConfig
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
    "load_swanctl",
    "parse_settings",
    "parse_time",
]

MAX_INCLUDE_DEPTH = 10


# -- the settings grammar (strongswan.conf(5)) -------------------------------------------------


@dataclass
class Value:
    """One ``key = value`` with where it was written."""

    text: str
    file: str
    line: int


@dataclass
class Section:
    """A ``name [: refs] { ... }`` section; ``items`` keeps the order of first appearance."""

    name: str
    file: str
    line: int
    refs: list[str] = field(default_factory=list)
    items: dict[str, Value | Section] = field(default_factory=dict)

    def sections(self) -> list[Section]:
        return [v for v in self.items.values() if isinstance(v, Section)]


_NAME_STOP = set(".,:{}=\"# \t\r\n")


class _Parser:
    """Reads one file into a Section; ``include`` recurses with the same target section."""

    def __init__(self, path: Path, depth: int, seen: tuple[Path, ...]) -> None:
        self.path = path
        self.file = str(path)
        self.depth = depth
        self.seen = seen
        try:
            self.text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=self.file) from None
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", file=self.file) from None
        self.pos = 0
        self.line = 1

    def error(self, message: str, token: str | None = None, line: int | None = None
              ) -> ConfigError:
        return ConfigError(message, file=self.file, line=line or self.line, token=token)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self) -> str:
        char = self.text[self.pos]
        self.pos += 1
        if char == "\n":
            self.line += 1
        return char

    def skip_blank(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self.peek()
            if char == "#":
                while self.pos < len(self.text) and self.peek() != "\n":
                    self.pos += 1
            elif char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            else:
                return

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.peek() not in _NAME_STOP:
            self.pos += 1
        return self.text[start:self.pos]

    def parse_into(self, section: Section, closing: bool) -> None:
        """Settings until ``}`` (when ``closing``) or the end of the file."""
        while True:
            self.skip_blank(newlines=True)
            char = self.peek()
            if not char:
                if closing:
                    raise self.error(f"section '{section.name}' opened on line {section.line}"
                                     " is never closed with '}'", token=section.name,
                                     line=section.line)
                return
            if char == "}":
                if not closing:
                    raise self.error("'}' without a section to close", token="}")
                self.advance()
                return
            line = self.line
            name = self.name()
            if not name:
                raise self.error("expected a key or section name", token=char)
            self.skip_blank(newlines=False)
            if name == "include" and self.peek() not in ("=", "{", ":"):
                self.include(self.value(), section, line)
                continue
            char = self.peek()
            if char == "=":
                self.advance()
                value = Value(self.value(), self.file, line)
                if value.text:
                    existing = section.items.get(name)
                    if isinstance(existing, Section):
                        raise self.error(f"'{name}' is a section here, not a key", name, line)
                    section.items.pop(name, None)  # a later value replaces and moves last
                    section.items[name] = value
                else:
                    section.items.pop(name, None)  # "key =" clears it
                continue
            refs: list[str] = []
            if char == ":":
                self.advance()
                refs = self.references()
                char = self.peek()
            if char != "{":
                raise self.error(f"expected '=' or '{{' after '{name}'", token=name, line=line)
            self.advance()
            child = section.items.get(name)
            if isinstance(child, Value):
                raise self.error(f"'{name}' is a key here, not a section", name, line)
            if child is None:
                child = Section(name, self.file, line)
                section.items[name] = child
            child.refs += [r for r in refs if r not in child.refs]
            self.parse_into(child, closing=True)

    def references(self) -> list[str]:
        refs = []
        while True:
            self.skip_blank(newlines=False)
            start = self.pos
            while self.pos < len(self.text) and self.peek() not in ",{}=\"# \t\r\n":
                self.pos += 1
            ref = self.text[start:self.pos]
            if not ref:
                raise self.error("expected a section name after ':'", token=self.peek())
            refs.append(ref)
            self.skip_blank(newlines=False)
            if self.peek() != ",":
                return refs
            self.advance()

    def value(self) -> str:
        """The rest of the value: words joined by one space, quoted strings kept whole."""
        words: list[str] = []
        current: list[str] = []
        while self.pos < len(self.text):
            char = self.peek()
            if char in "\n#}":
                break
            if char in " \t\r":
                self.advance()
                if current:
                    words.append("".join(current))
                    current = []
                continue
            if char == '"':
                current.append(self.quoted())
                continue
            current.append(self.advance())
        if current:
            words.append("".join(current))
        return " ".join(words)

    def quoted(self) -> str:
        start_line = self.line
        self.advance()
        out = []
        escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
        while self.pos < len(self.text):
            char = self.advance()
            if char == '"':
                return "".join(out)
            if char == "\\" and self.pos < len(self.text):
                nxt = self.advance()
                out.append(escapes.get(nxt, "\\" + nxt))
            else:
                out.append(char)
        raise self.error("string is never closed with '\"'", token='"', line=start_line)

    def include(self, pattern: str, section: Section, line: int) -> None:
        if not pattern:
            raise self.error("include needs a file name", token="include", line=line)
        if self.depth >= MAX_INCLUDE_DEPTH:
            raise self.error(f"includes nested deeper than {MAX_INCLUDE_DEPTH}", pattern, line)
        full = Path(pattern).expanduser()
        if not full.is_absolute():
            full = self.path.parent / full
        if glob.has_magic(str(full)):
            paths = [Path(p) for p in sorted(glob.glob(str(full)))]
        else:
            if not full.is_file():
                raise self.error("included file does not exist", token=pattern, line=line)
            paths = [full]
        for path in paths:
            resolved = path.resolve()
            if resolved in self.seen:
                raise self.error("file includes itself", token=pattern, line=line)
            _Parser(path, self.depth + 1, (*self.seen, resolved)).parse_into(section, False)


def parse_settings(path: str | Path) -> Section:
    """The whole tree of a strongswan.conf-syntax file, includes done, references resolved."""
    path = Path(path)
    root = Section("", str(path), 0)
    _Parser(path, 0, (path.resolve(),)).parse_into(root, closing=False)
    _resolve_references(root, root, ())
    return root


def _find(root: Section, dotted: str) -> Section | None:
    node: Section | Value | None = root
    for part in dotted.split("."):
        if not isinstance(node, Section):
            return None
        node = node.items.get(part)
    return node if isinstance(node, Section) else None


def _resolve_references(root: Section, section: Section, active: tuple[int, ...]) -> None:
    """Copy in what referenced sections hold and this one does not (strongswan.conf(5))."""
    if id(section) in active:
        raise ConfigError("sections reference each other in a loop", file=section.file,
                          line=section.line, token=section.name)
    active = (*active, id(section))
    for ref in section.refs:
        source = _find(root, ref)
        if source is None:
            raise ConfigError("referenced section does not exist", file=section.file,
                              line=section.line, token=ref)
        _resolve_references(root, source, active)
        _merge_missing(section, source)
    section.refs = []
    for child in section.sections():
        _resolve_references(root, child, active)


def _merge_missing(target: Section, source: Section) -> None:
    for key, item in source.items.items():
        mine = target.items.get(key)
        if mine is None:
            target.items[key] = _copy(item)
        elif isinstance(mine, Section) and isinstance(item, Section):
            _merge_missing(mine, item)


def _copy(item: Value | Section) -> Value | Section:
    if isinstance(item, Value):
        return dataclasses.replace(item)
    copy = Section(item.name, item.file, item.line, list(item.refs))
    copy.items = {k: _copy(v) for k, v in item.items.items()}
    return copy


# -- what load_swanctl returns ----------------------------------------------------------------


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
        return [p for p in self.auth.split("-")[1:] if p in _HASHES]


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
        or a secret without ids 1, no match 0); a secret must fit both, the highest sum wins,
        and the first one written wins a tie.
        """
        best, best_score = None, 0
        for entry in self.shared:
            if entry.kind != kind:
                continue
            mine = max((_id_score(i, local_id) for i in entry.ids), default=1)
            theirs = max((_id_score(i, remote_id) for i in entry.ids), default=1)
            if mine and theirs and mine + theirs > best_score:
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


# -- the keys swanctl.conf(5) defines ---------------------------------------------------------

_HASHES = {"sha1", "sha256", "sha384", "sha512", "identity", "sha3_256", "sha3_384", "sha3_512"}

# mapped: ipseclab reads them; ignored: accepted, with a warning when set
_CONN_MAPPED = {"version", "local_addrs", "remote_addrs", "local_port", "remote_port",
                "proposals", "dpd_delay", "dpd_timeout", "rekey_time", "reauth_time",
                "over_time", "rand_time", "encap", "mobike", "fragmentation", "send_certreq",
                "send_cert", "pools", "keyingtries", "unique", "vips"}
_CONN_IGNORED = {"aggressive", "pull", "dscp", "childless", "ppk_id", "ppk_required",
                 "if_id_in", "if_id_out", "mediation", "mediated_by", "mediation_peer"}
_LOCAL_KEYS = {"round", "certs", "pubkeys", "auth", "id", "eap_id", "aaa_id", "xauth_id"}
_REMOTE_KEYS = {"round", "id", "eap_id", "groups", "cert_policy", "certs", "cacerts", "ca_id",
                "pubkeys", "revocation", "auth"}
_CERT_SECTION_KEYS = {"file", "handle", "slot", "module"}
_CHILD_MAPPED = {"local_ts", "remote_ts", "mode", "esp_proposals", "ah_proposals",
                 "start_action", "dpd_action", "close_action", "rekey_time", "life_time",
                 "rand_time", "replay_window", "inactivity", "updown", "hostaccess", "policies"}
_CHILD_IGNORED = {"sha256_96", "rekey_bytes", "life_bytes", "rand_bytes", "rekey_packets",
                  "life_packets", "rand_packets", "policies_fwd_out", "ipcomp", "reqid",
                  "priority", "interface", "mark_in", "mark_in_sa", "mark_out", "set_mark_in",
                  "set_mark_out", "if_id_in", "if_id_out", "label", "label_mode", "tfc_padding",
                  "hw_offload", "copy_df", "copy_ecn", "copy_dscp"}
_SHARED_KINDS = ("eap", "xauth", "ntlm", "ike", "ppk")
_KEY_KINDS = {"private": "private", "rsa": "rsa", "ecdsa": "ecdsa", "pkcs8": "pkcs8",
              "pkcs12": "pkcs12"}  # kind -> folder beside swanctl.conf
_POOL_ATTRS = {"dns", "nbns", "dhcp", "netmask", "server", "subnet", "split_include",
               "split_exclude"}
_TOP = {"connections", "secrets", "pools", "authorities"}
_AUTH_METHODS = {"psk", "pubkey", "rsa", "ecdsa", "ed25519", "ed448", "bliss", "eap", "xauth",
                 "null"}
_BOOL = {"yes": True, "true": True, "enabled": True, "1": True,
         "no": False, "false": False, "disabled": False, "0": False}
_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_time(text: str) -> float:
    """``90``, ``30s``, ``10m``, ``4h``, ``1d`` in seconds (swanctl.conf(5) TIME FORMATS)."""
    match = _TIME_RE.match(text)
    if not match:
        raise ValueError(f"not a time like 30s, 10m, 4h or 1d: {text!r}")
    return float(match.group(1)) * _TIME_UNITS[match.group(2) or "s"]


def parse_secret(text: str) -> bytes:
    """A secret as swanctl.conf writes it: ``0x`` hex, ``0s`` base64, else the text (UTF-8)."""
    if text[:2].lower() == "0x":
        return bytes.fromhex(text[2:])
    if text[:2] == "0s":
        return base64.b64decode(text[2:], validate=True)
    return text.encode("utf-8")


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


# -- mapping the tree onto the configuration objects ------------------------------------------


class _Loader:
    def __init__(self, base_dir: Path) -> None:
        self.base = base_dir
        self.warnings: list[str] = []
        self._certs: dict[Path, x509.Certificate] = {}
        self._keys: list[object] | None = None

    # values

    def err(self, value: Value | Section, key: str, message: str) -> ConfigError:
        return ConfigError(f"{key}: {message}", file=value.file, line=value.line,
                           token=value.text if isinstance(value, Value) else value.name)

    def time(self, v: Value, key: str) -> float:
        try:
            return parse_time(v.text)
        except ValueError as exc:
            raise self.err(v, key, str(exc)) from None

    def as_int(self, v: Value, key: str, low: int = 0, high: int = 2**32 - 1) -> int:
        try:
            number = int(v.text, 16) if v.text[:2].lower() == "0x" else int(v.text)
        except ValueError:
            raise self.err(v, key, "not a number") from None
        if not low <= number <= high:
            raise self.err(v, key, f"must be between {low} and {high}")
        return number

    def as_bool(self, v: Value, key: str) -> bool:
        try:
            return _BOOL[v.text.lower()]
        except KeyError:
            raise self.err(v, key, "must be yes or no") from None

    def choice(self, v: Value, key: str, choices: tuple[str, ...]) -> str:
        if v.text.lower() not in choices:
            raise self.err(v, key, "must be one of " + ", ".join(choices))
        return v.text.lower()

    def as_list(self, v: Value) -> list[str]:
        return [p.strip() for p in v.text.split(",") if p.strip()]

    def addresses(self, v: Value, key: str) -> list[str]:
        """``local_addrs``/``remote_addrs``: addresses, subnets, ranges, ``%any``/``%any4``/
        ``%any6``. A typo that looks like an address is an error; a host name is kept but
        warned about, since ipseclab resolves no names (nothing in the lab has DNS)."""
        entries = self.as_list(v)
        for text in entries:
            if text in ("%any", "%any4", "%any6"):
                continue
            problem = _address_problem(text)
            if problem == "name":
                self.warnings.append(f"{v.file}:{v.line}: {key}: '{text}' is taken as a host"
                                     " name, and ipseclab resolves none: it matches no peer")
            elif problem:
                raise self.err(v, key, f"'{text}' {problem}")
        return entries

    def files(self, v: Value, key: str, folder: str) -> list[Path]:
        out = []
        for name in self.as_list(v):
            path = Path(name).expanduser()
            path = path if path.is_absolute() else self.base / folder / path
            if not path.is_file():
                raise self.err(v, key, f"no such file {path}")
            out.append(path)
        return out

    # credentials (swanctl --load-creds: every file in x509/, x509ca/, private/, ...)

    def certificate(self, path: Path) -> x509.Certificate:
        cached = self._certs.get(path)
        if cached is None:
            cached = self._certs[path] = load_certificate(path)
        return cached

    def folder_files(self, folder: str) -> list[Path]:
        directory = self.base / folder
        return sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() \
            else []

    def private_keys(self, secrets: Secrets) -> list[object]:
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

    def local_credentials(self, kw: dict[str, object], local: AuthRound, secrets: Secrets,
                          where: str) -> None:
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

    # structure

    def check_keys(self, section: Section, path: str, keys: set[str], ignored: set[str],
                   subsection_ok: object = None) -> None:
        """Unknown keys are errors naming the nearest known one; ignored ones warn."""
        for name, item in section.items.items():
            if isinstance(item, Section):
                if subsection_ok is not None and subsection_ok(name):  # type: ignore[operator]
                    continue
                raise self.unknown(item, f"{path}.{name}", name, keys | ignored, "section")
            if name in ignored:
                self.warnings.append(f"{item.file}:{item.line}: {path}.{name} is not"
                                     " implemented by ipseclab and is ignored")
            elif name not in keys:
                raise self.unknown(item, f"{path}.{name}", name, keys | ignored, "key")

    def not_honoured(self, v: dict[str, Value], path: str, key: str, differs: bool,
                     why: str) -> None:
        """A warning for a setting ipseclab reads but does not act on, when it asks for
        something other than what ipseclab does anyway."""
        if key in v and differs:
            self.warnings.append(f"{v[key].file}:{v[key].line}: {path}.{key} ="
                                 f" {v[key].text} is not honoured by ipseclab: {why}")

    def unknown(self, item: Value | Section, where: str, name: str, known: set[str],
                what: str) -> ConfigError:
        near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        return ConfigError(f"unknown {what} {where}{hint}", file=item.file, line=item.line,
                           token=name)

    def load(self, root: Section) -> LoadedSwanctl:
        for name, item in root.items.items():
            if name not in _TOP or isinstance(item, Value):
                raise self.unknown(item, name, name, _TOP, "section" if isinstance(
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

    def connection(self, sec: Section, secrets: Secrets, pools: dict[str, Pool]
                   ) -> tuple[IkeConfig, ConnectionExtras]:
        path = f"connections.{sec.name}"

        def is_sub(name: str) -> bool:
            return name.startswith(("local", "remote")) or name == "children"

        self.check_keys(sec, path, _CONN_MAPPED, _CONN_IGNORED, is_sub)
        v: dict[str, Value] = {k: i for k, i in sec.items.items() if isinstance(i, Value)}
        kw: dict[str, object] = {"name": sec.name}
        ext = ConnectionExtras()
        if "version" in v:
            ext.version = self.as_int(v["version"], f"{path}.version", 0, 2)
            if ext.version == 1:
                raise self.err(v["version"], f"{path}.version", "IKEv1 is not supported")
        for key in ("local_addrs", "remote_addrs"):
            if key in v:
                kw[key] = self.addresses(v[key], f"{path}.{key}")
        for key in ("local_port", "remote_port"):
            if key in v:
                kw[key] = self.as_int(v[key], f"{path}.{key}", 1, 65535)
        if "proposals" in v:
            kw["proposals"] = self.proposals(v["proposals"], f"{path}.proposals", "ike")
        for key in ("dpd_delay", "dpd_timeout", "reauth_time", "over_time", "rand_time"):
            if key in v:
                kw[key] = self.time(v[key], f"{path}.{key}")
        rekey = self.time(v["rekey_time"], f"{path}.rekey_time") if "rekey_time" in v else 14400.0
        kw["rekey_time"] = rekey
        ext.dpd_timeout = float(kw.get("dpd_timeout", 0.0))  # type: ignore[arg-type]
        ext.reauth_time = float(kw.get("reauth_time", 0.0))  # type: ignore[arg-type]
        ext.over_time = float(kw.get("over_time",  # type: ignore[arg-type]
                                     max(rekey, ext.reauth_time) / 10))
        ext.rand_time = float(kw.get("rand_time", ext.over_time))  # type: ignore[arg-type]
        for key in ("encap", "mobike", "send_certreq"):
            if key in v:
                setattr(ext, key, self.as_bool(v[key], f"{path}.{key}"))
        if "fragmentation" in v:
            ext.fragmentation = self.choice(v["fragmentation"], f"{path}.fragmentation",
                                            ("yes", "accept", "force", "no"))
        if "send_cert" in v:
            ext.send_cert = self.choice(v["send_cert"], f"{path}.send_cert",
                                        ("always", "never", "ifasked"))
        if "unique" in v:
            ext.unique = self.choice(v["unique"], f"{path}.unique",
                                     ("no", "never", "keep", "replace"))
        if "keyingtries" in v:
            ext.keyingtries = self.as_int(v["keyingtries"], f"{path}.keyingtries")
        kw["encap"] = ext.encap
        kw["unique"] = "no" if ext.unique == "keep" else ext.unique
        self.not_honoured(v, path, "unique", ext.unique == "keep",
                          "a new IKE SA is not refused; unique = no is used instead")
        if "vips" in v:
            kw["vips"] = self.as_list(v["vips"])
            for vip in kw["vips"]:  # type: ignore[attr-defined]
                try:
                    ipaddress.ip_address(vip)
                except ValueError:
                    raise self.err(v["vips"], f"{path}.vips", "takes addresses such as 0.0.0.0"
                                   " or ::") from None
        if "pools" in v:
            ext.pools = self.as_list(v["pools"])
            for name in ext.pools:
                if name not in pools and name not in ("dhcp", "radius"):
                    raise self.err(v["pools"], f"{path}.pools", f"no pool named '{name}'")
        for name, item in sec.items.items():
            if isinstance(item, Section) and name.startswith(("local", "remote")):
                auth_round = self.auth_round(item, path)
                (ext.local_rounds if auth_round.side == "local"
                 else ext.remote_rounds).append(auth_round)
        for rounds in (ext.local_rounds, ext.remote_rounds):
            rounds.sort(key=lambda r: r.round)  # stable: written order breaks ties
        children: list[ChildConfig] = []
        child_sec = sec.items.get("children")
        if isinstance(child_sec, Section):
            for name, item in child_sec.items.items():
                if isinstance(item, Value):
                    raise self.err(item, f"{path}.children.{name}",
                                   "children holds only sections")
                child, ext.children[name] = self.child(item, f"{path}.children.{name}")
                children.append(child)
        kw["children"] = children
        local = ext.local_rounds[0] if ext.local_rounds else AuthRound("local", "local")
        remote = ext.remote_rounds[0] if ext.remote_rounds else AuthRound("remote", "remote")
        for later in ext.local_rounds[1:] + ext.remote_rounds[1:]:
            self.warnings.append(f"{sec.file}:{sec.line}: {path}.{later.section}: a second"
                                 " authentication round (RFC 4739) is not implemented")
        for auth_round in (local, remote):
            if auth_round.method in ("eap", "xauth"):
                self.warnings.append(f"{sec.file}:{sec.line}: {path}.{auth_round.section}: auth"
                                     f" {auth_round.auth} is not implemented by ipseclab")
        kw["local_id"] = local.id
        kw["remote_id"] = remote.id or "%any"
        kw["local_auth"] = local.method
        kw["remote_auth"] = remote.method
        kw["send_cert"], kw["send_certreq"] = ext.send_cert, ext.send_certreq
        kw["fragmentation"] = ext.fragmentation
        kw["pools"] = [pools[name].address_pool() for name in ext.pools
                       if name in pools and pools[name].addrs not in ("dhcp", "radius")]
        if local.method == "pubkey":
            self.local_credentials(kw, local, secrets, f"{sec.file}:{sec.line}: {path}")
        if remote.method == "pubkey":
            kw["remote_certs"] = [self.certificate(p) for p in remote.certs]
            kw["remote_cacerts"] = [self.certificate(p) for p in (
                remote.cacerts or self.folder_files("x509ca"))]
            if not kw["remote_cacerts"] and not kw["remote_certs"]:
                self.warnings.append(f"{sec.file}:{sec.line}: {path}.{remote.section}: auth"
                                     " pubkey, but no CA certificate in x509ca/ or cacerts")
        if "psk" in (local.method, remote.method):
            me = local.id or _first_address(kw.get("local_addrs"))  # type: ignore[arg-type]
            peer = remote.id or _first_address(kw.get("remote_addrs"))  # type: ignore[arg-type]
            psk = secrets.shared_key(me, peer)
            if psk is None:
                self.warnings.append(f"{sec.file}:{sec.line}: {path}: no ike secret for"
                                     f" '{me}' and '{peer}' (auth psk)")
            kw["psk"] = psk or b""
        return _construct(IkeConfig, kw, sec), ext

    def auth_round(self, sec: Section, conn_path: str) -> AuthRound:
        side = "local" if sec.name.startswith("local") else "remote"
        path = f"{conn_path}.{sec.name}"
        keys = _LOCAL_KEYS if side == "local" else _REMOTE_KEYS

        def is_cert(name: str) -> bool:
            return name.startswith("cert") or (side == "remote" and name.startswith("cacert"))

        self.check_keys(sec, path, keys, set(), is_cert)
        v = {k: i for k, i in sec.items.items() if isinstance(i, Value)}
        result = AuthRound(side, sec.name)
        if "round" in v:
            result.round = self.as_int(v["round"], f"{path}.round")
        if "auth" in v:
            result.auth = self.auth(v["auth"], f"{path}.auth")
        for key in ("id", "eap_id", "ca_id"):
            if key in v:
                setattr(result, key, v[key].text)
        for key in ("id", "ca_id"):
            if key in v:
                try:
                    IdentityMatcher.parse(v[key].text)
                except ConfigError as exc:
                    raise self.err(v[key], f"{path}.{key}", exc.message) from None
        if "certs" in v:
            result.certs = self.files(v["certs"], f"{path}.certs", "x509")
        if "cacerts" in v:
            result.cacerts = self.files(v["cacerts"], f"{path}.cacerts", "x509ca")
        if "pubkeys" in v:
            result.pubkeys = self.files(v["pubkeys"], f"{path}.pubkeys", "pubkey")
        if "revocation" in v:
            result.revocation = self.choice(v["revocation"], f"{path}.revocation",
                                            ("strict", "ifuri", "relaxed"))
            if result.revocation != "relaxed":
                self.warnings.append(f"{v['revocation'].file}:{v['revocation'].line}: {path}."
                                     "revocation: CRL/OCSP checking is not implemented")
        for key in ("groups", "cert_policy"):
            if key in v:
                setattr(result, key, self.as_list(v[key]))
                self.warnings.append(f"{v[key].file}:{v[key].line}: {path}.{key} is not"
                                     " implemented by ipseclab and is ignored")
        for name, item in sec.items.items():
            if isinstance(item, Section):
                cert_path = f"{path}.{name}"
                self.check_keys(item, cert_path, _CERT_SECTION_KEYS, set())
                if "file" not in item.items:
                    self.warnings.append(f"{item.file}:{item.line}: {cert_path}: certificates"
                                         " on tokens (handle/slot/module) are not implemented")
                    continue
                target = result.cacerts if name.startswith("cacert") else result.certs
                folder = "x509ca" if name.startswith("cacert") else "x509"
                target += self.files(item.items["file"], f"{cert_path}.file",  # type: ignore
                                     folder)
        return result

    def auth(self, v: Value, key: str) -> str:
        text = v.text.strip()
        for part in text.split(","):
            scheme = part.strip().removeprefix("ike:")
            words = scheme.split("-")
            base = words[0].split("/")[0].lower()
            if base not in _AUTH_METHODS:
                near = difflib.get_close_matches(base, sorted(_AUTH_METHODS), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise self.err(v, key, f"unknown authentication method '{base}'{hint}")
            if base in ("psk", "null") and len(words) > 1:
                raise self.err(v, key, f"auth {base} takes no suffix")
            if base in ("pubkey", "rsa", "ecdsa", "ed25519", "ed448"):
                for word in words[1:]:
                    if word not in _HASHES and not word.isdigit() and word not in (
                            "rsa", "ecdsa", "ed25519", "ed448", "pss"):
                        raise self.err(v, key, f"unknown hash or key type '{word}'")
        return text

    def proposals(self, v: Value, key: str, protocol: str) -> str:
        try:
            parse_proposals(v.text, protocol)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc.message}", file=v.file, line=v.line,
                              token=exc.token or v.text) from None
        return v.text

    def child(self, sec: Section, path: str) -> tuple[ChildConfig, ChildExtras]:
        self.check_keys(sec, path, _CHILD_MAPPED, _CHILD_IGNORED)
        v = {k: i for k, i in sec.items.items() if isinstance(i, Value)}
        kw: dict[str, object] = {"name": sec.name}
        ext = ChildExtras()
        for key in ("local_ts", "remote_ts"):
            if key in v:
                kw[key] = self.as_list(v[key])
        if "mode" in v:
            mode = self.choice(v["mode"], f"{path}.mode",
                               ("tunnel", "transport", "beet", "pass", "drop"))
            if mode not in ("tunnel", "transport"):
                raise self.err(v["mode"], f"{path}.mode", f"mode {mode} is not supported by"
                               " ipseclab (tunnel or transport)")
            kw["mode"] = mode
        if "esp_proposals" in v:
            kw["esp_proposals"] = self.proposals(v["esp_proposals"], f"{path}.esp_proposals",
                                                 "esp")
        if "ah_proposals" in v:
            ext.ah_proposals = self.proposals(v["ah_proposals"], f"{path}.ah_proposals", "ah")
            self.warnings.append(
                f"{v['ah_proposals'].file}:{v['ah_proposals'].line}: {path}.ah_proposals:"
                " ipseclab's IKE negotiates ESP child SAs only (AH works with manual SAs);"
                " this child proposes its esp_proposals")
        rekey = self.time(v["rekey_time"], f"{path}.rekey_time") if "rekey_time" in v else 3600.0
        life = (self.time(v["life_time"], f"{path}.life_time") if "life_time" in v
                else rekey + rekey / 10)
        if "life_time" in v and "rekey_time" in v and rekey and life < rekey:
            raise self.err(v["life_time"], f"{path}.life_time", "is shorter than rekey_time")
        kw["rekey_time"], kw["life_time"] = rekey, life
        ext.rand_time = (self.time(v["rand_time"], f"{path}.rand_time") if "rand_time" in v
                         else max(life - rekey, 0.0))
        if "replay_window" in v:
            kw["replay_window"] = self.as_int(v["replay_window"], f"{path}.replay_window")
        if "start_action" in v:
            action = v["start_action"].text.replace(" ", "").lower()
            if action not in ("none", "trap", "start", "trap|start", "start|trap"):
                raise self.err(v["start_action"], f"{path}.start_action",
                               "must be one of none, trap, start, trap|start")
            kw["start_action"] = action
        if "dpd_action" in v:
            kw["dpd_action"] = self.choice(v["dpd_action"], f"{path}.dpd_action",
                                           ("none", "clear", "trap", "restart"))
        if "close_action" in v:
            ext.close_action = self.choice(v["close_action"], f"{path}.close_action",
                                           ("none", "clear", "trap", "start", "restart"))
        if "inactivity" in v:
            ext.inactivity = self.time(v["inactivity"], f"{path}.inactivity")
        for key in ("hostaccess", "policies"):
            if key in v:
                setattr(ext, key, self.as_bool(v[key], f"{path}.{key}"))
        self.not_honoured(v, path, "hostaccess", ext.hostaccess,
                          "it is for updown scripts, which ipseclab does not run")
        self.not_honoured(v, path, "policies", not ext.policies,
                          "a child SA's policies are always installed")
        if "updown" in v:
            ext.updown = v["updown"].text
            self.warnings.append(f"{v['updown'].file}:{v['updown'].line}: {path}.updown: ipseclab"
                                 " runs no updown scripts")
        return _construct(ChildConfig, kw, sec), ext

    def secrets(self, sec: Section | None) -> Secrets:
        out = Secrets()
        if sec is None:
            return out
        kinds = _SHARED_KINDS + tuple(_KEY_KINDS) + ("token",)
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
            elif kind in _SHARED_KINDS:
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
                files = self.files(values["file"], f"{path}.file", _KEY_KINDS[kind]) \
                    if "file" in values else [None]
                passphrase = self.secret(values["secret"], path) if "secret" in values else None
                out.private_keys.append(PrivateKeyFile(kind, name, files[0], passphrase))
        return out

    def secret(self, v: Value, path: str) -> bytes:
        try:
            return parse_secret(v.text)
        except (ValueError, binascii.Error):
            raise ConfigError(f"{path}.secret: bad 0x (hex) or 0s (base64) encoding",
                              file=v.file, line=v.line) from None  # no token: it is secret

    def pools(self, sec: Section | None) -> dict[str, Pool]:
        out: dict[str, Pool] = {}
        if sec is None:
            return out
        for name, item in sec.items.items():
            path = f"pools.{name}"
            if isinstance(item, Value):
                raise self.err(item, path, "pools holds only sections")
            attrs: dict[str, list[str]] = {}
            for key, value in item.items.items():
                if isinstance(value, Section) or (key != "addrs" and key not in _POOL_ATTRS
                                                  and not key.isdigit()):
                    raise self.unknown(value, f"{path}.{key}", key, _POOL_ATTRS | {"addrs"},
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


def _spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER,  # type: ignore[attr-defined]
                            PublicFormat.SubjectPublicKeyInfo)


def _address_problem(text: str) -> str:
    """What is wrong with one ``local_addrs``/``remote_addrs`` entry: "" (nothing), "name"
    (a host name), or why it is no address, subnet or range."""
    try:
        if "-" in text and (":" in text or text.replace("-", "").replace(".", "").isdigit()):
            first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            if first.version != last.version:
                return "is a range whose ends are of different IP versions"
            return "" if first <= last else "is a range whose first address is above its last"
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
            return ""
        ipaddress.ip_address(text)
        return ""
    except ValueError as exc:
        if ":" in text or text.replace(".", "").replace("/", "").replace("-", "").isdigit():
            return f"is no IP address, subnet or range ({exc})"
        return "name"


def _first_address(addrs: list[str] | None) -> str:
    return addrs[0] if addrs else "%any"


def _construct(cls: type, kw: dict[str, object], sec: Section) -> object:
    """``cls(**kw)`` with the keys it has fields for; its ConfigError gets file and line.

    While :class:`IkeConfig` refuses auth methods other than psk and pubkey, such a
    connection (eap, xauth) is built without that check (its auth is in the object, and the
    rounds in the extras), so it can be listed and inspected; the engine refuses it.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    args = {k: val for k, val in kw.items() if k in names}
    try:
        return cls(**args)
    except ConfigError as exc:
        if cls is IkeConfig and "auth" in exc.message and "not supported" in exc.message:
            obj = object.__new__(cls)
            for f in dataclasses.fields(cls):
                if f.name in args:
                    setattr(obj, f.name, args[f.name])
                elif f.default is not dataclasses.MISSING:
                    setattr(obj, f.name, f.default)
                else:
                    setattr(obj, f.name, f.default_factory())  # type: ignore[misc]
            return obj
        raise ConfigError(exc.message, file=sec.file, line=sec.line,
                          token=exc.token or sec.name) from None


def load_swanctl(path: str | Path, base_dir: str | Path | None = None) -> LoadedSwanctl:
    """Read a swanctl.conf (with its includes) into IkeConfig objects and their secrets.

    ``base_dir`` is where ``x509/``, ``x509ca/``, ``private/`` ... live; by default the
    folder of the file, as in /etc/swanctl. Raises :class:`ConfigError` with file and line.
    """
    path = Path(path)
    root = parse_settings(path)
    base = Path(base_dir) if base_dir is not None else path.parent
    return _Loader(base.resolve()).load(root)
