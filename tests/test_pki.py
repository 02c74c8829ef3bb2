"""The cluster CA and its certificates (podnet.pki.authority): what they say, that TLS accepts
them, and that `ensure` keeps what is valid and remakes only what is not."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from podnet.pki.authority import ClusterCredentials, certificate_user
from podnet.pki.files import atomic_write

IPS = ["127.0.0.1", "192.168.1.11", "10.96.0.1"]
NAMES = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
         "kubernetes.default.svc.cluster.local"]
FILES = ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key", "sa.key", "sa.pub")


@pytest.fixture
def credentials(tmp_path):
    made = ClusterCredentials(tmp_path / "pki")
    made.ensure(IPS, NAMES)
    return made


def cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def contents(credentials) -> dict[str, bytes]:
    return {name: (credentials.directory / name).read_bytes() for name in FILES}


def test_every_file_is_there_readable_by_root_alone(credentials):
    assert stat.S_IMODE(credentials.directory.stat().st_mode) == 0o700
    for name in FILES:
        assert stat.S_IMODE((credentials.directory / name).stat().st_mode) == 0o600, name
    assert not [p.name for p in credentials.directory.iterdir() if p.name.endswith(".tmp")]


def test_the_ca_is_kubeadms_ten_year_ca(credentials):
    ca = cert(credentials.ca_path)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes"
    assert ca.subject == ca.issuer
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert 3649 <= lifetime.days <= 3651
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"


def test_the_server_certificate_names_what_it_is_reached_by(credentials):
    server = cert(credentials.server_cert_path)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(NAMES)
    assert sorted(map(str, san.get_values_for_type(x509.IPAddress))) == sorted(IPS)
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert 364 <= (server.not_valid_after_utc - server.not_valid_before_utc).days <= 366
    server.verify_directly_issued_by(cert(credentials.ca_path))


def test_the_admin_is_in_system_masters(credentials):
    admin = cert(credentials.admin_cert_path)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes-admin"
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert list(admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    admin.verify_directly_issued_by(cert(credentials.ca_path))


def test_the_service_account_key_is_rsa_2048(credentials):
    key = serialization.load_pem_private_key(credentials.sa_key_path.read_bytes(), None)
    public = serialization.load_pem_public_key(credentials.sa_pub_path.read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert public.public_numbers() == key.public_key().public_numbers()


def handshake(credentials, server_hostname: str, client_cert: bool = True, optional: bool = False) -> dict:
    """A TLS server with apiserver.crt requiring a client certificate from the CA, and a client
    trusting ca.crt that checks `server_hostname`: what each side saw (the client's subject as
    the server read it, or the error each side raised)."""
    if optional:  # the API server's own context
        server_context = credentials.server_ssl_context()
    else:
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(credentials.server_cert_path, credentials.server_key_path)
        server_context.load_verify_locations(credentials.ca_path)
        server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context(cafile=str(credentials.ca_path))
    if client_cert:
        client_context.load_cert_chain(credentials.admin_cert_path, credentials.admin_key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    seen = {}

    def serve():
        conn, _ = listener.accept()
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                seen["user"] = certificate_user(tls.getpeercert())
                if tls.getpeercert():
                    seen["peer"] = dict(x[0] for x in tls.getpeercert()["subject"])
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as error:
            seen["server error"] = error

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as raw, \
                client_context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            seen["answer"] = tls.recv(2)
    except (ssl.SSLError, OSError) as error:
        seen["client error"] = error
    thread.join(10)
    listener.close()
    return seen


@pytest.mark.parametrize("name", ["127.0.0.1", "10.96.0.1", "kubernetes.default.svc", "localhost"])
def test_tls_with_the_server_certificate_and_the_admin_client_certificate(credentials, name):
    """The handshake succeeds by every name the API server is reached by, and the server sees
    kubernetes-admin in system:masters."""
    seen = handshake(credentials, name)
    assert seen.get("answer") == b"ok", seen
    assert seen["peer"] == {"commonName": "kubernetes-admin", "organizationName": "system:masters"}


def test_a_name_the_certificate_does_not_carry_is_refused(credentials):
    seen = handshake(credentials, "example.com")
    assert isinstance(seen.get("client error"), ssl.SSLCertVerificationError), seen
    assert "peer" not in seen


def test_a_client_without_a_certificate_is_refused_when_one_is_required(credentials):
    seen = handshake(credentials, "127.0.0.1", client_cert=False)
    assert "peer" not in seen and ("server error" in seen or "client error" in seen), seen


def test_the_api_servers_context_takes_a_certificate_or_none(credentials):
    """Client certificates are optional at the handshake (tokens need none); one that is given
    names its user and groups as kube-apiserver's x509 authenticator does."""
    with_cert = handshake(credentials, "127.0.0.1", optional=True)
    assert with_cert.get("answer") == b"ok", with_cert
    assert with_cert["user"] == ("kubernetes-admin", ("system:masters", "system:authenticated"))
    without = handshake(credentials, "127.0.0.1", client_cert=False, optional=True)
    assert without.get("answer") == b"ok" and without["user"] is None, without


def test_a_client_certificate_from_another_ca_fails_the_handshake(credentials, tmp_path):
    other = ClusterCredentials(tmp_path / "other")
    other.ensure(IPS, NAMES)
    foreign = ClusterCredentials(credentials.directory)
    foreign.admin_cert_path, foreign.admin_key_path = other.admin_cert_path, other.admin_key_path
    seen = handshake(foreign, "127.0.0.1", optional=True)
    assert "user" not in seen and "answer" not in seen, seen


@pytest.mark.parametrize("peercert, user", [
    (None, None),
    ({}, None),
    ({"subject": ((("organizationName", "devs"),),)}, None),
    ({"subject": ((("commonName", "jane"),),)}, ("jane", ("system:authenticated",))),
    ({"subject": ((("organizationName", "a"),), (("organizationName", "b"),), (("commonName", "bob"),))},
     ("bob", ("a", "b", "system:authenticated"))),
])
def test_certificate_user(peercert, user):
    assert certificate_user(peercert) == user


def test_ensure_again_changes_nothing(credentials):
    before = contents(credentials)
    credentials.ensure(list(reversed(IPS)), list(reversed(NAMES)))  # the same SANs, in another order
    ClusterCredentials(credentials.directory).ensure(IPS, NAMES)
    assert contents(credentials) == before


def test_other_sans_remake_the_server_certificate_alone(credentials):
    before = contents(credentials)
    credentials.ensure([*IPS, "192.168.1.12"], NAMES)
    after = contents(credentials)
    assert {name for name in FILES if before[name] != after[name]} == {"apiserver.crt", "apiserver.key"}
    san = cert(credentials.server_cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.168.1.12") in san.get_values_for_type(x509.IPAddress)


def test_a_lost_ca_key_remakes_everything_it_signed(credentials):
    before = contents(credentials)
    credentials.ca_key_path.unlink()
    credentials.ensure(IPS, NAMES)
    after = contents(credentials)
    changed = {name for name in FILES if before[name] != after[name]}
    assert changed == {"ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key"}
    cert(credentials.server_cert_path).verify_directly_issued_by(cert(credentials.ca_path))
    cert(credentials.admin_cert_path).verify_directly_issued_by(cert(credentials.ca_path))


@pytest.mark.parametrize("damage", ["missing key", "foreign key", "truncated certificate"])
def test_a_broken_pair_is_made_again(credentials, damage):
    """What a kill between writing a key and its certificate (or a stray edit) can leave."""
    before = contents(credentials)
    if damage == "missing key":
        credentials.admin_key_path.unlink()
    elif damage == "foreign key":
        atomic_write(credentials.admin_key_path, credentials.server_key_path.read_bytes())
    else:
        atomic_write(credentials.admin_cert_path, credentials.admin_cert_path.read_bytes()[:100])
    credentials.ensure(IPS, NAMES)
    after = contents(credentials)
    assert {name for name in FILES if before[name] != after[name]} == {"admin.crt", "admin.key"}
    admin = cert(credentials.admin_cert_path)
    admin.verify_directly_issued_by(cert(credentials.ca_path))
    key = serialization.load_pem_private_key(credentials.admin_key_path.read_bytes(), None)
    assert key.public_key().public_numbers() == admin.public_key().public_numbers()


def test_a_lost_public_key_is_derived_again_from_the_private_one(credentials):
    key_before = credentials.sa_key_path.read_bytes()
    pub_before = credentials.sa_pub_path.read_bytes()
    credentials.sa_pub_path.unlink()
    credentials.ensure(IPS, NAMES)
    assert credentials.sa_key_path.read_bytes() == key_before
    assert credentials.sa_pub_path.read_bytes() == pub_before


def test_a_certificate_signed_by_another_ca_is_replaced(credentials, tmp_path):
    other = ClusterCredentials(tmp_path / "other")
    other.ensure(IPS, NAMES)
    atomic_write(credentials.server_key_path, other.server_key_path.read_bytes())
    atomic_write(credentials.server_cert_path, other.server_cert_path.read_bytes())
    credentials.ensure(IPS, NAMES)
    cert(credentials.server_cert_path).verify_directly_issued_by(cert(credentials.ca_path))
    assert credentials.server_cert_path.read_bytes() != other.server_cert_path.read_bytes()


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "key"
    atomic_write(target, b"old")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_atomic_write_makes_the_file_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        atomic_write(tmp_path / "k", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
