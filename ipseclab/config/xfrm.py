"""Manual keying in ``ip xfrm`` syntax, so scripts written for Linux load unchanged.

A file holds ``ip xfrm state add ...`` and ``ip xfrm policy add ...`` lines (``ip -4`` /
``ip -6`` prefixes, ``\\`` continuations and ``#`` comments allowed; ``flush`` lines are
accepted and ignored). Algorithms use the kernel's names (``rfc4106(gcm(aes))``,
``hmac(sha256)``, ``cbc(aes)``, ...); the key length picks AES-128/192/256 and the last
number of ``aead``/``auth-trunc`` the ICV length, as in the kernel.

Linux accepts weak combinations (ESP without integrity, say) that ipseclab refuses unless
the file says ``# ipseclab: insecure`` on a line of its own: a lab may want them, a
gateway should not. Errors name the file, the line and the offending token.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ipseclab.crypto import transforms
from ipseclab.crypto.transforms import EncryptionAlgorithm, IntegrityAlgorithm
from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ipsec.ip import as_address
from ipseclab.ipsec.lifetime import Lifetime
from ipseclab.ipsec.replay import MAX_REPLAY_WINDOW
from ipseclab.ipsec.sa import SecurityAssociation, UdpEncap
from ipseclab.ipsec.selectors import Selector
from ipseclab.ipsec.spd import Policy, PolicyAction, Template

INSECURE_DIRECTIVE = "# ipseclab: insecure"

# The kernel's short aliases (crypto/xfrm_algo.c) next to the full names.
_ENC_ALIASES = {"aes": "cbc(aes)", "des3_ede": "cbc(des3_ede)", "cipher_null": "ecb(cipher_null)",
                "null": "ecb(cipher_null)"}
_AUTH_ALIASES = {"md5": "hmac(md5)", "sha1": "hmac(sha1)", "sha256": "hmac(sha256)",
                 "sha384": "hmac(sha384)", "sha512": "hmac(sha512)", "aes-xcbc": "xcbc(aes)",
                 "xcbc": "xcbc(aes)", "cmac": "cmac(aes)"}
# What a plain ``auth`` (no ``-trunc``) truncates to in the kernel; hmac(sha256) keeps its
# pre-RFC 4868 96 bits there.
_AUTH_DEFAULT_BITS = {"hmac(md5)": 96, "hmac(sha1)": 96, "hmac(sha256)": 96,
                      "hmac(sha384)": 192, "hmac(sha512)": 256, "xcbc(aes)": 96,
                      "cmac(aes)": 96}
_FLAGS = {"noecn", "decap-dscp", "nopmtudisc", "wildrecv", "icmp", "af-unspec", "align4", "esn"}
_LIMITS = {"time-soft": "soft_seconds", "time-hard": "hard_seconds",
           "byte-soft": "soft_bytes", "byte-hard": "hard_bytes",
           "packet-soft": "soft_packets", "packet-hard": "hard_packets",
           "time-use-soft": None, "time-use-hard": None}


@dataclass
class ManualConfig:
    """The SAs and policies of one ``ip xfrm`` file."""

    states: list[SecurityAssociation] = field(default_factory=list)
    policies: list[Policy] = field(default_factory=list)
    insecure: bool = False
    source: str = "<string>"


class _Tokens:
    """The words of one command, with the position kept for error messages."""

    def __init__(self, words: list[str], file: str, line: int) -> None:
        self.words, self.i, self.file, self.line = words, 0, file, line

    def error(self, message: str, token: str | None = None) -> ConfigError:
        if token is None and self.i <= len(self.words):
            token = self.words[self.i - 1] if self.i else None
        return ConfigError(message, file=self.file, line=self.line, token=token)

    def more(self) -> bool:
        return self.i < len(self.words)

    def peek(self) -> str | None:
        return self.words[self.i] if self.i < len(self.words) else None

    def next(self, what: str) -> str:
        if self.i >= len(self.words):
            raise self.error(f"expected {what} at the end of the line")
        self.i += 1
        return self.words[self.i - 1]

    def number(self, what: str, high: int = 0xFFFFFFFF) -> int:
        """An unsigned number, 0..``high`` (iproute2 reads most fields as u32)."""
        word = self.next(what)
        try:
            value = int(word, 0)
        except ValueError:
            raise self.error(f"expected {what} (a number)", word) from None
        if not 0 <= value <= high:
            raise self.error(f"expected {what} from 0 to {high}", word)
        return value

    def address(self, what: str):
        word = self.next(what)
        try:
            return as_address(word)
        except ValueError:
            raise self.error(f"expected {what} (an IP address)", word) from None

    def key(self) -> bytes:
        word = self.next("a key (0x... in hex, or a quoted string)")
        if word.lower().startswith("0x"):
            try:
                return bytes.fromhex(word[2:])
            except ValueError:
                raise self.error("the key is not valid hex", word) from None
        return word.encode()


def load(path: str | Path) -> ManualConfig:
    """Read an ``ip xfrm`` file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", file=str(path),
                          line=data.count(b"\n", 0, exc.start) + 1) from None
    return parse(text, str(path))


def parse(text: str, file: str = "<string>") -> ManualConfig:
    """Parse the text of an ``ip xfrm`` file into SAs and policies."""
    config = ManualConfig(source=file)
    commands: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.split("\n"), 1):
        if raw.strip().lower().replace(" ", "") == INSECURE_DIRECTIVE.replace(" ", ""):
            config.insecure = True
        line = raw.split("#", 1)[0].rstrip() if "#" in raw else raw.rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            commands.append((start, pending))
        pending = ""
    if pending.strip():
        commands.append((start, pending))
    for number, command in commands:
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"cannot split the line: {exc}", file=file, line=number) from None
        _command(_Tokens(words, file, number), config)
    return config


def _command(t: _Tokens, config: ManualConfig) -> None:
    word = t.next("ip xfrm ...")
    if word == "sudo":
        word = t.next("ip xfrm ...")
    if word == "ip":
        while t.peek() in ("-4", "-6", "-s", "-d"):
            t.next("")
        word = t.next("xfrm")
    if word != "xfrm":
        raise t.error("expected an 'ip xfrm state ...' or 'ip xfrm policy ...' line", word)
    obj = t.next("state or policy")
    verb = t.next("add, update or flush")
    if obj not in ("state", "policy"):
        raise t.error("expected 'state' or 'policy'", obj)
    if verb in ("flush", "deleteall"):
        return
    if verb not in ("add", "update"):
        raise t.error(f"'{verb}' is not supported here; use add or update", verb)
    if obj == "state":
        config.states.append(_state(t, config.insecure))
    else:
        config.policies.append(_policy(t))


def _encryption(t: _Tokens, name: str, key: bytes, icv_bits: int | None) -> EncryptionAlgorithm:
    kernel = _ENC_ALIASES.get(name, name)
    known = {a.kernel_name for a in transforms.ENCRYPTION.values()}
    if kernel not in known:
        raise t.error(f"unknown encryption algorithm '{name}'; known: {', '.join(sorted(known))}",
                      name)
    for alg in transforms.ENCRYPTION.values():
        if alg.kernel_name != kernel or alg.keymat_size != len(key):
            continue
        if icv_bits is None or alg.icv_size * 8 == icv_bits:
            return alg
    sizes = sorted({a.keymat_size * 8 for a in transforms.ENCRYPTION.values()
                    if a.kernel_name == kernel})
    if icv_bits is not None and len(key) * 8 in sizes:
        raise t.error(f"{kernel} takes no ICV of {icv_bits} bits", str(icv_bits))
    raise t.error(f"{kernel} needs a key of {' or '.join(map(str, sizes))} bits"
                  f" (key and salt), got {len(key) * 8}")


def _integrity(t: _Tokens, name: str, key: bytes, bits: int | None) -> IntegrityAlgorithm:
    kernel = _AUTH_ALIASES.get(name, name)
    for alg in transforms.INTEGRITY.values():
        if alg.kernel_name == kernel:
            try:
                return alg.truncated(bits or _AUTH_DEFAULT_BITS[kernel])
            except ConfigError as exc:
                raise t.error(exc.message) from None
    known = sorted(a.kernel_name for a in transforms.INTEGRITY.values())
    raise t.error(f"unknown integrity algorithm '{name}'; known: {', '.join(known)}", name)


def _selector(t: _Tokens, direction: str = "out", *, stop: frozenset[str]) -> Selector:
    """``src A dst B [proto P] [sport N] [dport N] [type T] [code C]``, up to a keyword."""
    fields: dict[str, str] = {}
    while t.more() and t.peek() not in stop:
        key = t.next("a selector")
        if key not in ("src", "dst", "proto", "sport", "dport", "type", "code"):
            raise t.error(f"unexpected '{key}' in a selector", key)
        fields[key] = t.next(f"a value for {key}")
    if "src" not in fields or "dst" not in fields:
        raise t.error("a selector needs src and dst")
    local, remote = fields["src"], fields["dst"]
    lport, rport = fields.get("sport"), fields.get("dport")
    if direction in ("in", "fwd"):
        local, remote, lport, rport = remote, local, rport, lport
    try:
        return Selector.parse(local, remote, proto=fields.get("proto"), sport=lport, dport=rport,
                              icmp_type=int(fields["type"]) if "type" in fields else None,
                              icmp_code=int(fields["code"]) if "code" in fields else None)
    except (ValueError, IpsecLabError) as exc:
        raise t.error(f"bad selector: {exc}") from None


_STATE_WORDS = frozenset({"src", "dst", "proto", "spi", "reqid", "mode", "replay-window", "flag",
                          "enc", "auth", "auth-trunc", "aead", "encap", "sel", "limit",
                          "tfcpad", "replay-seq", "replay-oseq", "mark", "output-mark",
                          "if_id", "extra-flag", "seq"})


def _state(t: _Tokens, insecure: bool) -> SecurityAssociation:
    args: dict = {"replay_window": 0}
    limits: dict[str, int] = {}
    seen: set[str] = set()
    while t.more():
        word = t.next("a state keyword")
        if word in seen and word not in ("limit", "flag"):
            raise t.error(f"'{word}' given twice", word)
        seen.add(word)
        if word == "src":
            args["src"] = t.address("the source address")
        elif word == "dst":
            args["dst"] = t.address("the destination address")
        elif word == "proto":
            proto = t.next("esp or ah")
            if proto not in ("esp", "ah"):
                raise t.error(f"protocol '{proto}' is not supported (esp or ah)", proto)
            args["protocol"] = proto
        elif word == "spi":
            args["spi"] = t.number("an SPI")
        elif word == "reqid":
            args["reqid"] = t.number("a reqid")
        elif word == "mode":
            mode = t.next("transport or tunnel")
            if mode not in ("transport", "tunnel"):
                raise t.error(f"mode '{mode}' is not supported (transport or tunnel)", mode)
            args["mode"] = mode
        elif word == "replay-window":
            args["replay_window"] = t.number("a window size", high=MAX_REPLAY_WINDOW)
        elif word == "flag":
            while t.peek() in _FLAGS:
                if t.next("a flag") == "esn":
                    args["esn"] = True
            if word == t.words[t.i - 1]:
                raise t.error("expected a flag such as esn", t.peek())
        elif word == "extra-flag":
            t.next("a flag")
        elif word == "enc":
            name, key = t.next("an algorithm"), t.key()
            args["encryption"], args["encryption_key"] = _encryption(t, name, key, None), key
        elif word in ("auth", "auth-trunc"):
            name, key = t.next("an algorithm"), t.key()
            bits = t.number("the ICV length in bits") if word == "auth-trunc" else None
            if name in ("digest_null", "null"):
                continue
            args["integrity"], args["integrity_key"] = _integrity(t, name, key, bits), key
        elif word == "aead":
            name, key = t.next("an algorithm"), t.key()
            bits = t.number("the ICV length in bits")
            args["encryption"], args["encryption_key"] = _encryption(t, name, key, bits), key
        elif word == "encap":
            kind = t.next("espinudp")
            if kind not in ("espinudp", "espinudp-nonike"):
                raise t.error(f"encap '{kind}' is not supported (espinudp)", kind)
            sport = t.number("a source port", high=0xFFFF)
            dport = t.number("a destination port", high=0xFFFF)
            t.next("the original address (0.0.0.0)")
            args["encap"] = UdpEncap(sport, dport)
        elif word == "sel":
            # Kept as the receiver sees it: the SA's destination is the local side (the
            # engine checks decrypted packets against it, RFC 4301 §5.2).
            args["selector"] = _selector(t, "in", stop=_STATE_WORDS - {"src", "dst", "proto"})
        elif word == "limit":
            kind = t.next("a limit such as byte-soft")
            if kind not in _LIMITS:
                raise t.error(f"unknown limit '{kind}'; known: {', '.join(_LIMITS)}", kind)
            value = t.number(f"a value for {kind}", high=2**64 - 1)
            if _LIMITS[kind]:
                limits[_LIMITS[kind]] = value
        elif word == "tfcpad":
            args["tfc_padding"] = t.number("a TFC padding length")
        elif word in ("replay-seq", "replay-oseq", "seq", "if_id"):
            t.next(f"a value for {word}")
        elif word in ("mark", "output-mark"):
            t.next("a mark")
            if t.peek() == "mask":
                t.next("mask")
                t.next("a mask")
        else:
            raise t.error(f"unknown state keyword '{word}'", word)
    for need in ("src", "dst", "spi"):
        if need not in args:
            raise t.error(f"the state has no '{need}'", None)
    args.setdefault("protocol", "esp")
    if args["protocol"] == "esp" and "encryption" not in args:
        if "integrity" not in args:
            raise t.error("an ESP state needs enc/aead (and auth), or at least auth", None)
        args["encryption"], args["encryption_key"] = transforms.encryption("null"), b""
    if limits:
        args["lifetime"] = Lifetime(**limits)
    try:
        return SecurityAssociation(**args, insecure=insecure)
    except ConfigError as exc:
        hint = " (add '# ipseclab: insecure' to the file to allow it in a lab)" \
            if "insecure" in exc.message else ""
        raise ConfigError(exc.message.replace("; set insecure to allow it in a lab", "") + hint,
                          file=t.file, line=t.line) from None


def _policy(t: _Tokens) -> Policy:
    stop = frozenset({"dir", "action", "priority", "tmpl", "index", "ptype", "flag", "mark",
                      "if_id", "level", "ctx"})
    if t.peek() not in ("src", "dst"):
        raise t.error("a policy starts with its selector: src ... dst ...", t.peek())
    start = t.i
    _selector(t, stop=stop)  # validated now; built again once the direction is known
    end = t.i
    direction, action, priority, templates = None, "allow", 0, []
    while t.more():
        word = t.next("a policy keyword")
        if word == "dir":
            direction = t.next("in, out or fwd")
            if direction not in ("in", "out", "fwd"):
                raise t.error(f"direction '{direction}' must be in, out or fwd", direction)
        elif word == "action":
            action = t.next("allow or block")
            if action not in ("allow", "block"):
                raise t.error(f"action '{action}' must be allow or block", action)
        elif word == "priority":
            priority = t.number("a priority")
        elif word == "tmpl":
            templates.append(_template(t))
        elif word in ("index", "ptype", "if_id", "mark", "ctx"):
            t.next(f"a value for {word}")
        elif word == "flag":
            t.next("a flag")
        else:
            raise t.error(f"unknown policy keyword '{word}'", word)
    if direction is None:
        raise t.error("the policy has no 'dir'", None)
    sel_tokens = _Tokens(t.words[start:end], t.file, t.line)
    selector = _selector(sel_tokens, direction, stop=stop)
    if action == "block":
        kind = PolicyAction.DISCARD
    else:
        kind = PolicyAction.PROTECT if templates else PolicyAction.BYPASS
    return Policy(selector=selector, direction=direction, action=kind, priority=priority,
                  templates=templates)


def _template(t: _Tokens) -> Template:
    values: dict = {"protocol": "esp", "mode": "transport"}
    words = {"src", "dst", "proto", "reqid", "mode", "spi", "level"}
    while t.peek() in words:
        word = t.next("a template keyword")
        if word in ("src", "dst"):
            values[word] = t.address(f"the template's {word}")
        elif word == "proto":
            values["protocol"] = t.next("esp or ah")
            if values["protocol"] not in ("esp", "ah"):
                raise t.error("a template's proto must be esp or ah", values["protocol"])
        elif word == "mode":
            values["mode"] = t.next("transport or tunnel")
        elif word in ("reqid", "spi"):
            values[word] = t.number(word)
        else:
            t.next("required or use")
    if values["mode"] == "tunnel" and ("src" not in values or "dst" not in values):
        raise t.error("a tunnel-mode template needs src and dst (the tunnel endpoints)")
    return Template(protocol=values["protocol"], mode=values["mode"], src=values.get("src"),
                    dst=values.get("dst"), reqid=values.get("reqid"), spi=values.get("spi"))
