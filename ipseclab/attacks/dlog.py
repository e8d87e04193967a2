"""Discrete logarithms in small groups: baby-step giant-step and Pohlig-Hellman.

Given g, y = g^x mod p and the order n of g, find x. Shanks' baby-step giant-step needs
about sqrt(n) multiplications and as many table entries; Pohlig-Hellman splits a composite
n into its prime-power factors and solves each one separately, so its cost is set by the
*largest prime factor* of n. That is why IKE's MODP groups are safe primes (p = 2q + 1, g
of prime order q, RFC 3526) and why RFC 6989 §2.2 makes a peer check that a value lies in
the order-q subgroup. Neither helps against a group that is simply too small: the weak-dh
attack solves a 40-bit toy group here in about a second. For real primes the best known
algorithm is the number field sieve, not these (see :mod:`ipseclab.attacks.weak_dh`).

Pure Python, written to be read, for the attack lab only.
"""

from __future__ import annotations

from math import isqrt

__all__ = ["bsgs", "crt", "pohlig_hellman"]


def bsgs(g: int, y: int, p: int, order: int) -> int | None:
    """x in [0, order) with g^x = y (mod p), or None if y is not a power of g.

    Write x = i*m + j with m = ceil(sqrt(order)). Baby steps: a table g^j -> j for
    0 <= j < m. Giant steps: y * (g^-m)^i for i = 0, 1, ... until it hits the table.
    """
    y %= p
    m = isqrt(order - 1) + 1 if order > 1 else 1
    table: dict[int, int] = {}
    e = 1
    for j in range(m):
        table.setdefault(e, j)
        e = e * g % p
    giant = pow(g, -m, p)  # g^-m
    gamma = y
    for i in range(m):
        j = table.get(gamma)
        if j is not None:
            return (i * m + j) % order
        gamma = gamma * giant % p
    return None


def crt(residues: list[int], moduli: list[int]) -> int:
    """The x mod prod(moduli) with x = r_k (mod m_k) for pairwise coprime moduli."""
    x, n = 0, 1
    for r, m in zip(residues, moduli, strict=True):
        # x + n*t = r (mod m)  ->  t = (r - x) * n^-1 (mod m)
        t = (r - x) * pow(n, -1, m) % m
        x, n = x + n * t, n * m
    return x % n


def pohlig_hellman(g: int, y: int, p: int, factors: dict[int, int]) -> int | None:
    """x with g^x = y (mod p), where the order of g is prod(q^e for q, e in factors).

    For each prime power q^e: lift into the subgroup of order q^e (raise to n / q^e) and
    find x mod q^e digit by digit, each digit a discrete log in the subgroup of order q
    (by :func:`bsgs`). The Chinese remainder theorem joins the pieces.
    """
    n = 1
    for q, e in factors.items():
        n *= q ** e
    residues, moduli = [], []
    for q, e in factors.items():
        qe = q ** e
        g_i = pow(g, n // qe, p)  # order q^e
        y_i = pow(y, n // qe, p)
        gamma = pow(g_i, q ** (e - 1), p)  # order q
        x_i = 0
        for k in range(e):
            # strip the digits found so far, then look at the k-th digit alone
            h = pow(pow(g_i, -x_i, p) * y_i % p, q ** (e - 1 - k), p)
            digit = bsgs(gamma, h, p, q)
            if digit is None:
                return None
            x_i += digit * q ** k
        residues.append(x_i)
        moduli.append(qe)
    x = crt(residues, moduli)
    return x if pow(g, x, p) == y % p else None
