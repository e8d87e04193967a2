"""strongSwan proposal strings: ``aes128gcm16-prfsha256-x25519``, ``aes256-sha256-modp2048``.

A proposal is a dash-separated list of algorithm keywords (strongSwan's ``proposals``,
``esp_proposals`` and ``ah_proposals`` settings); several keywords of one kind are
alternatives in preference order, and the order of kinds does not matter. A comma separates
proposals. The rules follow strongSwan and RFC 7296 §3.3:

* IKE: an encryption algorithm and a DH group are required. With classic encryption an
  integrity algorithm is required and, if no PRF is named, each integrity algorithm brings
  its PRF (``sha256`` -> ``prfsha256``). With an AEAD a PRF is required and integrity is
  forbidden (RFC 5282 §8).
* ESP: an AEAD must not be combined with an integrity algorithm; a DH group means PFS, a
  KE payload in CREATE_CHILD_SA (RFC 7296 §1.3.1); ``esn``/``noesn`` (default ``noesn``).
* AH: integrity only, plus optional DH group and ESN.

AEAD and classic algorithms cannot share a proposal: list them as two proposals.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from ipseclab.crypto import dh as _dh
from ipseclab.crypto import prf as _prf
from ipseclab.crypto import transforms as _tf
from ipseclab.crypto.dh import DhGroup
from ipseclab.crypto.prf import PrfAlgorithm
from ipseclab.crypto.transforms import EncryptionAlgorithm, IntegrityAlgorithm
from ipseclab.errors import ConfigError, UnknownAlgorithm

ProtocolName = Literal["ike", "esp", "ah"]
PROTOCOLS = ("ike", "esp", "ah")

# IANA "Transform Type Values" (RFC 7296 §3.3.2)
TRANSFORM_ENCR = 1
TRANSFORM_PRF = 2
TRANSFORM_INTEG = 3
TRANSFORM_KE = 4
TRANSFORM_ESN = 5

# A transform as the IKE codec sees it: (transform type, transform ID, Key Length attribute)
Transform = tuple[int, int, "int | None"]

_ESN_KEYWORDS = {"esn": True, "noesn": False}

# Our "default" proposals, modelled on strongSwan's: modern algorithms only.
DEFAULT_PROPOSALS: dict[str, str] = {
    "ike": "aes128gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512"
           "-x25519-ecp256-ecp384-modp3072-modp2048,"
           "aes128-aes256-sha256-sha384-sha512-x25519-ecp256-ecp384-modp3072-modp2048",
    "esp": "aes128gcm16-aes256gcm16-chacha20poly1305,aes128-aes256-sha256-sha384-sha512",
    "ah": "sha256-sha384-sha512",
}


def _variable_key_ids() -> frozenset[int]:
    """Encryption IDs that exist in several key sizes carry a Key Length attribute (§3.3.5)."""
    sizes: dict[int, set[int]] = {}
    for alg in _tf.ENCRYPTION.values():
        sizes.setdefault(alg.iana_id, set()).add(alg.key_size)
    return frozenset(i for i, s in sizes.items() if len(s) > 1)


_KEY_LENGTH_IDS = _variable_key_ids()


def _names(items: list) -> str:
    return "-".join(str(i) for i in items)


@dataclass
class Proposal:
    """One proposal: for each transform type the acceptable algorithms, best first."""

    protocol: str
    encryption: list[EncryptionAlgorithm] = field(default_factory=list)
    integrity: list[IntegrityAlgorithm] = field(default_factory=list)
    prf: list[PrfAlgorithm] = field(default_factory=list)
    dh: list[DhGroup] = field(default_factory=list)
    esn: list[bool] = field(default_factory=list)

    @property
    def aead(self) -> bool:
        return bool(self.encryption) and all(a.aead for a in self.encryption)

    @property
    def pfs(self) -> bool:
        """ESP/AH: whether CREATE_CHILD_SA carries a KE payload (RFC 7296 §1.3.1)."""
        return self.protocol != "ike" and bool(self.dh)

    def __str__(self) -> str:
        words = [str(a) for a in (*self.encryption, *self.integrity, *self.prf, *self.dh)]
        if self.esn != [False]:
            words += ["esn" if e else "noesn" for e in self.esn]
        return "-".join(words)

    def validate(self) -> None:
        """Raise ConfigError unless this is a usable proposal for its protocol."""
        where = f"an {self.protocol.upper()} proposal"
        classic = [a for a in self.encryption if not a.aead]
        combined = [a for a in self.encryption if a.aead]
        if combined and classic:
            raise ConfigError(
                f"AEAD algorithm {combined[0]} and classic algorithm {classic[0]} cannot be in"
                " one proposal; write them as two proposals separated by a comma",
                token=str(self))
        if combined and self.integrity:
            raise ConfigError(
                f"AEAD algorithm {combined[0]} cannot be combined with integrity"
                f" {self.integrity[0]} in {where}", token=str(self))
        if self.protocol == "ike":
            self._validate_ike(where)
        elif self.protocol == "esp":
            if not self.encryption:
                raise ConfigError(f"{where} needs an encryption algorithm", token=str(self))
            if self.encryption == [_tf.ENCRYPTION["null"]] and not self.integrity:
                raise ConfigError(f"null encryption without integrity protects nothing in {where}",
                                  token=str(self))
        elif self.protocol == "ah":
            if self.encryption:
                raise ConfigError(f"AH does not encrypt: remove {self.encryption[0]}",
                                  token=str(self))
            if not self.integrity:
                raise ConfigError(f"{where} needs an integrity algorithm", token=str(self))
        if self.protocol != "ike" and self.prf:
            raise ConfigError(f"PRF {self.prf[0]} belongs in IKE proposals, not in {where}",
                              token=str(self))

    def _validate_ike(self, where: str) -> None:
        if not self.encryption:
            raise ConfigError(f"{where} needs an encryption algorithm", token=str(self))
        for alg in self.encryption:
            if not alg.confidential:
                raise ConfigError(f"{alg} does not encrypt and cannot protect IKE messages",
                                  token=str(alg))
        if self.aead and not self.prf:
            raise ConfigError(
                f"AEAD algorithm {self.encryption[0]} in {where} needs a PRF, e.g. prfsha256",
                token=str(self))
        if not self.aead and not self.integrity:
            raise ConfigError(
                f"{self.encryption[0]} in {where} needs an integrity algorithm, e.g. sha256",
                token=str(self))
        if not self.dh:
            raise ConfigError(f"{where} needs a DH group, e.g. x25519", token=str(self))
        if self.esn:
            raise ConfigError(f"esn/noesn belong in ESP/AH proposals, not in {where}",
                              token=str(self))

    def transforms(self) -> list[Transform]:
        """The proposal as SA payload transforms (RFC 7296 §3.3.1), in type order."""
        out: list[Transform] = []
        for alg in self.encryption:
            bits = alg.key_bits if alg.iana_id in _KEY_LENGTH_IDS else None
            out.append((TRANSFORM_ENCR, alg.iana_id, bits))
        out += [(TRANSFORM_PRF, a.iana_id, None) for a in self.prf]
        out += [(TRANSFORM_INTEG, a.iana_id, None) for a in self.integrity]
        out += [(TRANSFORM_KE, g.iana_id, None) for g in self.dh]
        out += [(TRANSFORM_ESN, int(e), None) for e in self.esn]
        return out

    @classmethod
    def from_transforms(cls, protocol: str, transforms: list[Transform]) -> Proposal:
        """Build a proposal from SA payload transforms (a peer's, as the IKE codec decoded them).

        Alternatives we do not implement are dropped (RFC 7296 §3.3.6: the responder just
        does not pick them). If a transform type has only unknown algorithms, no choice could
        ever be made for it, and UnknownAlgorithm is raised. Integrity NONE and KE NONE
        (ID 0) mean "no algorithm of this type". No validation: selection decides.
        """
        proposal = cls(protocol)
        unknown: dict[int, list[int]] = {}
        for ttype, tid, key_bits in transforms:
            found: object = None
            if ttype == TRANSFORM_ENCR:
                found = _tf.encryption_by_id(tid, key_bits)
                if found is not None and key_bits is None and tid in _KEY_LENGTH_IDS:
                    found = None  # RFC 7296 §3.3.5: the Key Length attribute is mandatory here
                target: list = proposal.encryption
            elif ttype == TRANSFORM_PRF:
                found, target = _prf.prf_by_id(tid), proposal.prf
            elif ttype == TRANSFORM_INTEG:
                if tid == 0:
                    continue
                found, target = _tf.integrity_by_id(tid), proposal.integrity
            elif ttype == TRANSFORM_KE:
                if tid == 0:
                    continue
                found, target = _dh.dh_group_by_id(tid), proposal.dh
            elif ttype == TRANSFORM_ESN:
                found, target = {0: False, 1: True}.get(tid), proposal.esn
            else:
                unknown.setdefault(ttype, []).append(tid)
                continue
            if found is None:
                unknown.setdefault(ttype, []).append(tid)
            elif found not in target:
                target.append(found)
        for ttype, ids in unknown.items():
            if ttype not in (TRANSFORM_ENCR, TRANSFORM_PRF, TRANSFORM_INTEG, TRANSFORM_KE,
                             TRANSFORM_ESN) or not _has_known(proposal, ttype):
                raise UnknownAlgorithm(
                    f"no supported algorithm among transform type {ttype} IDs {ids}")
        return proposal


def _has_known(proposal: Proposal, ttype: int) -> bool:
    return bool({TRANSFORM_ENCR: proposal.encryption, TRANSFORM_PRF: proposal.prf,
                 TRANSFORM_INTEG: proposal.integrity, TRANSFORM_KE: proposal.dh,
                 TRANSFORM_ESN: proposal.esn}[ttype])


def _all_keywords() -> list[str]:
    return [*_tf.ENCRYPTION, *_tf.ENCRYPTION_ALIASES, *_tf.INTEGRITY, *_tf.INTEGRITY_ALIASES,
            *_prf.PRF, *_prf.PRF_ALIASES, *_dh.DH_GROUPS, *_dh.DH_ALIASES, *_ESN_KEYWORDS]


def _lookup(word: str, proposal: Proposal) -> tuple[object, list]:
    """The algorithm ``word`` names and the list of ``proposal`` it belongs in."""
    key = word.lower()
    if key in _ESN_KEYWORDS:
        return _ESN_KEYWORDS[key], proposal.esn
    lookups = (
        (_tf.encryption, proposal.encryption),
        (_tf.integrity, proposal.integrity),
        (_prf.prf, proposal.prf),
        (_dh.dh_group, proposal.dh),
    )
    for lookup, target in lookups:
        try:
            return lookup(key), target
        except UnknownAlgorithm:
            pass
    near = difflib.get_close_matches(key, _all_keywords(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise UnknownAlgorithm(f"unknown algorithm keyword '{word}'{hint}", token=word)


def parse_proposal(text: str, protocol: ProtocolName) -> Proposal:
    """Parse one dash-separated proposal and check it (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}', expected ike, esp or ah")
    proposal = Proposal(protocol)
    words = text.strip().split("-")
    if not all(words):
        raise ConfigError(f"empty keyword in proposal '{text.strip()}'", token=text.strip())
    for word in words:
        value, target = _lookup(word, proposal)
        if value not in target:
            target.append(value)
    if protocol == "ike" and not proposal.prf and not proposal.aead:
        for integ in proposal.integrity:
            implied = _prf.PRF[_prf.PRF_FOR_INTEGRITY[integ.keyword]]
            if implied not in proposal.prf:
                proposal.prf.append(implied)
    if protocol != "ike" and not proposal.esn:
        proposal.esn.append(False)
    proposal.validate()
    return proposal


def parse_proposals(text: str, protocol: ProtocolName) -> list[Proposal]:
    """Parse a comma-separated list of proposals; ``default`` expands to DEFAULT_PROPOSALS."""
    proposals: list[Proposal] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"empty proposal in '{text}'", token=text)
        if item.lower() == "default":
            proposals += [parse_proposal(p, protocol)
                          for p in DEFAULT_PROPOSALS[protocol].split(",")]
        else:
            proposals.append(parse_proposal(item, protocol))
    return proposals


def _pick(ours: list, theirs: list) -> list | None:
    """The initiator's first choice that we accept; [] if neither side has this type."""
    if not ours and not theirs:
        return []
    for item in theirs:
        if item in ours:
            return [item]
    return None


def select_proposal(ours: list[Proposal], theirs: list[Proposal]) -> Proposal | None:
    """The responder's choice (RFC 7296 §2.7): the first of the initiator's proposals we
    accept, reduced to one algorithm per transform type; None if none is acceptable
    (the responder then answers NO_PROPOSAL_CHOSEN).
    """
    for their in theirs:
        for our in ours:
            if our.protocol != their.protocol:
                continue
            picks = [_pick(getattr(our, name), getattr(their, name))
                     for name in ("encryption", "integrity", "prf", "dh", "esn")]
            if all(p is not None for p in picks):
                return Proposal(their.protocol, *picks)  # type: ignore[arg-type]
    return None
