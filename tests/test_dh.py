"""Diffie-Hellman groups: parameters, round trips, and the RFC 6989 refusals of peer values."""

from __future__ import annotations

import random

import pytest

from ipseclab.crypto import dh
from ipseclab.crypto.dh import DH_GROUPS, ModpGroup, dh_group, dh_group_by_id
from ipseclab.errors import InvalidKeyShare, UnknownAlgorithm

MODP = [g for g in DH_GROUPS.values() if isinstance(g, ModpGroup)]
# RFC 2409 §6 and RFC 3526: p = 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130) * pi) + k)
OAKLEY_K = {"modp768": 149686, "modp1024": 129093, "modp1536": 741804, "modp2048": 124476,
            "modp3072": 1690314, "modp4096": 240904, "modp6144": 929484,
            "modp8192": 4743158}


def _pi_times_2_to(bits: int) -> int:
    """floor(pi * 2^bits) by Machin's formula in integers."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            n += 2
            total += sign * (term // n)
            sign = -sign
        return total

    return (4 * (4 * arctan_inv(5) - arctan_inv(239))) >> guard


def _probably_prime(n: int, rounds: int = 4) -> bool:
    rng = random.Random(n)
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize("keyword", list(OAKLEY_K))
def test_oakley_primes_follow_the_pi_formula(keyword: str) -> None:
    group = dh_group(keyword)
    n = group.p.bit_length()  # type: ignore[attr-defined]
    expected = 2**n - 2**(n - 64) - 1 + 2**64 * (_pi_times_2_to(n - 130) + OAKLEY_K[keyword])
    assert group.p == expected  # type: ignore[attr-defined]
    assert group.g == 2  # type: ignore[attr-defined]
    assert group.public_size * 8 == n == int(keyword[4:])


@pytest.mark.parametrize("keyword", ["modp768", "modp1024", "modp1536", "modp2048"])
def test_oakley_primes_are_safe_primes(keyword: str) -> None:
    p = dh_group(keyword).p  # type: ignore[attr-defined]
    assert _probably_prime(p) and _probably_prime((p - 1) // 2)


@pytest.mark.parametrize("keyword", ["modp1024s160", "modp2048s224", "modp2048s256"])
def test_rfc5114_subgroups(keyword: str) -> None:
    g = dh_group(keyword)
    assert _probably_prime(g.p) and _probably_prime(g.q)  # type: ignore[attr-defined]
    assert pow(g.g, g.q, g.p) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("group", list(DH_GROUPS.values()), ids=list(DH_GROUPS))
def test_random_keys_agree(group: dh.DhGroup) -> None:
    a, b = group.generate(), group.generate()
    assert len(a.public_bytes()) == group.public_size
    assert a.public_bytes() != b.public_bytes()
    assert a.exchange(b.public_bytes()) == b.exchange(a.public_bytes())


def test_lookup() -> None:
    assert dh_group("x25519") is dh_group("curve25519") is dh_group_by_id(31)
    assert dh_group("X448") is dh_group_by_id(32)
    assert dh_group("MODP2048").iana_id == 14
    assert dh_group_by_id(99) is None
    with pytest.raises(UnknownAlgorithm, match="did you mean modp2048"):
        dh_group("modp2084")


# --- RFC 6989 refusals --------------------------------------------------------------------


def _refused(group: dh.DhGroup, peer: bytes, reason: str) -> None:
    with pytest.raises(InvalidKeyShare, match=reason) as info:
        group.generate().exchange(peer)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("keyword", ["modp768", "modp2048", "modp1024s160"])
@pytest.mark.parametrize("value", ["0", "1", "p-1", "p", "p+1"])
def test_modp_refuses_degenerate_values(keyword: str, value: str) -> None:
    group = dh_group(keyword)
    p = group.p  # type: ignore[attr-defined]
    y = {"0": 0, "1": 1, "p-1": p - 1, "p": p, "p+1": p + 1}[value]
    _refused(group, y.to_bytes(group.public_size, "big"), "not in 2 .. p-2")


def test_modp_accepts_boundaries() -> None:
    group = dh_group("modp768")
    p = group.p  # type: ignore[attr-defined]
    for y in (2, p - 2):
        assert len(group.generate().exchange(y.to_bytes(96, "big"))) == 96


def test_modp_refuses_value_outside_the_q_subgroup() -> None:
    group = dh_group("modp2048s256")
    y = 2
    assert pow(y, group.q, group.p) != 1  # type: ignore[attr-defined]
    _refused(group, y.to_bytes(group.public_size, "big"), "order-q subgroup")


@pytest.mark.parametrize("keyword", ["modp2048", "ecp256", "ecp521", "x25519", "x448"])
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_length_refused(keyword: str, delta: int) -> None:
    group = dh_group(keyword)
    good = group.generate().public_bytes()
    peer = good[:-1] if delta < 0 else good + b"\x00"
    _refused(group, peer, f"must be {group.public_size} octets")


def test_modp_unpadded_value_refused() -> None:
    """RFC 7296 §3.4: MODP KE data is left-padded with zeros to the length of p."""
    group = dh_group("modp2048")
    _refused(group, (12345).to_bytes(2, "big"), "must be 256 octets")


@pytest.mark.parametrize("keyword", ["ecp256", "ecp384", "ecp521", "ecp192", "ecp224"])
def test_ecp_point_not_on_curve(keyword: str) -> None:
    group = dh_group(keyword)
    good = bytearray(group.generate().public_bytes())
    good[-1] ^= 1
    _refused(group, bytes(good), "not a point on the curve")
    _refused(group, bytes(group.public_size), "not a point on the curve")


def test_ecp_coordinate_not_below_p() -> None:
    group = dh_group("ecp256")
    p = 2**256 - 2**224 + 2**192 + 2**96 - 1
    good = group.generate().public_bytes()
    x = int.from_bytes(good[:32], "big")
    # x + p is the same residue but not a valid encoding (SEC 1 §2.3.4): it overflows 32
    # octets, so use the y coordinate instead where y + p may still fit.
    y = int.from_bytes(good[32:], "big")
    if y + p < 2**256:
        _refused(group, x.to_bytes(32, "big") + (y + p).to_bytes(32, "big"),
                 "not a point on the curve")
    _refused(group, p.to_bytes(32, "big") + good[32:], "not a point on the curve")


# RFC 7748 §6.1 / RFC 8031 §2.4: points of small order make the shared secret all zero.
X25519_LOW_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p - 1
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p + 1
]
X448_LOW_ORDER = [
    "00" * 56,
    "01" + "00" * 55,
    "fe" + "ff" * 27 + "fe" + "ff" * 27,  # p - 1
    "ff" * 28 + "fe" + "ff" * 27,  # p
]


@pytest.mark.parametrize("point", X25519_LOW_ORDER)
def test_x25519_low_order_points(point: str) -> None:
    _refused(dh_group("x25519"), bytes.fromhex(point), "low-order point")


@pytest.mark.parametrize("point", X448_LOW_ORDER)
def test_x448_low_order_points(point: str) -> None:
    _refused(dh_group("x448"), bytes.fromhex(point), "low-order point")


# --- Toy groups for the attack lab -----------------------------------------------------------


def test_toy_group_runs_on_pow() -> None:
    toy = ModpGroup("toy23", dh.PRIVATE_USE_MIN + 23, p=23, g=5, insecure=True)
    a, b = toy.generate(6), toy.generate(15)
    assert a.public_bytes() == bytes([8]) and b.public_bytes() == bytes([19])  # 5^6, 5^15 mod 23
    assert a.exchange(b.public_bytes()) == b.exchange(a.public_bytes()) == bytes([2])
    with pytest.raises(InvalidKeyShare):
        a.exchange(bytes([22]))


def test_register_toy_group() -> None:
    toy = ModpGroup("toy467", dh.PRIVATE_USE_MIN + 467, p=467, g=4, q=233, insecure=True)
    dh.register(toy)
    try:
        assert dh_group("toy467") is toy is dh_group_by_id(toy.iana_id)
        with pytest.raises(ValueError):
            dh.register(toy)
        a, b = toy.generate(), toy.generate()
        assert a.exchange(b.public_bytes()) == b.exchange(a.public_bytes())
    finally:
        del DH_GROUPS["toy467"]


def test_explicit_private_out_of_range() -> None:
    with pytest.raises(ValueError):
        dh_group("modp1024s160").generate(dh_group("modp1024s160").q)  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        dh_group("x25519").generate(b"\x01" * 31)
