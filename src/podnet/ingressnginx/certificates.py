"""The certificates nginx serves: kubernetes.io/tls Secrets by SNI, a self-signed default otherwise.

ingress-nginx writes each Secret's `tls.crt` and `tls.key` into one PEM file per Secret and
serves it for the hosts of the Ingress `tls` entry that names it; a host without one (or whose
Secret is missing, lacks a key, or holds a certificate that does not match its key) gets the
controller's "Kubernetes Ingress Controller Fake Certificate", and the problem is reported.
A Secret is checked here with the ssl module (certificate and key must load as a pair) before
nginx sees it, because one bad PEM would make nginx refuse the whole configuration.

The default certificate is generated with the openssl command (a Debian package the Makefile
installs), not a Python dependency: it is made once per controller and never parsed again.
"""

from __future__ import annotations

import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from podnet.api import fields
from podnet.semantics.ingress import IngressController

FAKE_CERTIFICATE_SUBJECT = "/O=Acme Co/CN=Kubernetes Ingress Controller Fake Certificate"
TLS_CERT, TLS_KEY = "tls.crt", "tls.key"


@dataclass(frozen=True)
class Certificates:
    files: dict[str, Path]       # "ns/secret" → PEM (certificate chain, then key)
    problems: list[str]          # one line per Secret nginx cannot use (the default is served)


def default_certificate(directory: Path, openssl: str = "openssl") -> Path:
    """The controller's self-signed certificate (and key) in one PEM, generated once."""
    pem = directory / "default-fake-certificate.pem"
    if pem.exists():
        return pem
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="podnet-cert-") as tmp:
        crt, key = Path(tmp) / "crt.pem", Path(tmp) / "key.pem"
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "3650", "-subj", FAKE_CERTIFICATE_SUBJECT,
                        "-addext", "subjectAltName=DNS:ingress.local", "-keyout", str(key), "-out", str(crt)],
                       check=True, capture_output=True, timeout=60)
        partial = pem.with_suffix(".tmp")
        partial.write_bytes(crt.read_bytes() + key.read_bytes())
        partial.chmod(0o600)
        partial.replace(pem)
    return pem


def secret_certificates(controller: IngressController, directory: Path) -> Certificates:
    """Write the PEM of every TLS Secret a server names; report those nginx cannot use."""
    files: dict[str, Path] = {}
    problems: list[str] = []
    refs = sorted({s.tls_secret for s in controller.servers() if s.tls_secret})
    for ref in refs:
        namespace, _, name = ref.partition("/")
        secret = controller.cluster.get("Secret", namespace, name)
        if secret is None:
            problems.append(f"Secret {ref} does not exist: the default certificate is served")
            continue
        pem, problem = _pem_of(secret.body)
        if problem is not None:
            problems.append(f"Secret {ref}: {problem}: the default certificate is served")
            continue
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{namespace}-{name}.pem"
        problem = _checked_write(path, pem)
        if problem is not None:
            problems.append(f"Secret {ref}: {problem}: the default certificate is served")
            continue
        files[ref] = path
    return Certificates(files, problems)


def _pem_of(body: dict) -> tuple[bytes, str | None]:
    parts: list[bytes] = []
    for key in (TLS_CERT, TLS_KEY):
        try:
            value = fields.secret_value(body, key)
        except ValueError as exc:
            return b"", str(exc)
        if value is None:
            return b"", f"no {key}"
        parts.append(value)
    crt, key = parts
    return crt.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n", None


def _checked_write(path: Path, pem: bytes) -> str | None:
    """Write `pem` if the ssl module loads it as a certificate with its key, else say why not."""
    partial = path.with_suffix(".tmp")
    partial.write_bytes(pem)
    partial.chmod(0o600)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(partial))
    except ssl.SSLError as exc:
        partial.unlink()
        return f"tls.crt and tls.key do not load as a certificate and its key ({exc.reason or exc})"
    partial.replace(path)
    return None
