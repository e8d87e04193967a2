"""What the IETF recommends for IKEv2's algorithms: the tables of RFC 8247 §2.

RFC 8247 §2 gives each IKE SA transform a requirement level (MUST, SHOULD, MAY, SHOULD NOT,
MUST NOT; a "+" means it may become stronger, a "-" weaker, in a later revision). A gateway
that accepts a SHOULD NOT or MUST NOT algorithm is weak whatever it prefers: an active
attacker can strip the better proposals and see whether it gives in (the downgrade lesson).
Algorithms the RFC does not list have no level here ("").
"""

from __future__ import annotations

__all__ = ["IKE_LEVELS", "WEAK_LEVELS", "ike_level", "is_weak"]

# strongSwan keyword -> level, by transform kind (RFC 8247 §2.1 to §2.4).
IKE_LEVELS: dict[str, dict[str, str]] = {
    "encryption": {
        # §2.1: AES-CBC and AES-GCM/AES-CCM of every key size share one row each.
        **{f"aes{bits}": "MUST" for bits in (128, 192, 256)},
        **{f"aes{bits}gcm16": "SHOULD" for bits in (128, 192, 256)},
        **{f"aes{bits}ccm8": "SHOULD" for bits in (128, 192, 256)},
        "chacha20poly1305": "SHOULD",
        "3des": "MAY",
        "des": "MUST NOT",
    },
    "prf": {  # §2.2
        "prfsha256": "MUST", "prfsha512": "SHOULD+", "prfsha1": "MUST-",
        "prfaesxcbc": "SHOULD", "prfmd5": "MUST NOT",
    },
    "integrity": {  # §2.3
        "sha256": "MUST", "sha512": "SHOULD", "sha1": "MUST-", "aesxcbc": "SHOULD",
        "md5": "MUST NOT",
    },
    "dh": {  # §2.4
        "modp2048": "MUST", "ecp256": "SHOULD", "x25519": "SHOULD",
        "modp3072": "MAY", "modp4096": "MAY", "modp6144": "MAY", "modp8192": "MAY",
        "ecp384": "MAY", "ecp521": "MAY",
        "modp1536": "SHOULD NOT", "modp1024": "SHOULD NOT", "modp1024s160": "SHOULD NOT",
        "modp2048s224": "SHOULD NOT", "modp2048s256": "SHOULD NOT",
        "modp768": "MUST NOT",
    },
}

WEAK_LEVELS = frozenset({"SHOULD NOT", "MUST NOT"})


def ike_level(kind: str, keyword: str) -> str:
    """The level RFC 8247 gives ``keyword`` (of ``kind``: encryption, integrity, prf, dh)."""
    return IKE_LEVELS.get(kind, {}).get(keyword, "")


def is_weak(kind: str, keyword: str) -> bool:
    """Whether accepting ``keyword`` for an IKE SA goes against RFC 8247."""
    return ike_level(kind, keyword) in WEAK_LEVELS
