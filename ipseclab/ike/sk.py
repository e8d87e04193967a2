"""The Encrypted and Authenticated payload SK (RFC 7296 §3.14; RFC 5282 for AEAD ciphers).

    SK payload body = IV | encrypted( inner payloads | padding | Pad Length ) | ICV

Classic ciphers (AES-CBC) are paired with an integrity algorithm: the ICV is computed over
the whole message from the first octet of the IKE header to the last octet before the ICV
(§3.14), so every header field is protected. AEAD ciphers (AES-GCM, AES-CCM,
ChaCha20-Poly1305: RFC 5282, RFC 7634) have no separate ICV; their associated data is
everything before the IV: the IKE header, any unencrypted payloads, and the SK payload's
generic header (RFC 5282 §5.1). Their nonce is salt | IV, the salt being the last octets of
SK_e (RFC 5282 §7.1), exactly as in ESP, so the per-SA cipher objects of
:mod:`ipseclab.crypto.transforms` serve here too.

Padding (§3.14): a CBC plaintext must fill whole cipher blocks; the Pad Length octet says
how many padding octets precede it, and their content is arbitrary (we send zeros). AEAD
ciphers need no padding, only the Pad Length octet (0), and neither does AES-CTR
(RFC 5930): a counter mode encrypts any number of octets, so a peer may send a ciphertext
of any length (strongSwan does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ipseclab.crypto.transforms import EncryptionAlgorithm, IntegrityAlgorithm
from ipseclab.errors import AuthenticationFailed
from ipseclab.ike.message import Message, build_payload_chain, parse_payload_chain
from ipseclab.ike.payload_base import MalformedMessage, Payload
from ipseclab.ike.payloads import Encrypted, EncryptedFragment

__all__ = ["SkCipher"]


def _block(enc: EncryptionAlgorithm) -> int:
    """The octets an SK plaintext must fill whole: a CBC cipher's block, 1 for a counter
    mode (every AEAD here, and AES-CTR by RFC 5930)."""
    return 1 if enc.aead or enc.counter_iv else enc.block_size


class SkCipher:
    """Encrypts or decrypts SK payloads for one direction of one IKE SA.

    ``encryption_key`` is SK_ei or SK_er (with an AEAD's salt at its end), ``integrity_key``
    SK_ai or SK_ar (empty with an AEAD). ``rng(n)`` gives CBC IVs; AEAD IVs count up from 1,
    which keeps them unique under one key as RFC 5282 §3.1 demands.
    """

    def __init__(self, encryption: EncryptionAlgorithm, encryption_key: bytes,
                 integrity: IntegrityAlgorithm | None = None, integrity_key: bytes = b"",
                 rng: Callable[[int], bytes] | None = None) -> None:
        if encryption.aead == (integrity is not None):
            raise ValueError("an AEAD takes no integrity algorithm; a classic cipher needs one")
        self.encryption = encryption
        self.integrity = integrity
        self._cipher = encryption.new(encryption_key)
        self._mac = integrity.new(integrity_key) if integrity is not None else None
        self._icv_size = encryption.icv_size if encryption.aead else integrity.icv_size
        self._rng = rng
        self._counter = 0

    def _next_iv(self) -> bytes:
        if self.encryption.counter_iv:
            self._counter += 1
            return self._counter.to_bytes(self.encryption.iv_size, "big")
        if self._rng is None:
            return os.urandom(self.encryption.iv_size)
        return self._rng(self.encryption.iv_size)

    def seal(self, message: Message, inner: Sequence[Payload], *, iv: bytes | None = None,
             padding: int | None = None) -> bytes:
        """``message`` (its header fields and any unencrypted payloads) with an SK payload
        holding ``inner`` appended, as bytes ready to send.

        ``iv`` and ``padding`` (number of pad octets) are for reproducing published examples.
        """
        enc = self.encryption
        first_type, chain = build_payload_chain(inner)
        block = _block(enc)
        if padding is None:
            padding = -(len(chain) + 1) % block
        plaintext = chain + bytes(padding) + bytes((padding,))
        if len(plaintext) % block:
            raise ValueError(f"padding {padding} does not fill the {block}-octet block")
        iv = self._next_iv() if iv is None else iv
        return self._sealed(message, lambda body: Encrypted(first_type, body), iv, plaintext)

    def _sealed(self, message: Message, payload: Callable[[bytes], Payload], iv: bytes,
                plaintext: bytes) -> bytes:
        """``message`` with ``payload(body)`` appended, its body IV | ciphertext | ICV.

        The header and generic payload header are built first, with a placeholder body of
        the final length, because they are the AEAD's associated data or under the ICV.
        """
        body_len = len(iv) + len(plaintext) + self._icv_size
        draft = Message(message.spi_i, message.spi_r, message.exchange_type, message.flags,
                        message.message_id,
                        [*message.payloads, payload(bytes(body_len))]).to_bytes()
        before_iv = draft[:len(draft) - body_len]
        if self.encryption.aead:
            return before_iv + iv + self._cipher.encrypt(iv, plaintext, before_iv)
        signed = before_iv + iv + self._cipher.encrypt(iv, plaintext, b"")
        return signed + self._mac.compute(signed)  # type: ignore[union-attr]

    def open(self, data: bytes, message: Message) -> list[Payload]:
        """The inner payloads of the SK payload of ``message`` (parsed from ``data``).

        Raises :class:`AuthenticationFailed` if the ICV or tag is wrong (the caller drops the
        message silently, §2.21.2) and :class:`MalformedMessage` for bad structure after a
        good ICV.
        """
        sk = message.payloads[-1] if message.payloads else None
        if not isinstance(sk, Encrypted):
            raise MalformedMessage("message has no SK payload")
        return parse_payload_chain(sk.first_inner, self._open_body(bytes(data), sk.body, "SK"))

    def _open_body(self, data: bytes, body: bytes, what: str) -> bytes:
        """Check and decrypt the body (IV | ciphertext | ICV) of the last payload of ``data``,
        an SK or SKF payload (§3.14; RFC 7383 §2.5), and strip its padding."""
        enc = self.encryption
        if len(body) < enc.iv_size + self._icv_size + 1:
            raise AuthenticationFailed(f"{what} payload too short for IV and ICV")
        before_iv = data[:len(data) - len(body)]
        iv = body[:enc.iv_size]
        if enc.aead:
            plaintext = self._cipher.decrypt(iv, body[enc.iv_size:], before_iv)
        else:
            if not self._mac.verify(data[:-self._icv_size],  # type: ignore[union-attr]
                                    body[-self._icv_size:]):
                raise AuthenticationFailed(f"{what} payload ICV mismatch")
            ciphertext = body[enc.iv_size:-self._icv_size]
            if not ciphertext or len(ciphertext) % _block(enc):
                raise MalformedMessage(f"{what} ciphertext is not a whole number of blocks")
            plaintext = self._cipher.decrypt(iv, ciphertext, b"")
        pad = plaintext[-1]
        if pad + 1 > len(plaintext):
            raise MalformedMessage(f"Pad Length {pad} exceeds the {what} plaintext")
        return plaintext[:-1 - pad]

    # -- fragments (RFC 7383 §2.5) -----------------------------------------------------------

    def seal_fragments(self, message: Message, inner: Sequence[Payload],
                       max_size: int) -> list[bytes]:
        """``message`` with ``inner`` split over SKF fragments of at most ``max_size``
        octets each, every one encrypted and integrity-protected on its own (RFC 7383 §2.5).

        The inner payload chain is cut at arbitrary octets; fragment 1's Next Payload names
        the first inner payload, the others carry 0. For an AEAD, the associated data of each
        fragment includes its Fragment Number and Total Fragments fields.
        """
        from ipseclab.ike.fragments import chunk_size

        enc = self.encryption
        first_type, chain = build_payload_chain(inner)
        size = chunk_size(max_size, enc.iv_size, self._icv_size,
                          _block(enc))
        chunks = [chain[i:i + size] for i in range(0, len(chain), size)] or [b""]
        total = len(chunks)
        if total > 0xFFFF:
            raise ValueError(f"{total} fragments do not fit the 16-bit Total Fragments field")
        return [self._seal_fragment(message, number, total,
                                    first_type if number == 1 else 0, chunk)
                for number, chunk in enumerate(chunks, 1)]

    def _seal_fragment(self, message: Message, number: int, total: int, first_inner: int,
                       chunk: bytes) -> bytes:
        enc = self.encryption
        block = _block(enc)
        padding = -(len(chunk) + 1) % block
        plaintext = chunk + bytes(padding) + bytes((padding,))
        return self._sealed(
            message, lambda body: EncryptedFragment(number, total, first_inner, body),
            self._next_iv(), plaintext)

    def open_fragment(self, data: bytes, message: Message) -> bytes:
        """The decrypted slice of the inner payload chain that the SKF payload of
        ``message`` carries (padding removed). Raises :class:`AuthenticationFailed` when
        its ICV or tag is wrong, so that a forged fragment is never collected (RFC 7383
        §2.6), and :class:`MalformedMessage` for bad structure after a good ICV.
        """
        skf = message.payloads[-1] if message.payloads else None
        if not isinstance(skf, EncryptedFragment):
            raise MalformedMessage("message has no SKF payload")
        return self._open_body(bytes(data), skf.body, "SKF")

