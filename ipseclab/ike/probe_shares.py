"""The probe's key share checks (RFC 6989): KE data no honest peer sends, and the proof.

A responder that checks a peer's key share refuses 1 or p-1 in a MODP group (RFC 6989
§2.1), a point off the curve in an ECP group (§2.3), or the low-order u = 0 of Curve25519 and
Curve448 (RFC 8031 §2.4). Some refuse at once, in IKE_SA_INIT; some answer with their own KE
payload and refuse only when they derive keys (strongSwan does, at IKE_AUTH). So an answered
share is followed up: the keys a peer *without* the checks would have are derived from the
secret the sender of such a share knows (g^ir = 1, p-1, or all zeros; RFC 7296 §2.14), and
an IKE_AUTH request is sealed with them. If the answer opens with those keys, the responder
used the degenerate secret: its checks are missing. Silence means it refused.

Pure: the :class:`~ipseclab.ike.probe.Prober` sends what these functions build and hands
back what arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ipseclab.crypto import dh as _dh
from ipseclab.crypto.kdf import IkeKeys
from ipseclab.errors import AuthenticationFailed
from ipseclab.ike import negotiation
from ipseclab.ike.constants import (
    AuthMethod,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    ProtocolId,
)
from ipseclab.ike.keys import IkeSuite, ike_sa_keys
from ipseclab.ike.message import Message
from ipseclab.ike.payload_base import MalformedMessage
from ipseclab.ike.payloads import (
    Authentication,
    IDi,
    KeyExchange,
    Nonce,
    SecurityAssociation,
)
from ipseclab.ike.sa_common import notify_name
from ipseclab.ike.sk import SkCipher

__all__ = ["AuthTry", "ShareCheck", "degenerate_shares", "judge_share_answer"]


@dataclass
class ShareCheck:
    """What the responder did with a degenerate key share ``value`` in ``group``:
    ``refused`` (an error, silence, or an IKE_AUTH sealed with the degenerate keys ignored:
    RFC 6989's checks at work), ``accepted`` (its IKE_AUTH answer opened with those keys: no
    checks), ``unverified`` (it answered, and no secret is known to test further),
    ``inconclusive`` (it wanted another group, or refused the group itself)."""

    group: str
    value: str
    verdict: str = ""
    detail: str = ""


def degenerate_shares(group: _dh.DhGroup) -> list[tuple[str, bytes, list[bytes]]]:
    """KE data no honest peer sends in ``group``, labelled (RFC 6989 §2.1, §2.3; RFC 8031
    §2.4), each with the shared secrets g^ir a peer without the checks would compute from it:
    1^x = 1; (p-1)^x = 1 or p-1 (x even or odd); X25519/X448 of u = 0 is all zeros. An
    off-curve point gives no predictable secret: that check stops at IKE_SA_INIT."""
    size = group.public_size
    if isinstance(group, _dh.ModpGroup):
        one, minus = (1).to_bytes(size, "big"), (group.p - 1).to_bytes(size, "big")
        return [("1", one, [one]), ("p-1", minus, [one, minus])]
    if isinstance(group, _dh.EcpGroup):
        return [("the point (0, 0), not on the curve", bytes(size), [])]
    if isinstance(group, _dh.MontgomeryGroup):
        return [("u = 0, a low-order point", bytes(size), [bytes(group.size)])]
    return []


def judge_share_answer(check: ShareCheck, request: Message, reply: Message,
                       secrets: list[bytes]) -> AuthTry | None:
    """Read the responder's IKE_SA_INIT answer to a degenerate share: an error settles the
    check; its own KE payload calls for the IKE_AUTH follow-up, returned."""
    errors = [n for n in reply.notifies() if n.is_error]
    sa, ke, nonce = (reply.find(SecurityAssociation), reply.find(KeyExchange),
                     reply.find(Nonce))
    if any(n.notify_type == NotifyType.INVALID_KE_PAYLOAD for n in errors):
        check.verdict, check.detail = "inconclusive", "it wants another group"
    elif errors:
        check.verdict, check.detail = "refused", notify_name(errors[0].notify_type)
    elif ke is None or sa is None or nonce is None:
        check.verdict, check.detail = "refused", "an answer without SA, KE or nonce"
    else:
        chosen = negotiation.read_proposals(sa, ProtocolId.IKE)
        if not secrets or not chosen:
            check.verdict = "unverified"
            check.detail = "answered with its own KE payload; no known secret to test"
            return None
        p = chosen[0][1]
        suite = IkeSuite(p.encryption[0], p.integrity[0] if p.integrity else None, p.prf[0])
        ni = next(x.data for x in request.payloads if isinstance(x, Nonce))
        return AuthTry(check, suite, ni, nonce.data, reply.spi_r, list(secrets))
    return None


@dataclass
class AuthTry:
    """The IKE_AUTH follow-up of a share check the responder answered: the public values,
    the suite it chose, the secrets left to try and the current one's keys."""

    check: ShareCheck
    suite: IkeSuite
    ni: bytes
    nr: bytes
    spi_r: bytes
    secrets: list[bytes]
    keys: IkeKeys | None = field(default=None, repr=False)

    def next_request(self, spi_i: bytes, rng: Callable[[int], bytes]) -> bytes:
        """IKE_AUTH (message ID 1) sealed with the keys of the next secret (RFC 7296 §2.14):
        an identity and a PSK AUTH that cannot verify; only whether it opens matters."""
        secret = self.secrets.pop(0)
        self.keys = ike_sa_keys(self.suite, self.ni, self.nr, secret, spi_i, self.spi_r)
        cipher = SkCipher(self.suite.encryption, self.keys.SK_ei, self.suite.integrity,
                          self.keys.SK_ai, rng=rng)
        header = Message(spi_i, self.spi_r, ExchangeType.IKE_AUTH, HeaderFlag.I, 1, [])
        inner = [IDi.fqdn("probe.invalid"),
                 Authentication(AuthMethod.PSK, bytes(self.suite.prf.output_size))]
        return cipher.seal(header, inner)

    def opens(self, data: bytes, reply: Message) -> bool:
        """Whether the responder's IKE_AUTH answer opens with the current keys; if so, the
        check is settled: no RFC 6989 check."""
        assert self.keys is not None
        try:
            SkCipher(self.suite.encryption, self.keys.SK_er, self.suite.integrity,
                     self.keys.SK_ar).open(data, reply)
        except (AuthenticationFailed, MalformedMessage, ValueError):
            return False  # not sealed with these keys: as if unanswered
        self.check.verdict = "accepted"
        self.check.detail = ("its IKE_AUTH answer opened with keys from the degenerate"
                             " secret: no RFC 6989 check")
        return True

    def ignored(self) -> None:
        """Every secret tried, no answer that opens: the responder refused."""
        self.check.verdict = "refused"
        self.check.detail = ("answered IKE_SA_INIT, then ignored an IKE_AUTH sealed with"
                             " keys from the degenerate secret (it checks when deriving keys)")

