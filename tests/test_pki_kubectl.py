"""The real kubectl with the kubeconfig podnet renders, against a TLS server holding the
cluster's apiserver.crt and asking for a client certificate from the cluster CA: kubectl
trusts the server (CA, the 127.0.0.1 SAN, ECDSA P-256), presents the admin certificate, and a
kubeconfig of another cluster's CA is refused. No root, no cluster: the server answers /version."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from podnet.pki.authority import ClusterCredentials
from podnet.pki.kubeconfig import dump, render

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")

VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64"}


class VersionOnly(BaseHTTPRequestHandler):
    clients: list[dict] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        subject = dict(x[0] for x in self.connection.getpeercert()["subject"])
        VersionOnly.clients.append(subject)
        body = json.dumps(VERSION).encode() if self.path.startswith("/version") else b"{}"
        self.send_response(200 if self.path.startswith("/version") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(credentials, port) of a /version server with the cluster's serving certificate."""
    credentials = ClusterCredentials(tmp_path / "pki")
    credentials.ensure(["127.0.0.1", "10.96.0.1"], ["localhost", "kubernetes"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(credentials.server_cert_path, credentials.server_key_path)
    context.load_verify_locations(credentials.ca_path)
    context.verify_mode = ssl.CERT_REQUIRED
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), VersionOnly)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    VersionOnly.clients = []
    yield credentials, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def kubectl(tmp_path, config: dict, *argv: str):
    path = tmp_path / "kubeconfig"
    path.write_text(dump(config))
    return subprocess.run(["kubectl", "--kubeconfig", str(path), "--request-timeout=20s", *argv],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})


def test_kubectl_trusts_the_server_and_presents_the_admin_certificate(server, tmp_path):
    credentials, port = server
    config = render("demo", f"https://127.0.0.1:{port}", credentials.ca_path.read_bytes(),
                    credentials.admin_cert_path.read_bytes(), credentials.admin_key_path.read_bytes())
    result = kubectl(tmp_path, config, "version", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["serverVersion"]["gitVersion"] == "v1.32.4"
    assert {"commonName": "kubernetes-admin", "organizationName": "system:masters"} in VersionOnly.clients


def test_kubectl_refuses_a_server_its_ca_did_not_sign(server, tmp_path):
    _, port = server
    other = ClusterCredentials(tmp_path / "other")
    other.ensure(["127.0.0.1"], ["localhost"])
    config = render("demo", f"https://127.0.0.1:{port}", other.ca_path.read_bytes(),
                    other.admin_cert_path.read_bytes(), other.admin_key_path.read_bytes())
    result = kubectl(tmp_path, config, "version", "-o", "json")
    assert result.returncode != 0
    assert "certificate signed by unknown authority" in result.stderr
    assert VersionOnly.clients == []
