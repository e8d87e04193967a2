"""The lab PKI hook: ``options: {pki: lab}`` on a gateway whose swanctl.conf uses certificates.

No private key is checked in: the first gateway of a run that asks for it makes the lab PKI
(:func:`ipseclab.ike.testpki.make_lab_pki`: a root CA, ``moon`` RSA-3072, ``sun`` and
``carol`` ECDSA P-256) in ``RUN/pki``, and every such gateway gets a directory of its own with
its swanctl.conf and strongSwan's layout beside it (``x509ca/``, ``x509/``, ``private/``),
which both ``ipseclab gateway --swanctl`` and ``swanctl --load-all`` read. The CA's own key
stays in ``RUN/pki``: a gateway needs only the CA certificate.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ipseclab.ike.testpki import make_lab_pki

__all__ = ["lab_pki", "swanctl_with_lab_pki"]

CA_KEY = "caKey.pem"


def lab_pki(run_dir: Path) -> Path:
    """``RUN/pki``, made on first use (one CA per run, shared by all its gateways)."""
    pki = Path(run_dir) / "pki"
    if not (pki / "x509ca" / "caCert.pem").is_file():
        make_lab_pki(pki)
    return pki


def swanctl_with_lab_pki(conf: Path, workdir: Path, run_dir: Path) -> Path:
    """A copy of ``conf`` in ``workdir/swanctl`` with the lab PKI beside it; its path."""
    pki = lab_pki(run_dir)
    target = Path(workdir) / "swanctl"
    for sub in ("x509ca", "x509", "private"):
        (target / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((pki / sub).iterdir()):
            if path.name != CA_KEY:
                shutil.copyfile(path, target / sub / path.name)
                if sub == "private":
                    (target / sub / path.name).chmod(0o600)
    copy = target / "swanctl.conf"
    shutil.copyfile(conf, copy)
    copy.chmod(0o600)
    return copy
