"""Wireshark key logs: the ``esp_sa`` and ``ikev2_decryption_table`` files.

Wireshark keeps user tables ("UATs") as text files in its personal configuration directory,
one record per line, fields separated by commas. ipseclab writes the ESP SA table and the
IKEv2 decryption table in exactly that format, so a capture the lab takes opens decrypted::

    XDG_CONFIG_HOME=DIR tshark -o esp.enable_encryption_decode:TRUE -r capture.pcap

reads ``DIR/wireshark/esp_sa`` and ``DIR/wireshark/ikev2_decryption_table``
(:func:`keylog_dir_layout` gives both paths). Wireshark's GUI reads the same directory when
started with the same ``XDG_CONFIG_HOME``; or copy the two files into
``~/.config/wireshark/``.

Record formats, as tshark 4.0 reads them:

* ``esp_sa`` (8 fields, all quoted)::

    "IPv4","192.0.2.1","198.51.100.1","0x0000c0de","AES-CBC [RFC3602]","0x00..ff",\
"HMAC-SHA-256-128 [RFC4868]","0x00..ff"

  protocol ``IPv4``/``IPv6``; addresses may be ``*``; SPI ``0x%08x`` (or ``*``); keys in hex
  with ``0x`` (empty for NULL). A GCM or CTR key carries the 4-byte salt (nonce) at its end
  (RFC 4106 section 8.1, RFC 3686 section 5.1) and GCM's authentication is ``NULL``.
* ``ikev2_decryption_table`` (8 fields): ``ISPI,RSPI,SK_EI,SK_ER,"ENCRYPTION",SK_AI,SK_AR,
  "INTEGRITY"``: the SPIs as 16 hex digits and the keys as plain hex, unquoted; the algorithm
  names quoted. SK_ei/SK_er of an AEAD include the salt (RFC 5282 section 7.1).

Quoting (Wireshark's ``uat_esc``/``uat_unesc``): inside a quoted field a ``"``, a ``\\`` and
every non-printable byte are written ``\\xNN``; reading also understands ``\\n``-style and
octal escapes. Lines starting with ``#`` are comments.

The algorithm names are Wireshark's own strings, listed below. tshark 4.0 rejects a line
whose name it does not know (``Error loading table 'ESP SAs': ... invalid value``), reports
it once and still loads the other lines; :func:`tshark_40_knows` tells which entries it can
use. Which ipseclab algorithm maps to which name is the algorithm registry's business; this
module is only the file format.

The files hold secret keys (that is their point): they are created mode 0600, and the
``repr()`` of an entry leaves the keys out. Every change rewrites the whole file into a
temporary file and renames it over the old one (``os.replace``), under an advisory lock, so
a running Wireshark never reads half a file and two gateways logging into the same directory
do not lose each other's lines.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from ipseclab.errors import ConfigError

# ------------------------------------------------------------------ algorithm names

ESP_ENCR_NULL = "NULL"
ESP_ENCR_3DES_CBC = "TripleDES-CBC [RFC2451]"
ESP_ENCR_AES_CBC = "AES-CBC [RFC3602]"
ESP_ENCR_AES_CTR = "AES-CTR [RFC3686]"
ESP_ENCR_DES_CBC = "DES-CBC [RFC2405]"
ESP_ENCR_CAST5_CBC = "CAST5-CBC [RFC2144]"
ESP_ENCR_BLOWFISH_CBC = "BLOWFISH-CBC [RFC2451]"
ESP_ENCR_TWOFISH_CBC = "TWOFISH-CBC"
ESP_ENCR_AES_GCM_8 = "AES-GCM with 8 octet ICV [RFC4106]"
ESP_ENCR_AES_GCM_12 = "AES-GCM with 12 octet ICV [RFC4106]"
ESP_ENCR_AES_GCM_16 = "AES-GCM with 16 octet ICV [RFC4106]"
# Names for algorithms tshark 4.0 lacks. ChaCha20-Poly1305 uses the name later Wireshark
# releases introduced, so such lines work there; the others are ipseclab's own.
ESP_ENCR_CHACHA20_POLY1305 = "ChaCha20 with Poly1305 [RFC7634]"
ESP_ENCR_AES_CCM_8 = "AES-CCM with 8 octet ICV [RFC4309]"
ESP_ENCR_AES_CCM_12 = "AES-CCM with 12 octet ICV [RFC4309]"
ESP_ENCR_AES_CCM_16 = "AES-CCM with 16 octet ICV [RFC4309]"
ESP_ENCR_AES_NULL_GMAC = "AES-NULL-GMAC [RFC4543]"

ESP_AUTH_NULL = "NULL"
ESP_AUTH_HMAC_MD5_96 = "HMAC-MD5-96 [RFC2403]"
ESP_AUTH_HMAC_SHA1_96 = "HMAC-SHA-1-96 [RFC2404]"
ESP_AUTH_HMAC_SHA256_96 = "HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]"
ESP_AUTH_HMAC_SHA256_128 = "HMAC-SHA-256-128 [RFC4868]"
ESP_AUTH_HMAC_SHA384_192 = "HMAC-SHA-384-192 [RFC4868]"
ESP_AUTH_HMAC_SHA512_256 = "HMAC-SHA-512-256 [RFC4868]"
ESP_AUTH_HMAC_RIPEMD160_96 = "MAC-RIPEMD-160-96 [RFC2857]"
ESP_AUTH_ANY_64 = "ANY 64 bit authentication [no checking]"
ESP_AUTH_ANY_96 = "ANY 96 bit authentication [no checking]"
ESP_AUTH_ANY_128 = "ANY 128 bit authentication [no checking]"
ESP_AUTH_ANY_192 = "ANY 192 bit authentication [no checking]"
ESP_AUTH_ANY_256 = "ANY 256 bit authentication [no checking]"
# ipseclab's own (tshark 4.0 has no XCBC or CMAC for ESP).
ESP_AUTH_AES_XCBC_96 = "AES-XCBC-MAC-96 [RFC3566]"
ESP_AUTH_AES_CMAC_96 = "AES-CMAC-96 [RFC4494]"

TSHARK_40_ESP_ENCRYPTIONS = frozenset(
    {
        ESP_ENCR_NULL,
        ESP_ENCR_3DES_CBC,
        ESP_ENCR_AES_CBC,
        ESP_ENCR_AES_CTR,
        ESP_ENCR_DES_CBC,
        ESP_ENCR_CAST5_CBC,
        ESP_ENCR_BLOWFISH_CBC,
        ESP_ENCR_TWOFISH_CBC,
        ESP_ENCR_AES_GCM_8,
        ESP_ENCR_AES_GCM_12,
        ESP_ENCR_AES_GCM_16,
    }
)
TSHARK_40_ESP_AUTHENTICATIONS = frozenset(
    {
        ESP_AUTH_NULL,
        ESP_AUTH_HMAC_MD5_96,
        ESP_AUTH_HMAC_SHA1_96,
        ESP_AUTH_HMAC_SHA256_96,
        ESP_AUTH_HMAC_SHA256_128,
        ESP_AUTH_HMAC_SHA384_192,
        ESP_AUTH_HMAC_SHA512_256,
        ESP_AUTH_HMAC_RIPEMD160_96,
        ESP_AUTH_ANY_64,
        ESP_AUTH_ANY_96,
        ESP_AUTH_ANY_128,
        ESP_AUTH_ANY_192,
        ESP_AUTH_ANY_256,
    }
)

IKEV2_ENCR_3DES = "3DES [RFC2451]"
IKEV2_ENCR_NULL = "NULL [RFC2410]"
IKEV2_ENCR_AES_CBC = {bits: f"AES-CBC-{bits} [RFC3602]" for bits in (128, 192, 256)}
IKEV2_ENCR_AES_CTR = {bits: f"AES-CTR-{bits} [RFC5930]" for bits in (128, 192, 256)}
IKEV2_ENCR_AES_GCM = {
    (bits, icv): f"AES-GCM-{bits} with {icv} octet ICV [RFC5282]"
    for bits in (128, 192, 256)
    for icv in (8, 12, 16)
}
IKEV2_ENCR_AES_CCM = {
    (bits, icv): f"AES-CCM-{bits} with {icv} octet ICV [RFC5282]"
    for bits in (128, 192, 256)
    for icv in (8, 12, 16)
}
IKEV2_INTEG_NONE = "NONE [RFC4306]"
IKEV2_INTEG_HMAC_MD5_96 = "HMAC_MD5_96 [RFC2403]"
IKEV2_INTEG_HMAC_SHA1_96 = "HMAC_SHA1_96 [RFC2404]"
IKEV2_INTEG_HMAC_MD5_128 = "HMAC_MD5_128 [RFC4595]"
IKEV2_INTEG_HMAC_SHA1_160 = "HMAC_SHA1_160 [RFC4595]"
IKEV2_INTEG_HMAC_SHA2_256_96 = "HMAC_SHA2_256_96 [draft-ietf-ipsec-ciph-sha-256-00]"
IKEV2_INTEG_HMAC_SHA2_256_128 = "HMAC_SHA2_256_128 [RFC4868]"
IKEV2_INTEG_HMAC_SHA2_384_192 = "HMAC_SHA2_384_192 [RFC4868]"
IKEV2_INTEG_HMAC_SHA2_512_256 = "HMAC_SHA2_512_256 [RFC4868]"

TSHARK_40_IKEV2_ENCRYPTIONS = frozenset(
    {
        IKEV2_ENCR_3DES,
        IKEV2_ENCR_NULL,
        *IKEV2_ENCR_AES_CBC.values(),
        *IKEV2_ENCR_AES_CTR.values(),
        *IKEV2_ENCR_AES_GCM.values(),
        *IKEV2_ENCR_AES_CCM.values(),
    }
)
TSHARK_40_IKEV2_INTEGRITIES = frozenset(
    {
        IKEV2_INTEG_NONE,
        IKEV2_INTEG_HMAC_MD5_96,
        IKEV2_INTEG_HMAC_SHA1_96,
        IKEV2_INTEG_HMAC_MD5_128,
        IKEV2_INTEG_HMAC_SHA1_160,
        IKEV2_INTEG_HMAC_SHA2_256_96,
        IKEV2_INTEG_HMAC_SHA2_256_128,
        IKEV2_INTEG_HMAC_SHA2_384_192,
        IKEV2_INTEG_HMAC_SHA2_512_256,
        *(f"ANY {n}-bits of Authentication [No Checking]" for n in (64, 96, 128, 160, 192, 256)),
    }
)

ESP_SA_FILE = "esp_sa"
IKEV2_FILE = "ikev2_decryption_table"


def keylog_dir_layout(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Paths of the ESP SA table and the IKEv2 table under a key-log directory.

    They live in ``DIRECTORY/wireshark/`` so that ``XDG_CONFIG_HOME=DIRECTORY tshark ...``
    (and Wireshark) find them as its personal configuration.
    """
    base = Path(directory) / "wireshark"
    return base / ESP_SA_FILE, base / IKEV2_FILE


# ------------------------------------------------------------------ entries


@dataclass(frozen=True)
class EspSaEntry:
    """One line of ``esp_sa``: how Wireshark decrypts and checks one ESP SA (RFC 4303).

    ``spi`` None stands for Wireshark's wildcard ``*``; ``src``/``dst`` may be ``*`` too.
    """

    family: str
    src: str
    dst: str
    spi: int | None
    encryption: str
    encryption_key: bytes = field(repr=False)
    authentication: str
    authentication_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.family not in ("IPv4", "IPv6"):
            raise ConfigError(f"ESP SA protocol must be IPv4 or IPv6, not {self.family!r}")
        for addr in (self.src, self.dst):
            _check_address(self.family, addr)
        if self.spi is not None and not 0 <= self.spi <= 0xFFFFFFFF:
            raise ConfigError(f"SPI {self.spi} does not fit in 32 bits")
        _check_name(self.encryption)
        _check_name(self.authentication)
        if not isinstance(self.encryption_key, bytes | bytearray) or not isinstance(
            self.authentication_key, bytes | bytearray
        ):
            raise ConfigError("ESP SA keys must be bytes")


@dataclass(frozen=True)
class IkeSaEntry:
    """One line of ``ikev2_decryption_table``: the keys of one IKE SA (RFC 7296 section 2.14)."""

    spi_i: bytes
    spi_r: bytes
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    encryption: str
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    integrity: str

    def __post_init__(self) -> None:
        for name in ("spi_i", "spi_r"):
            spi = getattr(self, name)
            if not isinstance(spi, bytes | bytearray) or len(spi) != 8:
                raise ConfigError(f"IKE SA {name} must be 8 bytes")
        for name in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
            if not isinstance(getattr(self, name), bytes | bytearray):
                raise ConfigError(f"IKE SA key {name} must be bytes")
        _check_name(self.encryption)
        _check_name(self.integrity)


def tshark_40_knows(entry: EspSaEntry | IkeSaEntry) -> bool:
    """Whether tshark 4.0 knows both algorithm names of an entry (and so can use it)."""
    if isinstance(entry, EspSaEntry):
        return (
            entry.encryption in TSHARK_40_ESP_ENCRYPTIONS
            and entry.authentication in TSHARK_40_ESP_AUTHENTICATIONS
        )
    return (
        entry.encryption in TSHARK_40_IKEV2_ENCRYPTIONS
        and entry.integrity in TSHARK_40_IKEV2_INTEGRITIES
    )


def _check_address(family: str, addr: str) -> None:
    if not addr or not isinstance(addr, str):
        raise ConfigError("ESP SA address must not be empty (use * for any)")
    if addr == "*":
        return
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return  # a form Wireshark may understand (e.g. a prefix); not ours to judge
    if (ip.version == 4) != (family == "IPv4"):
        raise ConfigError(f"address {addr} is not an {family} address", token=addr)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError("algorithm name must be a non-empty string")


# ------------------------------------------------------------------ UAT quoting

_ESCAPES = {"a": 7, "b": 8, "e": 27, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}


def uat_quote(text: str) -> str:
    """A string as a quoted UAT field: ``"``, ``\\`` and non-printable bytes become ``\\xNN``."""
    out = []
    for b in text.encode("utf-8"):
        if b in (0x22, 0x5C) or not 0x20 <= b <= 0x7E:
            out.append(f"\\x{b:02x}")
        else:
            out.append(chr(b))
    return '"' + "".join(out) + '"'


def _unescape(body: str) -> bytes:
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        i += 1
        if c != "\\" or i >= n:
            out += c.encode("utf-8")
            continue
        c = body[i]
        i += 1
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c in "01234567":
            digits = c
            while len(digits) < 3 and i < n and body[i] in "01234567":
                digits += body[i]
                i += 1
            out.append(min(int(digits, 8), 255))
        elif c == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", body[i : i + 2]):
            out.append(int(body[i : i + 2], 16))
            i += 2
        else:
            out += c.encode("utf-8")
    return bytes(out)


def _split(line: str, file: str | None, lineno: int) -> list[tuple[str, bool]]:
    """Split one UAT record into (value, was_quoted) fields."""
    fields: list[tuple[str, bool]] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            if j >= n:
                raise ConfigError(
                    "unterminated quoted field", file=file, line=lineno, token=line[i:][:20]
                )
            try:
                value = _unescape(line[i + 1 : j]).decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(
                    "quoted field is not UTF-8", file=file, line=lineno, token=line[i:j][:20]
                ) from None
            fields.append((value, True))
            i = j + 1
        else:
            j = line.find(",", i)
            if j < 0:
                j = n
            value = line[i:j].strip()
            if '"' in value:
                raise ConfigError("stray quote in field", file=file, line=lineno, token=value[:20])
            fields.append((value, False))
            i = j
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return fields
        if line[i] != ",":
            raise ConfigError(
                "expected a comma between fields", file=file, line=lineno, token=line[i:][:20]
            )
        i += 1


def _records(text: str) -> Iterable[tuple[int, str]]:
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield lineno, line


# ------------------------------------------------------------------ esp_sa


def format_esp_sa(entry: EspSaEntry) -> str:
    """One ``esp_sa`` line (without the newline)."""
    spi = "*" if entry.spi is None else f"0x{entry.spi:08x}"
    return ",".join(
        uat_quote(v)
        for v in (
            entry.family,
            entry.src,
            entry.dst,
            spi,
            entry.encryption,
            _hex0x(entry.encryption_key),
            entry.authentication,
            _hex0x(entry.authentication_key),
        )
    )


def _hex0x(key: bytes) -> str:
    return "0x" + key.hex() if key else ""


def _esp_key(value: str, what: str, file: str | None, lineno: int) -> bytes:
    # Wireshark reads "0x..." as hex and anything else as the key's ASCII text.
    if value[:2].lower() == "0x":
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise ConfigError(
                f"{what} is not hexadecimal", file=file, line=lineno, token=value[:20]
            ) from None
    return value.encode("utf-8")


def parse_esp_sa(text: str, file: str | None = None) -> list[EspSaEntry]:
    """Entries of an ``esp_sa`` file's text. Errors name ``file`` and the line."""
    entries = []
    for lineno, line in _records(text):
        fields = _split(line, file, lineno)
        if len(fields) != 8:
            raise ConfigError(
                f"esp_sa record needs 8 fields, found {len(fields)}", file=file, line=lineno
            )
        values = [v for v, _ in fields]
        family, src, dst, spi_text, encr, ekey, auth, akey = values
        spi: int | None
        if spi_text == "*":
            spi = None
        else:
            try:
                spi = int(spi_text, 16) if spi_text[:2].lower() == "0x" else int(spi_text, 10)
            except ValueError:
                raise ConfigError(
                    "SPI is not a number", file=file, line=lineno, token=spi_text
                ) from None
        try:
            entries.append(
                EspSaEntry(
                    family,
                    src,
                    dst,
                    spi,
                    encr,
                    _esp_key(ekey, "encryption key", file, lineno),
                    auth,
                    _esp_key(akey, "authentication key", file, lineno),
                )
            )
        except ConfigError as e:
            if e.file is not None:
                raise
            raise ConfigError(e.message, file=file, line=lineno, token=e.token) from None
    return entries


def read_esp_sa(path: str | os.PathLike[str]) -> list[EspSaEntry]:
    """Entries of an ``esp_sa`` file."""
    return parse_esp_sa(_read_text(path), file=os.fspath(path))


# ------------------------------------------------------------------ ikev2_decryption_table


def format_ikev2(entry: IkeSaEntry) -> str:
    """One ``ikev2_decryption_table`` line (without the newline)."""
    return ",".join(
        (
            entry.spi_i.hex(),
            entry.spi_r.hex(),
            entry.sk_ei.hex(),
            entry.sk_er.hex(),
            uat_quote(entry.encryption),
            entry.sk_ai.hex(),
            entry.sk_ar.hex(),
            uat_quote(entry.integrity),
        )
    )


def _hexfield(field_: tuple[str, bool], what: str, file: str | None, lineno: int) -> bytes:
    value = field_[0]
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ConfigError(
            f"{what} is not hexadecimal", file=file, line=lineno, token=value[:20]
        ) from None


def parse_ikev2(text: str, file: str | None = None) -> list[IkeSaEntry]:
    """Entries of an ``ikev2_decryption_table`` file's text."""
    entries = []
    names = ("ISPI", "RSPI", "SK_ei", "SK_er", None, "SK_ai", "SK_ar", None)
    for lineno, line in _records(text):
        fields = _split(line, file, lineno)
        if len(fields) != 8:
            raise ConfigError(
                f"ikev2_decryption_table record needs 8 fields, found {len(fields)}",
                file=file,
                line=lineno,
            )
        b = [
            _hexfield(f, what, file, lineno) if what else b""
            for f, what in zip(fields, names, strict=True)
        ]
        for i, what in ((0, "ISPI"), (1, "RSPI")):
            if len(b[i]) != 8:
                raise ConfigError(
                    f"{what} must be 16 hex digits", file=file, line=lineno, token=fields[i][0]
                )
        try:
            entries.append(
                IkeSaEntry(b[0], b[1], b[2], b[3], fields[4][0], b[5], b[6], fields[7][0])
            )
        except ConfigError as e:
            raise ConfigError(e.message, file=file, line=lineno, token=e.token) from None
    return entries


def read_ikev2(path: str | os.PathLike[str]) -> list[IkeSaEntry]:
    """Entries of an ``ikev2_decryption_table`` file."""
    return parse_ikev2(_read_text(path), file=os.fspath(path))


def _read_text(path: str | os.PathLike[str]) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=os.fspath(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x})",
            file=os.fspath(path),
            line=data.count(b"\n", 0, e.start) + 1,
        ) from None


# ------------------------------------------------------------------ files kept up to date

E = TypeVar("E", EspSaEntry, IkeSaEntry)


class _UatFile(Generic[E]):
    """A UAT file that is rewritten atomically, under a lock, on every change."""

    _header: str
    _format: Callable[[E], str]
    _parse: Callable[[str, str | None], list[E]]

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def entries(self) -> list[E]:
        """The entries now in the file (read afresh: other processes may write it too)."""
        if not self.path.exists():
            return []
        return type(self)._parse(_read_text(self.path), str(self.path))

    def _change(self, edit: Callable[[list[E]], list[E]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
            try:
                entries = edit(self.entries())
                text = self._header + "".join(type(self)._format(e) + "\n" for e in entries)
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        f.write(text)
                    os.replace(tmp, self.path)
                except BaseException:
                    os.unlink(tmp)
                    raise
            finally:
                fcntl.flock(lf, fcntl.LOCK_UN)


class EspSaFile(_UatFile[EspSaEntry]):
    """The ``esp_sa`` file of a key-log directory, kept current as SAs come and go."""

    _header = "# ESP SAs for Wireshark, written by ipseclab. Secret keys: keep private.\n"
    _format = staticmethod(format_esp_sa)
    _parse = staticmethod(parse_esp_sa)

    def add(self, entry: EspSaEntry) -> None:
        """Add an SA; an entry for the same protocol, addresses and SPI is replaced."""
        key = (entry.family, entry.src, entry.dst, entry.spi)
        self._change(lambda es: [e for e in es if (e.family, e.src, e.dst, e.spi) != key] + [entry])

    def remove(self, spi: int, dst: str | None = None) -> None:
        """Remove the entries with this SPI (and, if given, this destination)."""
        self._change(
            lambda es: [e for e in es if not (e.spi == spi and (dst is None or e.dst == dst))]
        )


class IkeSaFile(_UatFile[IkeSaEntry]):
    """The ``ikev2_decryption_table`` file of a key-log directory."""

    _header = "# IKEv2 SAs for Wireshark, written by ipseclab. Secret keys: keep private.\n"
    _format = staticmethod(format_ikev2)
    _parse = staticmethod(parse_ikev2)

    def add(self, entry: IkeSaEntry) -> None:
        """Add an IKE SA; an entry with the same SPI pair is replaced."""
        key = (entry.spi_i, entry.spi_r)
        self._change(lambda es: [e for e in es if (e.spi_i, e.spi_r) != key] + [entry])

    def remove(self, spi_i: bytes, spi_r: bytes) -> None:
        """Remove the entry of this SPI pair."""
        self._change(lambda es: [e for e in es if (e.spi_i, e.spi_r) != (spi_i, spi_r)])
