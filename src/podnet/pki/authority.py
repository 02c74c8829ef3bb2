"""A cluster's certificate authority and the credentials it signs, laid out as kubeadm lays them.

Files (kubeadm's names, in layout.pki_dir, each 0600 in a 0700 directory): `ca.crt`/`ca.key`
(the cluster CA, 10 years, as kubeadm's), `apiserver.crt`/`apiserver.key` (the API server's
serving certificate, 1 year, with the SANs it is reached by), `admin.crt`/`admin.key` (the
client certificate of the kubeconfig `up` hands out: CN kubernetes-admin, O system:masters,
1 year), `sa.key`/`sa.pub` (the key ServiceAccount tokens are signed with).

Key types: the certificates use ECDSA P-256 — a key takes well under a millisecond to make
(an RSA 2048 key takes tens to hundreds: `up` makes three), handshakes are cheaper, and kubeadm
offers it (`encryptionAlgorithm: ECDSA-P256`); kubectl, client-go, Python's ssl and curl all
accept it. The ServiceAccount key is RSA 2048, because the tokens are RS256 as Kubernetes signs
them, which is what clients and OIDC discovery consumers expect.

`ensure` is idempotent and crash-safe: each file is written to a temporary name and renamed
(a kill leaves the old file or the new, never half of one), keys before their certificates,
and everything found is checked rather than trusted — a certificate whose key is missing or
does not match, that the CA did not sign, that has expired, or (the API server's) whose SANs
differ from those asked for is made again; a new CA makes everything it signed again. Nothing
valid is ever replaced, so a restarted supervisor keeps the kubeconfigs and tokens it gave out.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from podnet.pki.files import atomic_write

CA_LIFETIME = datetime.timedelta(days=3650)  # kubeadm's CA: 10 years
LEAF_LIFETIME = datetime.timedelta(days=365)  # kubeadm's certificates: 1 year
# kubeadm backdates NotBefore (CertificateBackdate) so a client whose clock lags a little
# does not refuse a certificate made a moment ago
BACKDATE = datetime.timedelta(minutes=5)
CA_NAME = "kubernetes"  # kubeadm's CA subject
APISERVER_NAME = "kube-apiserver"
ADMIN_USER, ADMIN_GROUP = "kubernetes-admin", "system:masters"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def self_signed_ca(name: x509.Name, not_before: datetime.datetime, not_after: datetime.datetime, *,
                   key_encipherment: bool, crl_sign: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new ECDSA P-256 key and its self-signed CA certificate (the cluster's CA, the mesh's
    root): `key_encipherment` and `crl_sign` as each one's upstream sets them."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=key_encipherment, key_cert_sign=True,
                                         content_commitment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=crl_sign, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_der(holder) -> bytes:
    """The DER public key of a private key or a certificate (to see whether they belong together)."""
    return holder.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class ClusterCredentials:
    """The CA, the API server's and the admin's certificates and the ServiceAccount key of
    one cluster, in `directory` (layout.pki_dir)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.ca_path = self.directory / "ca.crt"
        self.ca_key_path = self.directory / "ca.key"
        self.server_cert_path = self.directory / "apiserver.crt"
        self.server_key_path = self.directory / "apiserver.key"
        self.admin_cert_path = self.directory / "admin.crt"
        self.admin_key_path = self.directory / "admin.key"
        self.sa_key_path = self.directory / "sa.key"
        self.sa_pub_path = self.directory / "sa.pub"

    # -- making them ----------------------------------------------------------------------------

    def ensure(self, server_ips: list[str], server_names: list[str]) -> None:
        """Every credential, made if missing or no longer right (see the module's docstring);
        the API server's certificate names exactly `server_ips` and `server_names`."""
        ips = sorted({ipaddress.ip_address(ip) for ip in server_ips}, key=lambda a: (a.version, int(a)))
        names = sorted(set(server_names))
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        with self._locked():
            ca, ca_key, ca_new = self._ensure_ca()
            self._ensure_leaf(self.server_cert_path, self.server_key_path, ca, ca_key, renew=ca_new,
                              subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, APISERVER_NAME)]),
                              usage=ExtendedKeyUsageOID.SERVER_AUTH, ips=ips, names=names)
            self._ensure_leaf(self.admin_cert_path, self.admin_key_path, ca, ca_key, renew=ca_new,
                              subject=x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ADMIN_GROUP),
                                                 x509.NameAttribute(NameOID.COMMON_NAME, ADMIN_USER)]),
                              usage=ExtendedKeyUsageOID.CLIENT_AUTH)
            self._ensure_service_account_key()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One `ensure` at a time per directory (a supervisor and its restarted successor)."""
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ensure_ca(self):
        """(certificate, key, whether it was made now)."""
        found = self._load_pair(self.ca_path, self.ca_key_path)
        if found is not None:
            cert, key = found
            if cert.subject == cert.issuer and _valid_now(cert) and _is_ca(cert):
                return cert, key, False
        now = _now()
        cert, key = self_signed_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)]),
                                   now - BACKDATE, now + CA_LIFETIME, key_encipherment=True, crl_sign=False)
        atomic_write(self.ca_key_path, _key_pem(key))
        atomic_write(self.ca_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert, key, True

    def _ensure_leaf(self, cert_path: Path, key_path: Path, ca, ca_key, *, renew: bool, subject: x509.Name,
                     usage, ips: list | None = None, names: list[str] | None = None) -> None:
        found = None if renew else self._load_pair(cert_path, key_path)
        if found is not None:
            cert, _ = found
            if (cert.subject == subject and _valid_now(cert) and _issued_by(cert, ca)
                    and _sans(cert) == (ips or [], names or [])):
                return
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (x509.CertificateBuilder()
                   .subject_name(subject).issuer_name(ca.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - BACKDATE).not_valid_after(now + LEAF_LIFETIME)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if ips or names:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names or []] + [x509.IPAddress(ip) for ip in ips or []]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        atomic_write(key_path, _key_pem(key))
        atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))

    def _ensure_service_account_key(self) -> None:
        key = _load_key(self.sa_key_path)
        if not isinstance(key, rsa.RSAPrivateKey):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            atomic_write(self.sa_key_path, _key_pem(key))
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        try:
            if self.sa_pub_path.read_bytes() == public:
                return
        except OSError:
            pass
        atomic_write(self.sa_pub_path, public)

    def _load_pair(self, cert_path: Path, key_path: Path):
        """(certificate, key) if both are there, readable and belong together; else None."""
        key = _load_key(key_path)
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError):
            return None
        if key is None or _public_der(key) != _public_der(cert):
            return None
        return cert, key

    # -- using them -----------------------------------------------------------------------------

    def ca_pem(self) -> bytes:
        return self.ca_path.read_bytes()

    def server_ssl_context(self) -> ssl.SSLContext:
        """The API server's TLS: its certificate, and client certificates checked against the
        CA when offered (optional: ServiceAccount tokens authenticate without one, and a
        request with neither is refused by the server, not by the handshake)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.server_cert_path, self.server_key_path)
        context.load_verify_locations(self.ca_path)
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


def certificate_user(peercert: dict | None) -> tuple[str, tuple[str, ...]] | None:
    """Who a verified client certificate (ssl's getpeercert()) authenticates, as
    kube-apiserver's x509 authenticator says it: the user is the subject's CN, its groups the
    O values, plus system:authenticated; None without a certificate or a CN."""
    if not peercert:
        return None
    attributes = [pair for rdn in peercert.get("subject", ()) for pair in rdn]
    names = [value for key, value in attributes if key == "commonName"]
    if not names or not names[0]:
        return None
    groups = tuple(value for key, value in attributes if key == "organizationName")
    return names[0], (*groups, "system:authenticated")


def _load_key(path: Path):
    """The private key in `path`, or None. RSA keys are not re-validated (a 2048-bit key's
    checks take ~25 ms): these are the cluster's own files, 0600, written by `ensure` itself."""
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None,
                                                  unsafe_skip_rsa_key_validation=True)
    except (OSError, ValueError, TypeError):
        return None


def _valid_now(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now + BACKDATE and now < cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _sans(cert: x509.Certificate) -> tuple[list, list[str]]:
    """(IP addresses, DNS names) the certificate names, sorted as `ensure` sorts them."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = sorted(san.get_values_for_type(x509.IPAddress), key=lambda a: (a.version, int(a)))
    return ips, sorted(san.get_values_for_type(x509.DNSName))
