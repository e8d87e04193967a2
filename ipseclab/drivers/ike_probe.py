"""``ipseclab probe``: ask an IKEv2 responder which IKE SA algorithms it accepts.

The questions and the reading of the answers are :class:`ipseclab.ike.probe.Prober`'s; this
module is its UDP driver (one socket connected to the responder's port 500, so only its
datagrams come back), the progress line and the report: accepted algorithms per transform
type with what RFC 8247 says about each, the weak ones named, then what a real offer got.

Probe only gateways you run or are allowed to test: every question is a real IKE_SA_INIT.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import select
import socket
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ipseclab.crypto import guidance
from ipseclab.errors import IpsecLabError
from ipseclab.ike.probe import KINDS, Prober, candidates
from ipseclab.ipsec.udpencap import NON_ESP_MARKER

__all__ = ["format_report", "probe", "register", "report_json"]

_TITLES = {"encryption": "encryption", "integrity": "integrity", "prf": "PRF", "dh": "DH group"}


def probe(address: str, port: int = 500, *, source: str | None = None,
          progress: Callable[[Prober], None] | None = None, **options: Any) -> Prober:
    """Run a :class:`Prober` against ``address``:``port`` over UDP; ``options`` go to it.

    On any port but 500 (4500: a responder behind a NAT, RFC 3948) every IKE message carries
    the four-zero-octet non-ESP marker, both ways."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 \
            else socket.AF_INET
    except ValueError:
        raise IpsecLabError(f"not an IP address: {address!r}") from None
    prober = Prober(**options)
    # Off port 500 IKE travels behind the non-ESP marker (RFC 3948 §2.2), as on 4500.
    marker = b"" if port == 500 else NON_ESP_MARKER
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            if source:
                sock.bind((source, 0))
            sock.connect((address, port))
        except OSError as exc:
            raise IpsecLabError(f"cannot reach {address} port {port}: {exc.strerror}") from None
        asked = -1
        while True:
            now = time.monotonic()
            data, wake = prober.poll(now)
            if data is not None:
                try:
                    sock.send(marker + data)
                except OSError as exc:
                    raise IpsecLabError(f"cannot send to {address} port {port}:"
                                        f" {exc.strerror}") from None
            if progress is not None and prober.asked != asked:
                asked = prober.asked
                progress(prober)
            if wake is None:
                return prober
            ready, _, _ = select.select([sock], [], [], max(0.0, wake - time.monotonic()))
            if ready:
                try:
                    reply = sock.recv(65535)
                except OSError:  # ICMP port unreachable: counts as no answer
                    continue
                if reply.startswith(marker):
                    prober.receive(reply[len(marker):], time.monotonic())


def _rows(prober: Prober, kind: str) -> tuple[list[str], list[str], list[str]]:
    accepted, refused, other = [], [], []
    for a in prober.answers:
        if a.candidate.kind != kind:
            continue
        word = a.candidate.keyword
        if a.verdict == "accepted":
            level = a.candidate.level
            accepted.append(f"{word} ({level})" if level else word)
        elif a.verdict == "refused":
            refused.append(word)
        else:
            other.append(f"{word}: {a.verdict}{' (' + a.detail + ')' if a.detail else ''}")
    return accepted, refused, other


def weak(prober: Prober) -> list[str]:
    """The accepted algorithms RFC 8247 says SHOULD NOT or MUST NOT be used, and the
    degenerate key shares accepted (RFC 6989)."""
    return [f"{a.candidate.keyword} ({a.candidate.level})" for a in prober.answers
            if a.verdict == "accepted" and guidance.is_weak(a.candidate.kind, a.candidate.keyword)
            ] + [f"{c.group} key share {c.value} (RFC 6989)" for c in prober.share_checks
                 if c.verdict == "accepted"]


def _shares(prober: Prober) -> list[str]:
    """The key share checks, grouped by verdict: which values in which group."""
    lines = []
    for verdict, word in (("refused", "refuses"), ("accepted", "ACCEPTS"),
                          ("unverified", "unverified for"),
                          ("inconclusive", "inconclusive for")):
        by_group: dict[str, list[str]] = {}
        for c in prober.share_checks:
            if c.verdict == verdict:
                by_group.setdefault(c.group, []).append(c.value)
        if by_group:
            text = "; ".join(f"{', '.join(v)} ({g})" for g, v in by_group.items())
            lines += _wrap("  key shares: " if not lines else " " * 14, f"{word} {text}", 8)
    return lines


def format_report(prober: Prober, target: str) -> str:
    """The probe's findings as text: per transform type, then the real offer."""
    shares = f", {len(prober.share_checks)} key share checks" if prober.share_checks else ""
    lines = [f"IKEv2 responder {target}: {len(prober.answers)} questions{shares}"
             f" (RFC 8247 levels in brackets)"]
    for kind in KINDS:
        accepted, refused, other = _rows(prober, kind)
        if not (accepted or refused or other):
            continue
        lines += _wrap(f"  {_TITLES[kind] + ':':12s}", f"accepts {', '.join(accepted) or 'none'}",
                       8)
        if refused:
            lines += _wrap(" " * 14, f"refuses {', '.join(refused)}", 8)
        for o in other:
            lines += _wrap(" " * 14, o, 2)
    lines += _shares(prober)
    bad = weak(prober)
    lines += _wrap("  weak:       ", ", ".join(bad) if bad
                   else "none (no SHOULD NOT / MUST NOT algorithm, no degenerate key share)")
    if prober.cookie_demanded:
        lines.append("  COOKIE:     demanded (RFC 7296 §2.6), answered")
    full = prober.full_answer
    if full is not None:
        if full.verdict == "answered":
            lines.append(f"  real offer: chose {full.proposal}")
            lines += _wrap("  notifies:   ", ", ".join(full.notifies) or "none")
            if full.vendor_ids:
                lines.append(f"  vendor IDs: {', '.join(full.vendor_ids)}")
        else:
            lines.append(f"  real offer: {full.verdict}"
                         f"{' (' + full.detail + ')' if full.detail else ''}")
    if prober.stopped:
        lines.append(f"  stopped:    {prober.stopped}")
    return "\n".join(lines)


def _wrap(head: str, text: str, hang: int = 0, width: int = 96) -> list[str]:
    """``text`` after ``head``, its further lines indented ``hang`` more than the text."""
    return textwrap.wrap(text, width, initial_indent=head,
                         subsequent_indent=" " * (len(head) + hang),
                         break_on_hyphens=False) or [head.rstrip()]


def report_json(prober: Prober, target: str) -> dict:
    """The findings as one JSON-ready object (``ipseclab probe --json``)."""
    return {
        "target": target,
        "answers": [{"kind": a.candidate.kind, "keyword": a.candidate.keyword,
                     "transform_id": a.candidate.transform_id, "key_bits": a.candidate.key_bits,
                     "verdict": a.verdict, "detail": a.detail, "group": a.group,
                     "rfc8247": a.candidate.level,
                     "weak": a.verdict == "accepted"
                     and guidance.is_weak(a.candidate.kind, a.candidate.keyword)}
                    for a in prober.answers],
        "share_checks": [asdict(c) for c in prober.share_checks],
        "cookie_demanded": prober.cookie_demanded,
        "full": asdict(prober.full_answer) if prober.full_answer is not None else None,
        "stopped": prober.stopped,
    }


def register(command: Callable) -> None:
    """Add ``ipseclab probe`` to the command line."""

    @command("probe", "ask an IKEv2 responder which IKE SA algorithms it accepts")
    def _probe(p: argparse.ArgumentParser):
        p.description = (
            "Send one IKE_SA_INIT per algorithm (RFC 7296 §1.2) and report which encryption,"
            " integrity, PRF and DH algorithms the responder accepts, with RFC 8247's level for"
            " each. The questions leave no state on the responder (its answer is"
            " INVALID_KE_PAYLOAD or NO_PROPOSAL_CHOSEN). Then, per accepted DH group, key"
            " shares no honest peer sends (RFC 6989): a responder that answers them has no"
            " checks. The last, real offer leaves one half-open IKE SA (skip it with"
            " --no-full). Probe only gateways you may test.")
        p.add_argument("address", help="the responder's IP address")
        p.add_argument("--port", type=int, default=500, help="UDP port (default 500)")
        p.add_argument("--source", metavar="ADDRESS", help="local address to send from")
        p.add_argument("--only", metavar="KINDS",
                       help="comma-separated: encryption, integrity, prf, dh (default: all)")
        p.add_argument("--timeout", type=float, default=1.0,
                       help="seconds before a request is sent again (default 1)")
        p.add_argument("--tries", type=int, default=3, help="sendings per question (default 3)")
        p.add_argument("--interval", type=float, default=0.02,
                       help="seconds between questions (default 0.02)")
        p.add_argument("--no-full", action="store_true",
                       help="skip the real offer at the end (no half-open IKE SA)")
        p.add_argument("--no-share-checks", action="store_true",
                       help="skip the RFC 6989 key share checks")
        p.add_argument("--json", action="store_true", help="print the findings as JSON")

        def run(a: argparse.Namespace) -> int:
            kinds = KINDS if not a.only else tuple(k.strip() for k in a.only.split(","))
            unknown = [k for k in kinds if k not in KINDS]
            if unknown:
                raise IpsecLabError(f"--only: unknown kind {unknown[0]!r}; choose from"
                                    f" {', '.join(KINDS)}")
            if not 1 <= a.port <= 65535:
                raise IpsecLabError(f"--port {a.port} is not a UDP port")
            if a.timeout <= 0 or a.tries < 1 or a.interval < 0:
                raise IpsecLabError("--timeout must be > 0, --tries >= 1, --interval >= 0")
            target = f"{a.address} port {a.port}"
            show = _progress if sys.stderr.isatty() and not a.json else None
            prober = probe(a.address, a.port, source=a.source, progress=show,
                           candidate_list=candidates(kinds), full=not a.no_full,
                           share_checks=not a.no_share_checks,
                           timeout=a.timeout, tries=a.tries, interval=a.interval)
            if show is not None:
                print(file=sys.stderr)
            if a.json:
                print(json.dumps(report_json(prober, target), indent=1))
            else:
                print(format_report(prober, target))
            return 0 if any(x.verdict != "no answer" for x in prober.answers) else 1
        return run


def _progress(prober: Prober) -> None:
    print(f"\rprobe: {prober.asked}/{prober.total} questions", end="", file=sys.stderr,
          flush=True)
