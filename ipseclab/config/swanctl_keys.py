"""The keys swanctl.conf(5) defines, and how their values are written and checked.

* The key tables: for connections, ``local``/``remote`` rounds, children, secrets and pools,
  which keys ipseclab maps onto its configuration (``*_MAPPED``, ``*_KEYS``) and which it
  accepts with a warning but ignores (``*_IGNORED``). Adding a key is adding it to a table and
  reading it in :mod:`.swanctl_connections` or :mod:`.swanctl_credentials`.
* Value formats: times with ``s``/``m``/``h``/``d`` suffixes (swanctl.conf(5) TIME FORMATS),
  secrets as ``0x`` hex or ``0s`` base64, booleans, numbers, lists, addresses.
* :class:`ValueReader`, the part of the loader that reads one :class:`Value` or checks one
  :class:`Section`: every error names the key's path, file and line, unknown keys suggest the
  nearest known one, and settings ipseclab does not act on become warnings.

A mixin of :class:`ipseclab.config.swanctl._Loader`, which provides ``base`` and ``warnings``.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import re
from pathlib import Path

from ipseclab.config.settings_syntax import Section, Value
from ipseclab.errors import ConfigError

__all__ = [
    "AUTH_METHODS",
    "CERT_SECTION_KEYS",
    "CHILD_IGNORED",
    "CHILD_MAPPED",
    "CONN_IGNORED",
    "CONN_MAPPED",
    "HASHES",
    "KEY_KINDS",
    "LOCAL_KEYS",
    "POOL_ATTRS",
    "REMOTE_KEYS",
    "SHARED_KINDS",
    "TOP",
    "ValueReader",
    "parse_secret",
    "parse_time",
]

HASHES = {"sha1", "sha256", "sha384", "sha512", "identity", "sha3_256", "sha3_384", "sha3_512"}

# mapped: ipseclab reads them; ignored: accepted, with a warning when set
CONN_MAPPED = {"version", "local_addrs", "remote_addrs", "local_port", "remote_port",
                "proposals", "dpd_delay", "dpd_timeout", "rekey_time", "reauth_time",
                "over_time", "rand_time", "encap", "mobike", "fragmentation", "send_certreq",
                "send_cert", "pools", "keyingtries", "unique", "vips", "childless"}
CONN_IGNORED = {"aggressive", "pull", "dscp", "ppk_id", "ppk_required",
                 "if_id_in", "if_id_out", "mediation", "mediated_by", "mediation_peer"}
LOCAL_KEYS = {"round", "certs", "pubkeys", "auth", "id", "eap_id", "aaa_id", "xauth_id"}
REMOTE_KEYS = {"round", "id", "eap_id", "groups", "cert_policy", "certs", "cacerts", "ca_id",
                "pubkeys", "revocation", "auth"}
CERT_SECTION_KEYS = {"file", "handle", "slot", "module"}
CHILD_MAPPED = {"local_ts", "remote_ts", "mode", "esp_proposals", "ah_proposals",
                 "start_action", "dpd_action", "close_action", "rekey_time", "life_time",
                 "rand_time", "replay_window", "inactivity", "updown", "hostaccess", "policies",
                 "rekey_bytes", "life_bytes", "rand_bytes", "rekey_packets", "life_packets",
                 "rand_packets", "tfc_padding"}
CHILD_IGNORED = {"sha256_96", "policies_fwd_out", "ipcomp", "reqid",
                  "priority", "interface", "mark_in", "mark_in_sa", "mark_out", "set_mark_in",
                  "set_mark_out", "if_id_in", "if_id_out", "label", "label_mode",
                  "hw_offload", "copy_df", "copy_ecn", "copy_dscp"}
SHARED_KINDS = ("eap", "xauth", "ntlm", "ike", "ppk")
KEY_KINDS = {"private": "private", "rsa": "rsa", "ecdsa": "ecdsa", "pkcs8": "pkcs8",
              "pkcs12": "pkcs12"}  # kind -> folder beside swanctl.conf
POOL_ATTRS = {"dns", "nbns", "dhcp", "netmask", "server", "subnet", "split_include",
               "split_exclude"}
TOP = {"connections", "secrets", "pools", "authorities"}
AUTH_METHODS = {"psk", "pubkey", "rsa", "ecdsa", "ed25519", "ed448", "bliss", "eap", "xauth",
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


class ValueReader:
    """Reads values and checks sections for the loader; mixed into ``_Loader``."""

    base: Path
    warnings: list[str]

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

    def as_volume(self, v: Value, key: str) -> int:
        """A byte or packet count; ``k``, ``m`` and ``g`` multiply by 1024 once, twice,
        thrice, as swanctl reads ``rekey_bytes`` and its kin."""
        text = v.text.strip().lower()
        scale = 1024 ** ("kmg".index(text[-1]) + 1) if text and text[-1] in "kmg" else 1
        digits = text[:-1] if scale > 1 else text
        if not digits.isdigit():
            raise self.err(v, key, "not a number (a k, m or g suffix may follow)")
        return int(digits) * scale

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
