"""ServiceAccount tokens, shaped as Kubernetes' bound (projected) tokens and checked as its
authenticator checks them.

A token is a JWT signed RS256 with the cluster's sa.key (header `kid`: the unpadded base64url
SHA-256 of the public key's DER, as kube-apiserver derives it), with the claims a token kubelet
requests for a pod carries:

    iss  https://kubernetes.default.svc.cluster.local     sub  system:serviceaccount:<ns>:<sa>
    aud  [https://kubernetes.default.svc.cluster.local]    exp/iat/nbf, jti
    kubernetes.io: {namespace, serviceaccount: {name, uid}, pod: {name, uid}, node: {name, uid}}

Lifetime: 3607 s, what kubelet asks for (kube-apiserver would stretch it to a year with a
`warnafter` claim, --service-account-extend-token-expiration; podnet keeps tokens short, and
kubelet's side refreshes them at 80% of their life). `verify_token` checks the signature, that
the header says RS256 (so neither `none` nor an HMAC keyed with the public key can pass), the
issuer, the audience, exp and nbf with go-jose's one-minute leeway (jwt.DefaultLeeway, what
kube-apiserver's validator uses) and the subject's shape. Whether the pod the token is bound
to still exists is the API server's question (TokenIdentity carries its name and uid).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCES = (ISSUER,)  # kube-apiserver's --api-audiences default to its issuer
LIFETIME = 3607  # seconds: kubelet's request for a projected token (expirationSeconds)
LEEWAY = 60  # seconds of clock skew allowed on exp and nbf (go-jose's DefaultLeeway)
SUBJECT_PREFIX = "system:serviceaccount:"
ALL_SERVICE_ACCOUNTS = "system:serviceaccounts"
AUTHENTICATED = "system:authenticated"
EXTRA = "authentication.kubernetes.io/"  # the user's extra keys kube-apiserver sets from the claims


class InvalidToken(Exception):
    """The token is not one this cluster accepts; the message says why (for the log: clients
    are told only 401 Unauthorized)."""


@dataclass(frozen=True)
class TokenIdentity:
    """Who a valid token authenticates, as kube-apiserver's ServiceAccount authenticator says it."""
    namespace: str
    service_account: str
    service_account_uid: str = ""
    pod_name: str | None = None
    pod_uid: str | None = None
    node_name: str | None = None
    node_uid: str | None = None
    token_id: str | None = None  # the jti claim
    expires: int = 0  # the exp claim (seconds since the epoch)
    audiences: tuple[str, ...] = field(default=())

    @property
    def username(self) -> str:
        return f"{SUBJECT_PREFIX}{self.namespace}:{self.service_account}"

    @property
    def groups(self) -> tuple[str, ...]:
        return (ALL_SERVICE_ACCOUNTS, f"{ALL_SERVICE_ACCOUNTS}:{self.namespace}", AUTHENTICATED)

    @property
    def extra(self) -> dict[str, tuple[str, ...]]:
        """The user's extra fields (what `kubectl auth whoami` shows)."""
        extra = {}
        for key, value in (("pod-name", self.pod_name), ("pod-uid", self.pod_uid),
                           ("node-name", self.node_name), ("node-uid", self.node_uid)):
            if value:
                extra[EXTRA + key] = (value,)
        if self.token_id:
            extra[EXTRA + "credential-id"] = (f"JTI={self.token_id}",)
        return extra


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or any(c in text for c in "=+/ \n"):
        raise InvalidToken("not a JWT: a part is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not a JWT: a part is not unpadded base64url") from None


@functools.lru_cache(maxsize=8)
def _private_key(key_pem: bytes) -> rsa.RSAPrivateKey:
    # the cluster's own key (authority.py made it): its ~25 ms of RSA checks are skipped
    key = serialization.load_pem_private_key(key_pem, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("ServiceAccount tokens are signed RS256: the key must be RSA")
    return key


@functools.lru_cache(maxsize=8)
def _public_key(public_pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("ServiceAccount tokens are signed RS256: the key must be RSA")
    return key


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """kube-apiserver's `kid`: unpadded base64url of the SHA-256 of the PKIX DER public key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64(hashlib.sha256(der).digest())


def issue_token(key_pem: bytes, *, namespace: str, service_account: str, service_account_uid: str,
                pod_name: str | None = None, pod_uid: str | None = None,
                node_name: str | None = None, node_uid: str | None = None,
                audiences: tuple[str, ...] | list[str] = AUDIENCES, lifetime: int = LIFETIME,
                now: float | None = None, issuer: str = ISSUER) -> str:
    """A signed token for the ServiceAccount, bound to the pod (and its node) when given."""
    key = _private_key(key_pem)
    issued = int(time.time() if now is None else now)
    private = {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": service_account_uid}}
    if pod_name:
        private["pod"] = {"name": pod_name, "uid": pod_uid or ""}
    if node_name:
        private["node"] = {"name": node_name, "uid": node_uid or ""}
    claims = {"aud": list(audiences), "exp": issued + int(lifetime), "iat": issued, "iss": issuer,
              "jti": str(uuid.uuid4()), "kubernetes.io": private, "nbf": issued,
              "sub": f"{SUBJECT_PREFIX}{namespace}:{service_account}"}
    header = {"alg": "RS256", "kid": key_id(key.public_key())}
    signing_input = ".".join(_b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def verify_token(public_pem: bytes, token: str, *, audiences: tuple[str, ...] | list[str] = AUDIENCES,
                 now: float | None = None, issuer: str = ISSUER, leeway: int = LEEWAY) -> TokenIdentity:
    """Who the token authenticates, if it is one this cluster signed and it holds now; else
    InvalidToken, saying why."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise InvalidToken("not a JWT: it has not three parts")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("not a JWT: a part is not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidToken("not a JWT: a part is not a JSON object")
    if header.get("alg") != "RS256":
        raise InvalidToken(f"signing algorithm {header.get('alg')!r} is not accepted (RS256 only)")
    try:
        _public_key(public_pem).verify(_unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                                       padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise InvalidToken("the signature does not verify with this cluster's ServiceAccount key") from None
    if claims.get("iss") != issuer:
        raise InvalidToken(f"issuer {claims.get('iss')!r} is not this cluster's ({issuer})")
    given = claims.get("aud")
    given = [given] if isinstance(given, str) else given if isinstance(given, list) else []
    matched = tuple(a for a in given if a in audiences)
    if not matched:
        raise InvalidToken(f"audiences {given} include none this server accepts ({', '.join(audiences)})")
    moment = time.time() if now is None else now
    expires, not_before = claims.get("exp"), claims.get("nbf")
    if not isinstance(expires, (int, float)):
        raise InvalidToken("the token has no expiry (exp)")
    if moment > expires + leeway:
        raise InvalidToken("service account token has expired")
    if isinstance(not_before, (int, float)) and moment < not_before - leeway:
        raise InvalidToken("service account token is not valid yet")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.startswith(SUBJECT_PREFIX) or subject.count(":") != 3:
        raise InvalidToken(f"subject {subject!r} is not a ServiceAccount (system:serviceaccount:<ns>:<name>)")
    namespace, name = subject[len(SUBJECT_PREFIX):].split(":")
    private = claims.get("kubernetes.io") if isinstance(claims.get("kubernetes.io"), dict) else {}
    if private.get("namespace", namespace) != namespace:
        raise InvalidToken("the token's namespace claim does not match its subject")
    account, pod, node = (private.get(k) if isinstance(private.get(k), dict) else {}
                          for k in ("serviceaccount", "pod", "node"))
    if account.get("name", name) != name:
        raise InvalidToken("the token's serviceaccount claim does not match its subject")
    return TokenIdentity(namespace, name, str(account.get("uid") or ""), pod.get("name"), pod.get("uid"),
                         node.get("name"), node.get("uid"), claims.get("jti"), int(expires), matched)
