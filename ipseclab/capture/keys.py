"""Between SAs and Wireshark's ``esp_sa`` lines: the registry knows both names of each algorithm.

Wireshark's table has no field for the mode or for ESN. The mode does not matter for
decryption (the next header tells); ESN does, so :class:`KeyRing` tries an SA without ESN
first and with ESN when the ICV fails, and remembers what worked.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from ipseclab.crypto import transforms
from ipseclab.errors import ConfigError
from ipseclab.ipsec.sa import Protocol, SecurityAssociation
from ipseclab.keylog import EspSaEntry

# Names other Wireshark releases use for the same algorithm.
_WIRESHARK_ALIASES = {"ChaCha20 with Poly1305 [RFC7634]": "ChaCha20-Poly1305 [RFC7634]"}


def esp_sa_entry(sa: SecurityAssociation) -> EspSaEntry:
    """The ``esp_sa`` line that lets Wireshark decrypt (and check) this SA."""
    if sa.protocol is not Protocol.ESP:
        raise ConfigError("Wireshark's esp_sa table holds ESP SAs only")
    enc = sa.encryption
    auth = sa.integrity
    if auth is not None and not auth.wireshark_name:
        auth_name = f"{auth.keyword} (not in Wireshark)"
    else:
        auth_name = auth.wireshark_name if auth else "NULL"
    return EspSaEntry(
        family="IPv4" if sa.family == 4 else "IPv6",
        src=str(sa.src), dst=str(sa.dst), spi=sa.spi,
        encryption=enc.wireshark_name, encryption_key=sa.encryption_key,
        authentication=auth_name,
        authentication_key=sa.integrity_key if auth else b"",
    )


def sa_from_entry(entry: EspSaEntry, *, esn: bool = False,
                  replay_window: int = 0) -> SecurityAssociation:
    """An inbound SA rebuilt from an ``esp_sa`` line (wildcard addresses become 0.0.0.0/::)."""
    name = _WIRESHARK_ALIASES.get(entry.encryption, entry.encryption)
    enc = transforms.encryption_by_wireshark_name(name, len(entry.encryption_key))
    spi = "*" if entry.spi is None else f"0x{entry.spi:08x}"
    if enc is None:
        sizes = sorted({a.keymat_size * 8 for a in transforms.ENCRYPTION.values()
                        if a.wireshark_name == name})
        if not sizes:
            raise ConfigError(f"SPI {spi}: unknown encryption algorithm '{entry.encryption}'",
                              token=entry.encryption)
        salt = " (key and salt)" if any(n % 64 for n in sizes) else ""
        raise ConfigError(f"SPI {spi}: {entry.encryption} takes a key of"
                          f" {' or '.join(map(str, sizes))} bits{salt}, not"
                          f" {len(entry.encryption_key) * 8}", token=entry.encryption)
    integ = None
    if entry.authentication != "NULL":
        integ = transforms.integrity_by_wireshark_name(entry.authentication)
        if integ is None:
            raise ConfigError(f"SPI {spi}: unknown authentication algorithm"
                              f" '{entry.authentication}'", token=entry.authentication)
    zero = IPv4Address(0) if entry.family == "IPv4" else IPv6Address(0)
    return SecurityAssociation(
        spi=entry.spi or 0x100, src=_address(entry.src, zero),
        dst=_address(entry.dst, zero), encryption=enc,
        encryption_key=entry.encryption_key, integrity=integ,
        integrity_key=entry.authentication_key if integ else b"", esn=esn,
        replay_window=replay_window, insecure=True)


def _address(text: str, wildcard: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    """An address of the line; ``*`` and Wireshark's other wildcard forms (``10.1.*.*``)
    match any, which a decoder may take as no address: it finds SAs by SPI."""
    try:
        return ip_address(text)
    except ValueError:
        return wildcard
