"""Reauthentication: a new IKE SA from scratch in place of an old one (RFC 7296 §2.8.3).

Rekeying (CREATE_CHILD_SA) renews keys but never asks the peer to prove itself again; a
revoked certificate or a changed PSK goes unnoticed for as long as rekeys succeed.
Reauthentication runs IKE_SA_INIT and IKE_AUTH anew, recreates every child SA of the old
IKE SA over the new one and deletes the old IKE SA (swanctl's ``reauth_time``). Either side
may do it, whichever began the old IKE SA; it initiates the new one.

Two orders, as strongSwan's ``charon.make_before_break``:

    make-before-break (default): new IKE SA + first child SA (IKE_AUTH), the other child
        SAs (CREATE_CHILD_SA), then Delete(old IKE SA): traffic never lacks an SA.
    break-before-make: Delete(old IKE SA) first, then the new one: simpler for peers that
        cannot hold two IKE SAs with us, at the price of a gap in traffic.

The new IKE_AUTH carries no INITIAL_CONTACT: the peer must not drop the old SAs before we
do (§2.4). It asks for the virtual IPs the old IKE SA had, so a road warrior keeps its
address. If the new IKE SA fails, the old one stays and tries again later; its
``over_time`` still ends it in the end.

Only an initiator can ask for a virtual IP, so a gateway that leased one to its peer
cannot reauthenticate that IKE SA itself. It tells the peer instead (RFC 4478): its
IKE_AUTH response carries N(AUTH_LIFETIME) with its reauth_time, and an initiator that
receives one reauthenticates before then (``over_time`` earlier), as strongSwan does.

A mixin of :class:`ipseclab.ike.ike_sa.IkeSa`, as the exchanges are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipseclab.ike import negotiation
from ipseclab.ike.config import ChildConfig
from ipseclab.ike.constants import NotifyType
from ipseclab.ike.payloads import Notify
from ipseclab.ike.sa_common import State

if TYPE_CHECKING:
    from ipseclab.ike.ike_sa import IkeSa

__all__ = ["RETRY_REAUTH", "Reauthentication"]

RETRY_REAUTH = 10.0  # seconds before a failed reauthentication is tried again


class Reauthentication:
    """Reauthentication for both roles; mixed into :class:`IkeSa`."""

    def reauthenticate(self: IkeSa, now: float) -> bool:
        """Replace this IKE SA by a new one (§2.8.3); False if it cannot be done now.

        The new IKE SA is reported with ``reauthenticates`` naming this one; this one is
        deleted with the reason "reauthenticated".
        """
        config = self.config
        if (config is None or self.state is not State.ESTABLISHED or self._replaced()
                or self._reauth_by is not None):
            return False
        if not self.initiator and self.remote_virtual_ips:
            return False  # the peer would lose its address; AUTH_LIFETIME asked it to do it
        live = [c for c in self.children
                if c.replaced_by is None and c.state in ("installed", "rekeying")]
        configs: list[ChildConfig] = [c.config for c in live]
        self.reauth_at = None
        if not self.engine.make_before_break:
            self._delete_reason = "reauthenticated"
            self.delete(now)
        new = self.engine._start_ike_sa(config, self.local, self.remote,
                                        configs[0] if configs else None, now,
                                        reauthenticates=self)
        new._reauth_children = configs[1:]
        self._reauth_by = new
        return True

    def _auth_lifetime_notify(self: IkeSa) -> list[Notify]:
        """N(AUTH_LIFETIME) for our IKE_AUTH response when we reauthenticate (RFC 4478 §3)."""
        config = self.config
        if config is None or not config.reauth_time:
            return []
        return [Notify(NotifyType.AUTH_LIFETIME, int(config.reauth_time).to_bytes(4, "big"))]

    def _read_auth_lifetime(self: IkeSa, notifies: list[Notify], now: float) -> None:
        """The responder's AUTH_LIFETIME: reauthenticate before it runs out (RFC 4478 §3),
        ``over_time`` (else a tenth of it) earlier, unless we would do so sooner anyway."""
        notify = next((n for n in notifies if n.notify_type == NotifyType.AUTH_LIFETIME
                       and len(n.data) == 4), None)
        config = self.config
        if notify is None or config is None:
            return
        lifetime = int.from_bytes(notify.data, "big")
        margin = min(config.effective_over_time or lifetime / 10, lifetime / 2)
        at = now + max(lifetime - margin, 1.0)
        if self.reauth_at is None or at < self.reauth_at:
            self.reauth_at = at
        if self.life_ends is None or self.life_ends > now + lifetime:
            self.life_ends = now + lifetime  # the peer's AUTH is no longer valid then

    def _reauth_established(self: IkeSa, now: float) -> None:
        """The new IKE SA is up: ask for the old one's other child SAs, then delete it."""
        for config in self._reauth_children:
            self.create_child(config, now)
        self._reauth_children = []
        self._reauth_check(now)

    def _reauth_check(self: IkeSa, now: float) -> None:
        """Once our child SA requests are answered, the old IKE SA goes (make-before-break).
        Its child SAs may have moved to an IKE SA that rekeyed it meanwhile (§2.18)."""
        old = self._reauth_of
        if old is None or self.state is not State.ESTABLISHED or self._child_requests:
            return
        self._reauth_of = None
        holder = old._home()
        holder._reauth_by = None
        if holder.state is State.ESTABLISHED:
            holder._delete_reason = "reauthenticated"
            holder.delete(now)

    def _reauth_failed(self: IkeSa, now: float) -> None:
        """The new IKE SA died before it was established: the old one (if still there)
        tries again after :data:`RETRY_REAUTH` seconds."""
        old = self._reauth_of
        self._reauth_of = None
        if old is None:
            return
        holder = old._home()
        holder._reauth_by = None
        self.engine._touch(holder)  # its reauth_at changes: the engine's timer index
        if holder.state is State.ESTABLISHED:
            holder.reauth_at = now + RETRY_REAUTH + negotiation.jitter(self.engine.rng,
                                                                        RETRY_REAUTH)
