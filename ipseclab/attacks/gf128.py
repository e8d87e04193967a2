"""GF(2^128) as GCM uses it, polynomials over it, and finding their roots.

GCM's hash GHASH (NIST SP 800-38D §6.4) evaluates a polynomial in the hash key H: the blocks
of AAD, ciphertext and lengths are its coefficients. Two messages under the same key and
nonce give two tags T1 = GHASH_H(A1, C1) + S and T2 = GHASH_H(A2, C2) + S with the same mask
S = E_K(J0); adding them removes S and leaves a polynomial, known to the attacker, of
which H is a root (Joux, "Authentication Failures in NIST version of GCM", 2006). Finding
roots over a finite field is the textbook part (Cantor and Zassenhaus, 1981):

1. r(X) = gcd(f(X), X^(2^128) - X) keeps exactly the linear factors (X - a) of f: every
   element a of GF(2^128) is a root of X^(2^128) - X;
2. in characteristic 2 the trace Tr(Y) = Y + Y^2 + Y^4 + ... + Y^(2^127) takes only the
   values 0 and 1; gcd(r(X), Tr(c X) mod r(X)) for a random c collects the roots a with
   Tr(c a) = 0, about half of them, and splits r. Repeat on the parts.

Elements are Python ints with bit i the coefficient of x^i, reduced modulo
x^128 + x^7 + x^2 + x + 1. GCM writes blocks "bit-reflected" (the first bit of the block is
x^0): :func:`from_block` / :func:`to_block` convert. Polynomials are lists of elements,
lowest degree first, without trailing zeros. Readable, not fast: fine for a few dozen
coefficients.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

MASK = (1 << 128) - 1
Poly = list[int]


# --- the field ------------------------------------------------------------------------------

def from_block(block: bytes) -> int:
    """A 16-byte GCM block as a field element (bit 0 of byte 0 is the top bit: x^0)."""
    if len(block) != 16:
        raise ValueError("a GCM block has 16 bytes")
    return int(format(int.from_bytes(block, "big"), "0128b")[::-1], 2)


def to_block(element: int) -> bytes:
    return int(format(element, "0128b")[::-1], 2).to_bytes(16, "big")


def mul(a: int, b: int) -> int:
    """a * b in GF(2^128): carry-less multiplication, then reduction."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        b >>= 1
    for _ in range(2):
        high = product >> 128
        product = (product & MASK) ^ high ^ (high << 1) ^ (high << 2) ^ (high << 7)
    return product


def power(a: int, n: int) -> int:
    result = 1
    while n:
        if n & 1:
            result = mul(result, a)
        a = mul(a, a)
        n >>= 1
    return result


def inverse(a: int) -> int:
    """a^-1 = a^(2^128 - 2) (the multiplicative group has order 2^128 - 1)."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse")
    return power(a, (1 << 128) - 2)


# --- polynomials over the field ------------------------------------------------------------

def trim(p: Sequence[int]) -> Poly:
    p = list(p)
    while p and p[-1] == 0:
        p.pop()
    return p


def add(p: Sequence[int], q: Sequence[int]) -> Poly:
    n = max(len(p), len(q))
    return trim([(p[i] if i < len(p) else 0) ^ (q[i] if i < len(q) else 0) for i in range(n)])


def pmul(p: Sequence[int], q: Sequence[int]) -> Poly:
    if not p or not q:
        return []
    out = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        if a:
            for j, b in enumerate(q):
                if b:
                    out[i + j] ^= mul(a, b)
    return trim(out)


def divmod_poly(p: Sequence[int], q: Sequence[int]) -> tuple[Poly, Poly]:
    """Quotient and remainder of p / q."""
    q = trim(q)
    if not q:
        raise ZeroDivisionError("division by the zero polynomial")
    rem = trim(p)
    lead_inv = inverse(q[-1])
    quot = [0] * max(0, len(rem) - len(q) + 1)
    while len(rem) >= len(q):
        shift = len(rem) - len(q)
        factor = mul(rem[-1], lead_inv)
        quot[shift] = factor
        for i, c in enumerate(q):
            rem[i + shift] ^= mul(factor, c)
        rem = trim(rem)
    return trim(quot), rem


def monic(p: Sequence[int]) -> Poly:
    p = trim(p)
    if not p:
        return []
    inv = inverse(p[-1])
    return [mul(c, inv) for c in p]


def gcd(p: Sequence[int], q: Sequence[int]) -> Poly:
    a, b = trim(p), trim(q)
    while b:
        a, b = b, divmod_poly(a, b)[1]
    return monic(a)


def evaluate(p: Sequence[int], x: int) -> int:
    """p(x), by Horner's rule."""
    acc = 0
    for c in reversed(p):
        acc = mul(acc, x) ^ c
    return acc


def _square_mod(p: Poly, m: Poly) -> Poly:
    # Squaring is linear in characteristic 2: (sum c_i X^i)^2 = sum c_i^2 X^(2i).
    sq = [0] * (2 * len(p))
    for i, c in enumerate(p):
        sq[2 * i] = mul(c, c)
    return divmod_poly(sq, m)[1]


def _frobenius_sum(start: Poly, m: Poly) -> tuple[Poly, Poly]:
    """(start^(2^128) mod m, start + start^2 + ... + start^(2^127) mod m)."""
    y, acc = divmod_poly(start, m)[1], []
    for _ in range(128):
        acc = add(acc, y)
        y = _square_mod(y, m)
    return y, acc


def roots(f: Sequence[int], rng: random.Random | None = None) -> list[int]:
    """All roots in GF(2^128) of the polynomial f (distinct, sorted)."""
    f = monic(f)
    if len(f) < 2:
        return []
    x_power, _ = _frobenius_sum([0, 1], f)  # X^(2^128) mod f
    linear = gcd(f, add(x_power, [0, 1]))
    rng = rng or random.Random(0x6C6162)
    found: list[int] = []
    _split(linear, rng, found)
    return sorted(found)


def _split(r: Poly, rng: random.Random, found: list[int]) -> None:
    if len(r) < 2:
        return
    if len(r) == 2:
        found.append(r[0])  # X + a (monic): the root is a, since -a = a
        return
    while True:
        c = rng.getrandbits(128) or 1
        _, trace = _frobenius_sum([0, c], r)
        d = gcd(r, trace)
        if 1 < len(d) < len(r):
            _split(d, rng, found)
            _split(divmod_poly(r, d)[0], rng, found)
            return


# --- GHASH as a polynomial -------------------------------------------------------------------

def ghash_blocks(aad: bytes, ciphertext: bytes) -> list[int]:
    """The blocks GHASH reads: AAD and ciphertext, each zero-padded, then their bit lengths."""
    def padded(data: bytes) -> bytes:
        return data + bytes(-len(data) % 16)

    data = padded(aad) + padded(ciphertext)
    lengths = (len(aad) * 8).to_bytes(8, "big") + (len(ciphertext) * 8).to_bytes(8, "big")
    return [from_block(data[i:i + 16]) for i in range(0, len(data), 16)] + \
        [from_block(lengths)]


def ghash_poly(aad: bytes, ciphertext: bytes) -> Poly:
    """GHASH_H(A, C) as a polynomial in H: block i of m is the coefficient of H^(m+1-i)."""
    blocks = ghash_blocks(aad, ciphertext)
    return [0, *blocks[::-1]]


def ghash(h: int, aad: bytes, ciphertext: bytes) -> int:
    """GHASH_H(A, C) (SP 800-38D §6.4), as an element."""
    y = 0
    for block in ghash_blocks(aad, ciphertext):
        y = mul(y ^ block, h)
    return y


def nonce_reuse_poly(first: tuple[bytes, bytes, bytes], second: tuple[bytes, bytes, bytes]) -> Poly:
    """The polynomial with root H from two (AAD, ciphertext, tag) under one key and nonce."""
    (a1, c1, t1), (a2, c2, t2) = first, second
    return add(add(ghash_poly(a1, c1), ghash_poly(a2, c2)),
               [from_block(t1) ^ from_block(t2)])
