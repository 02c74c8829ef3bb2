"""The mesh CA (pki/mesh.py): SPIFFE workload certificates as istiod issues them, verified
with the real TLS stack: two workloads' certificates make a mutual TLS 1.3 handshake in which
each side sees the other's identity."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from podnet.pki.mesh import BACKDATE, WORKLOAD_LIFETIME, MeshAuthority, identity_of

WEB = "spiffe://cluster.local/ns/frontend/sa/web"
API = "spiffe://cluster.local/ns/shop/sa/api"


def test_a_workload_certificate_names_only_its_spiffe_id_and_lasts_a_day(tmp_path):
    authority = MeshAuthority(tmp_path / "mesh")
    now = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.timezone.utc)
    svid = authority.issue(WEB, now=now)
    cert = x509.load_pem_x509_certificate(svid.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [WEB]
    assert list(cert.subject) == [] and identity_of(svid.cert_pem) == WEB
    assert cert.not_valid_before_utc == now - BACKDATE and cert.not_valid_after_utc == now + WORKLOAD_LIFETIME
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    root = x509.load_pem_x509_certificate(authority.root_pem)
    cert.verify_directly_issued_by(root)
    # renewed once half of its life is gone, before it expires
    assert not svid.renewal_due(now + datetime.timedelta(hours=11))
    assert svid.renewal_due(now + datetime.timedelta(hours=12))
    with pytest.raises(ValueError, match="trust domain"):
        authority.issue("spiffe://elsewhere/ns/a/sa/b")


def test_the_root_is_kept_and_made_again_only_when_it_cannot_be_used(tmp_path):
    first = MeshAuthority(tmp_path / "mesh").root_pem
    assert MeshAuthority(tmp_path / "mesh").root_pem == first  # read back, not made again
    assert oct((tmp_path / "mesh" / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    (tmp_path / "mesh" / "ca-key.pem").write_bytes(b"not a key")
    assert MeshAuthority(tmp_path / "mesh").root_pem != first


def _serve_once(context: ssl.SSLContext, listener: socket.socket, seen: dict) -> None:
    conn, _ = listener.accept()
    with context.wrap_socket(conn, server_side=True) as tls:
        seen["server saw"] = identity_of(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode())
        seen["version"] = tls.version()
        tls.sendall(b"ok")


def test_two_workloads_make_a_mutual_tls_handshake_and_see_each_others_identity(tmp_path):
    authority = MeshAuthority(tmp_path / "mesh")
    root = tmp_path / "root.pem"
    root.write_bytes(authority.root_pem)
    paths = {}
    for name, identity in (("web", WEB), ("api", API)):
        svid = authority.issue(identity)
        (tmp_path / f"{name}.crt").write_bytes(svid.cert_pem)
        (tmp_path / f"{name}.key").write_bytes(svid.key_pem)
        paths[name] = (tmp_path / f"{name}.crt", tmp_path / f"{name}.key")

    def context(purpose, name):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose == "server" else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(*paths[name])
        ctx.load_verify_locations(root)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = False  # identities are SPIFFE ids, checked as such, not host names
        return ctx

    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict = {}
    server = threading.Thread(target=_serve_once, args=(context("server", "api"), listener, seen))
    server.start()
    with socket.create_connection(listener.getsockname()) as raw:
        with context("client", "web").wrap_socket(raw) as tls:
            client_saw = identity_of(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode())
            assert tls.recv(2) == b"ok"
    server.join(60)
    listener.close()
    assert (client_saw, seen["server saw"], seen["version"]) == (API, WEB, "TLSv1.3")


def test_a_certificate_from_another_root_is_refused(tmp_path):
    ours, theirs = MeshAuthority(tmp_path / "ours"), MeshAuthority(tmp_path / "theirs")
    stranger = theirs.issue(WEB)
    with pytest.raises(InvalidSignature):  # (the same subject, another key)
        x509.load_pem_x509_certificate(stranger.cert_pem).verify_directly_issued_by(
            x509.load_pem_x509_certificate(ours.root_pem))


def test_istios_default_rsa_keys_can_be_asked_for(tmp_path):
    svid = MeshAuthority(tmp_path / "mesh", key_type="rsa-2048").issue(WEB)
    assert x509.load_pem_x509_certificate(svid.cert_pem).public_key().key_size == 2048
    with pytest.raises(ValueError, match="key type"):
        MeshAuthority(tmp_path / "mesh", key_type="dsa")
