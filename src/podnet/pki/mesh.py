"""The service mesh's certificate authority: each proxy's identity as a short-lived certificate.

As istiod's CA: a self-signed root (`root-cert.pem`/`ca-key.pem` in the mesh's directory, 10
years, created once and kept: every proxy trusts it) signs, for each workload, a certificate
whose only name is its SPIFFE id, a URI SAN marked critical, with an empty subject, usable as
client and server (mutual TLS), 24 hours long and backdated 2 minutes for clocks that lag;
a proxy renews it once half of its life is gone (istio-agent's SECRET_GRACE_PERIOD_RATIO 0.5),
so no request meets an expired one.

Key type: ECDSA P-256 (Istio's ECC_SIGNATURE_ALGORITHM=ECDSA): a key takes ~50 µs to make where
Istio's default RSA 2048 takes tens of milliseconds, which is what lets 1,000 pods get theirs
in well under a second (bench/mesh_ca.py measures both), and Envoy (BoringSSL) accepts it.
The workload keys live only in memory and in the proxy's files; this module writes only the
root.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from podnet.pki.authority import self_signed_ca
from podnet.pki.files import atomic_write

ROOT_LIFETIME = datetime.timedelta(days=3650)
WORKLOAD_LIFETIME = datetime.timedelta(hours=24)  # istio-agent's SECRET_TTL
BACKDATE = datetime.timedelta(minutes=2)  # Istio's clock-skew grace
RENEW_AT = 0.5  # of a certificate's life gone: renewed (SECRET_GRACE_PERIOD_RATIO)
ROOT_CERT, ROOT_KEY = "root-cert.pem", "ca-key.pem"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class Svid:
    """A workload's identity document: its certificate (PEM), its key (PEM), its SPIFFE id, and
    when it stops being valid and when it is due for renewal."""
    spiffe_id: str
    cert_pem: bytes
    key_pem: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime

    def renewal_due(self, now: datetime.datetime | None = None) -> bool:
        now = now or _now()
        return now >= self.not_before + (self.not_after - self.not_before) * RENEW_AT


KEY_TYPES = ("ecdsa-p256", "rsa-2048")  # podnet's default, and istio-agent's


def new_key(key_type: str):
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


class MeshAuthority:
    def __init__(self, directory: Path, trust_domain: str = "cluster.local", key_type: str = "ecdsa-p256"):
        if key_type not in KEY_TYPES:
            raise ValueError(f"key type {key_type}: one of {', '.join(KEY_TYPES)}")
        self.directory, self.trust_domain, self.key_type = directory, trust_domain, key_type
        self._root: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None

    @property
    def root_pem(self) -> bytes:
        return self._ensure_root()[0].public_bytes(serialization.Encoding.PEM)

    def _ensure_root(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The root, read once (made the first time, and again if it is not whole or has expired)."""
        if self._root is not None:
            return self._root
        cert_path, key_path = self.directory / ROOT_CERT, self.directory / ROOT_KEY
        try:  # (a file that cannot be read for another reason than its absence is an error, not a new root)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if cert.public_key().public_numbers() != key.public_key().public_numbers() or cert.not_valid_after_utc <= _now():
                raise ValueError("the root and its key do not go together, or it has expired")
        except (FileNotFoundError, ValueError):
            cert, key = self._make_root()
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
            atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        self._root = (cert, key)
        return self._root

    def _make_root(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        now = _now()
        return self_signed_ca(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain)]),
                              now - BACKDATE, now + ROOT_LIFETIME, key_encipherment=False, crl_sign=True)

    def issue(self, spiffe_id: str, now: datetime.datetime | None = None,
              lifetime: datetime.timedelta = WORKLOAD_LIFETIME) -> Svid:
        """A new key and certificate for the workload `spiffe_id` (spiffe://TD/ns/N/sa/S)."""
        if not spiffe_id.startswith(f"spiffe://{self.trust_domain}/"):
            raise ValueError(f"{spiffe_id}: not an identity of trust domain {self.trust_domain}")
        root, root_key = self._ensure_root()
        key = new_key(self.key_type)
        now = now or _now()
        not_before, not_after = now - BACKDATE, min(now + lifetime, root.not_valid_after_utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([])).issuer_name(root.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                             key_agreement=False, content_commitment=False, data_encipherment=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
                .sign(root_key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return Svid(spiffe_id, cert.public_bytes(serialization.Encoding.PEM), key_pem, not_before, not_after)


def identity_of(cert_pem: bytes) -> str | None:
    """The SPIFFE id a workload certificate names (its one URI SAN), or None."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if len(uris) == 1 and uris[0].startswith("spiffe://") else None
