"""The Security Association: one direction of protected traffic (RFC 4301 §4.4.2).

An SA holds what the SAD entry of RFC 4301 §4.4.2.1 lists: SPI, sequence number counter,
anti-replay window, algorithms and keys, lifetime, mode, tunnel addresses, and for NAT
traversal the UDP ports (RFC 3948). Cipher and MAC objects are built once here, not per
packet. Keys never appear in ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ipseclab.crypto.transforms import EncryptionAlgorithm, IntegrityAlgorithm
from ipseclab.errors import ConfigError
from ipseclab.ipsec import fastpath
from ipseclab.ipsec.ip import PROTO_AH, PROTO_ESP, PROTO_UDP, IPAddress, OuterHeader, as_address


class Protocol(StrEnum):
    ESP = "esp"
    AH = "ah"

    def __str__(self) -> str:
        return self.value


class Mode(StrEnum):
    TRANSPORT = "transport"
    TUNNEL = "tunnel"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class UdpEncap:
    """ESP in UDP (RFC 3948): the ports of the outer UDP header, usually 4500 both."""

    sport: int = 4500
    dport: int = 4500


@dataclass(slots=True)
class SaCounters:
    """What ``ipseclab ctl`` and the checks of a scenario read."""

    packets: int = 0
    bytes: int = 0
    auth_failed: int = 0
    replay: int = 0
    too_old: int = 0
    bad_padding: int = 0
    malformed: int = 0
    dummy: int = 0
    policy_mismatch: int = 0


@dataclass(eq=False)
class SecurityAssociation:
    """One unidirectional SA, usable for sending or for receiving.

    ``src`` and ``dst`` are the outer addresses: the peers in transport mode, the tunnel
    endpoints in tunnel mode. The SPI was chosen by the receiver (``dst``).
    """

    spi: int
    src: IPAddress
    dst: IPAddress
    protocol: Protocol = Protocol.ESP
    mode: Mode = Mode.TRANSPORT
    encryption: EncryptionAlgorithm | None = None
    encryption_key: bytes = field(default=b"", repr=False)
    integrity: IntegrityAlgorithm | None = None
    integrity_key: bytes = field(default=b"", repr=False)
    replay_window: int = 32
    esn: bool = False
    encap: UdpEncap | None = None
    tfc_padding: int = 0
    reqid: int = 0
    selector: object | None = None
    lifetime: object | None = None
    insecure: bool = False
    seq: int = 0
    counters: SaCounters = field(default_factory=SaCounters)

    def __post_init__(self) -> None:
        self.src = as_address(self.src)
        self.dst = as_address(self.dst)
        self.protocol = Protocol(self.protocol)
        self.mode = Mode(self.mode)
        if self.src.version != self.dst.version:
            raise ConfigError(f"SA 0x{self.spi:08x}: {self.src} and {self.dst} differ in family")
        if not 0 < self.spi < 2**32:
            raise ConfigError(f"SPI 0x{self.spi:x} is out of range (1..0xffffffff)")
        if self.spi < 256:
            # RFC 4303 §2.1: 1..255 are reserved by IANA.
            raise ConfigError(f"SPI 0x{self.spi:x} is reserved (RFC 4303 §2.1 needs >= 256)")
        if self.protocol is Protocol.AH:
            if self.encryption is not None:
                raise ConfigError("AH has no encryption; use ESP for confidentiality")
            if self.integrity is None:
                raise ConfigError("an AH SA needs an integrity algorithm")
        else:
            if self.encryption is None:
                raise ConfigError("an ESP SA needs an encryption algorithm (null for none)")
            if self.encryption.aead and self.integrity is not None:
                raise ConfigError(
                    f"{self.encryption.keyword} is a combined-mode algorithm;"
                    f" it takes no separate integrity algorithm")
            if (not self.encryption.aead and self.integrity is None
                    and not self.insecure):
                raise ConfigError(
                    f"ESP with {self.encryption.keyword} and no integrity is open to"
                    " bit-flipping attacks (RFC 4303 §1); set insecure to allow it in a lab")
        self.cipher = self.encryption.new(self.encryption_key) if self.encryption else None
        self.mac = self.integrity.new(self.integrity_key) if self.integrity else None
        self.icv_size = (self.encryption.icv_size if self.encryption and self.encryption.aead
                         else self.mac.icv_size if self.mac else 0)
        self.ident = 0
        # RFC 4301 §4.4.2.1 "Path MTU": what ICMP taught us (ipseclab.ipsec.pmtu), and when.
        self.path_mtu = 0
        self.path_mtu_at = 0.0
        self.dst_packed = self.dst.packed
        self.spi_bytes = self.spi.to_bytes(4, "big")
        # ESP's fast path: an AEAD whose nonce is salt || IV, without ESN or TFC padding.
        raw = getattr(self.cipher, "raw", None)
        self.fast_aead = (raw if raw is not None and not self.esn and not self.tfc_padding
                          and self.protocol is Protocol.ESP else None)
        outer_proto = (PROTO_UDP if self.encap is not None
                       else PROTO_AH if self.protocol is Protocol.AH else PROTO_ESP)
        self.outer = OuterHeader(self.src, self.dst, outer_proto)
        # What ESP's fused tunnel path needs of that header: ESP straight over IPv4.
        self.fast_outer4 = (self.outer.ipv4 if self.fast_aead is not None
                            and self.encap is None else None)
        # The same fast paths in C, where built (ipseclab.ipsec.fastpath); its SAs keep their
        # anti-replay window in C too.
        self.compiled = fastpath.compile_sa(self)
        self.replay = fastpath.replay_window(self, self.compiled)

    def next_ident(self) -> int:
        """The IPv4 identification of the next outer header: never 0, which Linux would
        replace on a raw socket (and AH's ICV covers it)."""
        ident = self.ident = self.ident % 0xFFFF + 1
        return ident

    @property
    def family(self) -> int:
        return self.src.version

    @property
    def name(self) -> str:
        """The way ``ip xfrm state`` and Wireshark identify an SA."""
        return f"{self.protocol} spi 0x{self.spi:08x} {self.src} -> {self.dst}"

    @property
    def algorithms(self) -> str:
        """A strongSwan-style proposal string of what this SA uses."""
        parts = []
        if self.encryption is not None:
            parts.append(self.encryption.keyword)
        if self.integrity is not None:
            parts.append(self.integrity.keyword)
        if self.esn:
            parts.append("esn")
        return "-".join(parts)

    def __repr__(self) -> str:
        return (f"SecurityAssociation({self.name}, {self.mode}, {self.algorithms},"
                f" reqid={self.reqid}, seq={self.seq})")
