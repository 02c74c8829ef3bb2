"""ServiceAccount tokens (podnet.pki.tokens): Kubernetes' bound-token shape, and every way a
token that should not pass is refused."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from podnet.pki.authority import ClusterCredentials
from podnet.pki.tokens import ISSUER, InvalidToken, issue_token, key_id, verify_token

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """(sa.key, sa.pub) of this cluster and of another one."""
    made = []
    for name in ("ours", "theirs"):
        credentials = ClusterCredentials(tmp_path_factory.mktemp(name))
        credentials.ensure(["127.0.0.1"], ["localhost"])
        made.append((credentials.sa_key_path.read_bytes(), credentials.sa_pub_path.read_bytes()))
    return made


def token_for(key: bytes, **overrides) -> str:
    arguments = dict(namespace="shop", service_account="api", service_account_uid="sa-uid", pod_name="api-0",
                     pod_uid="pod-uid", node_name="node-1", node_uid="node-uid", now=NOW)
    return issue_token(key, **{**arguments, **overrides})


def parts(token: str) -> tuple[dict, dict, bytes]:
    def decode(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    header, claims, signature = token.split(".")
    return json.loads(decode(header)), json.loads(decode(claims)), decode(signature)


def encode(part) -> str:
    data = part if isinstance(part, bytes) else json.dumps(part).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_claims_are_those_of_a_projected_token(keys):
    (key, public), _ = keys
    header, claims, _ = parts(token_for(key))
    assert header == {"alg": "RS256", "kid": header["kid"]}
    assert header["kid"] == key_id(serialization.load_pem_public_key(public))
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == "system:serviceaccount:shop:api"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW, NOW + 3607)
    assert claims["kubernetes.io"] == {"namespace": "shop", "serviceaccount": {"name": "api", "uid": "sa-uid"},
                                       "pod": {"name": "api-0", "uid": "pod-uid"},
                                       "node": {"name": "node-1", "uid": "node-uid"}}
    assert len(claims["jti"]) == 36


def test_a_valid_token_names_its_service_account_and_pod(keys):
    (key, public), _ = keys
    token = token_for(key)
    identity = verify_token(public, token, now=NOW + 10)
    assert identity.username == "system:serviceaccount:shop:api"
    assert identity.groups == ("system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated")
    assert (identity.namespace, identity.service_account, identity.service_account_uid) == ("shop", "api", "sa-uid")
    assert (identity.pod_name, identity.pod_uid) == ("api-0", "pod-uid")
    assert identity.expires == NOW + 3607
    assert identity.extra["authentication.kubernetes.io/pod-name"] == ("api-0",)
    assert identity.extra["authentication.kubernetes.io/credential-id"] == (f"JTI={parts(token)[1]['jti']}",)


def test_a_token_without_a_pod_is_the_service_accounts_alone(keys):
    (key, public), _ = keys
    identity = verify_token(public, token_for(key, pod_name=None, node_name=None), now=NOW)
    assert identity.pod_name is None and "authentication.kubernetes.io/pod-name" not in identity.extra


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_openssl_verifies_the_signature_with_sa_pub(keys, tmp_path):
    """An implementation other than ours agrees the signature is RS256 (PKCS#1 v1.5, SHA-256)."""
    (key, public), _ = keys
    token = token_for(key)
    (tmp_path / "input").write_text(token.rsplit(".", 1)[0])
    (tmp_path / "signature").write_bytes(parts(token)[2])
    (tmp_path / "sa.pub").write_bytes(public)
    result = subprocess.run(["openssl", "dgst", "-sha256", "-verify", tmp_path / "sa.pub", "-signature",
                             tmp_path / "signature", tmp_path / "input"], capture_output=True, text=True)
    assert result.returncode == 0 and "Verified OK" in result.stdout, result


def tampered_claims(token: str) -> str:
    header, claims, signature = token.split(".")
    _, body, _ = parts(token)
    body["sub"] = "system:serviceaccount:kube-system:admin"
    body["kubernetes.io"]["namespace"] = "kube-system"
    body["kubernetes.io"]["serviceaccount"]["name"] = "admin"
    return f"{header}.{encode(body)}.{signature}"


def algorithm_none(token: str) -> str:
    _, claims, _ = token.split(".")
    return f"{encode({'alg': 'none'})}.{claims}."


def hmac_with_the_public_key(token: str, public: bytes) -> str:
    """The classic confusion attack: HS256 keyed with the (public) verification key."""
    _, claims, _ = token.split(".")
    header = encode({"alg": "HS256"})
    mac = hmac.HMAC(public, hashes.SHA256())
    mac.update(f"{header}.{claims}".encode())
    return f"{header}.{claims}.{encode(mac.finalize())}"


def test_refused(keys):
    """Each row a token this cluster must refuse, with the reason it gives."""
    (key, public), (their_key, _) = keys
    good = token_for(key)
    rows = [
        ("tampered claims", tampered_claims(good), NOW, "signature"),
        ("signed with another cluster's key", token_for(their_key), NOW, "signature"),
        ("expired beyond the leeway", good, NOW + 3607 + 61, "expired"),
        ("not valid yet", good, NOW - 61, "not valid yet"),
        ("algorithm none", algorithm_none(good), NOW, "algorithm"),
        ("HS256 keyed with sa.pub", hmac_with_the_public_key(good, public), NOW, "algorithm"),
        ("another audience", token_for(key, audiences=["vault"]), NOW, "audiences"),
        ("another issuer", token_for(key, issuer="https://elsewhere"), NOW, "issuer"),
        ("signature cut off", good.rsplit(".", 1)[0] + ".", NOW, "base64url"),
        ("two parts", good.rsplit(".", 1)[0], NOW, "three parts"),
        ("garbage", "Bearer abc", NOW, "three parts"),
        ("a non-JSON claims part", f"{good.split('.')[0]}.{encode(b'xyz')}.{good.split('.')[2]}", NOW, "JSON"),
    ]
    for name, token, now, reason in rows:
        with pytest.raises(InvalidToken, match=reason):
            verify_token(public, token, now=now)
            pytest.fail(f"{name}: accepted")


def test_the_leeway_is_a_minute_either_side(keys):
    (key, public), _ = keys
    token = token_for(key)
    assert verify_token(public, token, now=NOW + 3607 + 59).service_account == "api"
    assert verify_token(public, token, now=NOW - 59).service_account == "api"


def test_an_audience_among_several_is_enough(keys):
    (key, public), _ = keys
    token = token_for(key, audiences=["vault", ISSUER])
    assert verify_token(public, token, now=NOW).audiences == (ISSUER,)
    assert verify_token(public, token, audiences=["vault"], now=NOW).audiences == ("vault",)


def test_a_subject_that_is_not_a_service_account_is_refused_even_if_signed(keys):
    """Only what a cluster's own key signed reaches this check: still, a user name is not a
    ServiceAccount's."""
    (key, public), _ = keys
    private = serialization.load_pem_private_key(key, None)
    header = encode({"alg": "RS256"})
    claims = encode({"iss": ISSUER, "aud": [ISSUER], "exp": NOW + 60, "sub": "kubernetes-admin"})
    signature = private.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidToken, match="not a ServiceAccount"):
        verify_token(public, f"{header}.{claims}.{encode(signature)}", now=NOW)
