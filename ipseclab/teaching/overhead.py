"""What IPsec costs on the wire: bytes added per mode and algorithm, measured on real packets.

Every number here comes from encapsulating a packet with :mod:`ipseclab.ipsec` and taking
the length of what came out, so padding to the cipher's block (RFC 4303 §2.4), the IV and
ICV sizes of each algorithm, the outer header of tunnel mode (RFC 4301 §5.1.2) and the UDP
header of NAT traversal (RFC 3948 §2.1) are all in, exactly as a gateway would send them.

The MTU point answers "how large may a packet be before the protected packet no longer
fits the link?": beyond it the gateway must fragment (or send ICMP "packet too big" when the
DF bit is set, RFC 4301 §8).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ipseclab.ipsec import ah, esp
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.teaching.demo import demo_sa, udp_packet

DEFAULT_PROPOSALS = ("aes128gcm16", "aes128-sha256", "aes256-sha512", "chacha20poly1305")


@dataclass(frozen=True, slots=True)
class OverheadRow:
    """One measured packet: the inner packet's length and what went on the wire."""

    proposal: str
    protocol: str
    mode: str
    udp_encap: bool
    family: int
    inner_length: int
    wire_length: int

    @property
    def added(self) -> int:
        return self.wire_length - self.inner_length

    @property
    def series(self) -> str:
        """The legend name of this row's line in a plot."""
        proto = "AH " if self.protocol == "ah" else ""
        udp = " +UDP" if self.udp_encap else ""
        return f"{proto}{self.proposal}, {self.mode}{udp}"


def _sa(proposal: str, protocol: str, mode: str, udp: bool, family: int
        ) -> SecurityAssociation:
    return demo_sa(proposal, mode, protocol=protocol, family=family, udp=udp)


def protected_length(sa: SecurityAssociation, inner: bytes) -> int:
    """The length of ``inner`` once protected by ``sa`` (the SA's sequence number advances)."""
    encap = esp.encapsulate if sa.protocol.value == "esp" else ah.encapsulate
    return len(encap(sa, inner))


def measure(proposals: Iterable[str] = DEFAULT_PROPOSALS,
            modes: Iterable[str] = ("transport", "tunnel"),
            sizes: Iterable[int] = range(0, 1441, 8), *, protocol: str = "esp",
            udp: bool = False, family: int = 4) -> list[OverheadRow]:
    """Encapsulate a UDP packet with ``size`` bytes of payload for every combination.

    ``sizes`` are UDP payload lengths; the inner packet is that plus the UDP and IP headers.
    """
    sizes = list(sizes)
    rows = []
    for proposal in proposals:
        for mode in modes:
            sa = _sa(proposal, protocol, mode, udp, family)
            for size in sizes:
                inner = udp_packet(size, family=family)
                rows.append(OverheadRow(proposal, protocol, mode, udp, family, len(inner),
                                        protected_length(sa, inner)))
    return rows


def largest_inner(proposal: str, mode: str, mtu: int = 1500, *, protocol: str = "esp",
                  udp: bool = False, family: int = 4) -> int:
    """The largest inner packet whose protected packet still fits ``mtu`` bytes.

    Found by encapsulating real packets (a binary search: the length never shrinks as the
    payload grows). One byte more and the gateway has to fragment.
    """
    sa = _sa(proposal, protocol, mode, udp, family)
    header = len(udp_packet(0, family=family))

    def fits(size: int) -> bool:
        return protected_length(sa, udp_packet(size, family=family)) <= mtu

    lo, hi = 0, mtu
    if not fits(lo):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return header + lo


def summary(rows: Sequence[OverheadRow]) -> str:
    """A table: per series, the smallest and largest number of bytes added."""
    by: dict[str, list[int]] = {}
    for r in rows:
        by.setdefault(r.series, []).append(r.added)
    width = max((len(k) for k in by), default=10)
    lines = [f"{'series':{width}}  min added  max added"]
    for name, added in by.items():
        lines.append(f"{name:{width}}  {min(added):9d}  {max(added):9d}")
    return "\n".join(lines)


def plot_overhead(rows: Sequence[OverheadRow], ax=None, *, mtu: int | None = None,
                  relative: bool = False, title: str | None = None):
    """Bytes added (or, with ``relative``, percent added) against the inner packet's length.

    The sawtooth of CBC lines is the padding to the 16-byte block (RFC 4303 §2.4); counter
    mode and AEAD algorithms pad to 4 bytes only. With ``mtu``, a dotted vertical line marks
    for each series the largest inner packet that still fits: fragmentation starts there.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.5))
    series: dict[str, list[OverheadRow]] = {}
    for r in rows:
        series.setdefault(r.series, []).append(r)
    for name, pts in series.items():
        xs = [p.inner_length for p in pts]
        ys = [100 * p.added / p.inner_length if relative else p.added for p in pts]
        (line,) = ax.step(xs, ys, where="post", label=name, linewidth=1.5)
        if mtu is not None:
            fitting = [p.inner_length for p in pts if p.wire_length <= mtu]
            if fitting and max(fitting) < max(xs):
                ax.axvline(max(fitting), color=line.get_color(), linestyle=":", linewidth=1.2)
    ax.set_xlabel("inner packet length (bytes)")
    ax.set_ylabel("percent added" if relative else "bytes added by IPsec")
    if relative:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(title or ("IPsec overhead" + (f" (dotted: last size that fits MTU {mtu})"
                                               if mtu else "")), fontsize=10)
    return ax
