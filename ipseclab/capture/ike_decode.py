"""IKEv2 messages in a capture: parsed, and their SK payloads opened with a key log.

Keys come from Wireshark's ``ikev2_decryption_table`` (what ipseclab's gateway and IKE
engine write): SK_ei/SK_ai for messages the original initiator sent, SK_er/SK_ar for the
responder's (RFC 7296 §2.14). The result names the exchange and every payload, the inner
ones too, which is what a ladder diagram of the handshake needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ipseclab.crypto import transforms
from ipseclab.crypto.transforms import EncryptionAlgorithm, IntegrityAlgorithm
from ipseclab.errors import AuthenticationFailed, IpsecLabError
from ipseclab.ike.constants import ExchangeType, PayloadType
from ipseclab.ike.message import Message, parse_message
from ipseclab.ike.payload_base import MalformedMessage, Payload
from ipseclab.ike.payloads import Encrypted, Notify
from ipseclab.ike.sk import SkCipher
from ipseclab.keylog import IkeSaEntry

# The IKE SA's own names; tshark 4.0 has none for ChaCha20-Poly1305, so the IKE engine
# writes ipseclab's keyword there.
_ENCRYPTION_BY_NAME: dict[str, EncryptionAlgorithm] = {
    **{a.ike_wireshark_name: a for a in transforms.ENCRYPTION.values() if a.ike_wireshark_name},
    "chacha20poly1305": transforms.ENCRYPTION["chacha20poly1305"],
}
_INTEGRITY_BY_NAME: dict[str, IntegrityAlgorithm] = {
    a.ike_wireshark_name: a for a in transforms.INTEGRITY.values() if a.ike_wireshark_name}


def _payload_name(p: Payload) -> str:
    try:
        name = PayloadType(p.payload_type).name
    except ValueError:
        name = f"payload {p.payload_type}"
    if isinstance(p, Notify):
        try:
            from ipseclab.ike.constants import NotifyType

            return f"N({NotifyType(p.notify_type).name})"
        except (ValueError, AttributeError):
            return f"N({getattr(p, 'notify_type', '?')})"
    return name


@dataclass
class IkeView:
    """One IKE message as a decoder sees it."""

    exchange: str
    message_id: int
    initiator: bool
    response: bool
    spi_i: bytes
    spi_r: bytes
    payloads: list[str] = field(default_factory=list)
    inner: list[str] | None = None  # None: not decrypted
    status: str = "ok"  # ok, no_sa (no keys for the SK payload), auth_failed, malformed
    detail: str = ""

    def describe(self) -> str:
        who = "initiator" if self.initiator else "responder"
        kind = "response" if self.response else "request"
        shown = list(self.payloads)
        if self.inner is not None and "SK" in shown:
            shown[shown.index("SK")] = "SK{" + ", ".join(self.inner) + "}"
        return f"{self.exchange} #{self.message_id} {kind} from {who}: {', '.join(shown)}"


class IkeKeys:
    """SK payload ciphers by IKE SA SPIs, built from ``ikev2_decryption_table`` lines."""

    def __init__(self, entries: Iterable[IkeSaEntry] = ()) -> None:
        self._entries = {(e.spi_i, e.spi_r): e for e in entries}
        self._ciphers: dict[tuple[bytes, bytes, bool], SkCipher | None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def cipher(self, spi_i: bytes, spi_r: bytes, from_initiator: bool) -> SkCipher | None:
        key = (spi_i, spi_r, from_initiator)
        if key not in self._ciphers:
            self._ciphers[key] = self._build(spi_i, spi_r, from_initiator)
        return self._ciphers[key]

    def _build(self, spi_i: bytes, spi_r: bytes, from_initiator: bool) -> SkCipher | None:
        entry = self._entries.get((spi_i, spi_r))
        if entry is None:
            return None
        enc = _ENCRYPTION_BY_NAME.get(entry.encryption)
        if enc is None:
            raise IpsecLabError(f"IKE key log: unknown encryption '{entry.encryption}'")
        integ = None if enc.aead else _INTEGRITY_BY_NAME.get(entry.integrity)
        if not enc.aead and integ is None:
            raise IpsecLabError(f"IKE key log: unknown integrity '{entry.integrity}'")
        ek, ak = (entry.sk_ei, entry.sk_ai) if from_initiator else (entry.sk_er, entry.sk_ar)
        return SkCipher(enc, ek, integ, ak if integ else b"")


def view_message(data: bytes, keys: IkeKeys | None = None) -> IkeView:
    """Parse one IKE message (after any non-ESP marker) and open its SK payload if we can."""
    try:
        msg: Message = parse_message(data)
    except MalformedMessage as exc:
        return IkeView("?", 0, False, False, b"", b"", status="malformed", detail=str(exc))
    try:
        exchange = ExchangeType(msg.exchange_type).name
    except ValueError:
        exchange = f"exchange {msg.exchange_type}"
    view = IkeView(exchange, msg.message_id, msg.is_initiator, msg.is_response, msg.spi_i,
                   msg.spi_r, [_payload_name(p) for p in msg.payloads])
    if not msg.payloads or not isinstance(msg.payloads[-1], Encrypted):
        return view
    cipher = keys.cipher(msg.spi_i, msg.spi_r, msg.is_initiator) if keys is not None else None
    if cipher is None:
        view.status, view.detail = "no_sa", "no IKE keys for these SPIs"
        return view
    try:
        view.inner = [_payload_name(p) for p in cipher.open(data, msg)]
    except AuthenticationFailed as exc:
        view.status, view.detail = "auth_failed", str(exc)
    except MalformedMessage as exc:
        view.status, view.detail = "malformed", str(exc)
    return view
