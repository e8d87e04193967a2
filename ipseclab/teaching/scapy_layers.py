"""Scapy integration: captured ESP-in-UDP and IKE on port 4500 dissect as what they are.

What Scapy 2.8 already does (``scapy.layers.ipsec``): UDP port 4500 in either direction goes
to its ``ESP`` layer, whose dispatch hook turns four zero bytes (the non-ESP marker,
RFC 3948 §2.2) into ``NON_ESP`` and a lone 0xFF byte into ``NAT_KEEPALIVE`` (§2.3). What it
does not do on its own is read the IKE message behind the marker: ``scapy.contrib.ikev2``
binds ``NON_ESP`` to ``IKEv2`` (RFC 7296 §2.23), but contrib modules are not loaded by
``import scapy``. :func:`enable` loads both; that is all this module adds, so the
classes a student sees are Scapy's own.
"""

from __future__ import annotations

from ipseclab.capture.decode import DecodedFrame

_ENABLED = False
HAVE_IKEV2 = False


def enable() -> bool:
    """Load Scapy's IPsec layers and, if available, its IKEv2 layer. True if IKEv2 is on.

    Safe to call any number of times. Without ``scapy.contrib.ikev2`` an IKE message on
    port 4500 stays ``NON_ESP`` / ``Raw``, which is still correct, only less detailed.
    """
    global _ENABLED, HAVE_IKEV2
    if _ENABLED:
        return HAVE_IKEV2
    import scapy.layers.inet
    import scapy.layers.inet6
    import scapy.layers.ipsec

    try:
        import scapy.contrib.ikev2  # noqa: F401
        HAVE_IKEV2 = True
    except ImportError:
        HAVE_IKEV2 = False
    _ENABLED = True
    return HAVE_IKEV2


def dissect(packet: bytes):
    """A raw IP packet (IPv4 or IPv6) as a Scapy packet, with the port 4500 layers on."""
    enable()
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    packet = bytes(packet)
    return (IP if packet[:1] and packet[0] >> 4 == 4 else IPv6)(packet)


def to_scapy(item: DecodedFrame | bytes):
    """A Scapy packet for a decoded frame (its recovered inner packet) or for raw bytes.

    A :class:`~ipseclab.capture.decode.DecodedFrame` keeps the packet ESP protected, not the
    ESP bytes themselves, so what comes back is the decrypted inner packet (``None`` when it
    could not be opened); pass the captured bytes to see the ESP layer instead.
    """
    if isinstance(item, DecodedFrame):
        if item.inner_bytes is None:
            return None
        return dissect(item.inner_bytes)
    return dissect(item)
