"""Keys never appear in repr/str (review finding: IkeKeys printed every SK_* key)."""

from __future__ import annotations

from ipseclab.crypto.kdf import IkeKeys
from ipseclab.keylog import EspSaEntry


def test_ike_keys_repr_hides_keys() -> None:
    keys = IkeKeys(*(bytes([0xA0 + i]) * 32 for i in range(7)))
    text = repr(keys) + str(keys)
    for key in (keys.SK_d, keys.SK_ai, keys.SK_ar, keys.SK_ei, keys.SK_er, keys.SK_pi,
                keys.SK_pr):
        assert key.hex() not in text and repr(key)[2:-1] not in text
    assert "32" in text


def test_esp_sa_entry_repr_hides_keys() -> None:
    entry = EspSaEntry("IPv4", "192.0.2.1", "192.0.2.2", 0x1000, "AES-CBC [RFC3602]",
                       b"\xab" * 16, "HMAC-SHA-256-128 [RFC4868]", b"\xcd" * 32)
    assert "ab" * 4 not in repr(entry) and "\\xab" not in repr(entry)
    assert "cd" * 4 not in repr(entry) and "\\xcd" not in repr(entry)
