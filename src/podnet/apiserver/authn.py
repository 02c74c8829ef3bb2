"""Who is asking: a client certificate signed by the cluster CA (user = its CN, groups = its Os,
as kube-apiserver's x509 authenticator reads them) or a ServiceAccount token (Authorization:
Bearer, checked by podnet.pki.tokens). Nothing else is accepted: no anonymous requests, no
basic auth. Every authenticated user is also in system:authenticated."""

from __future__ import annotations

from typing import Any

from podnet.apiserver.errors import ApiError
from podnet.apiserver.rbac import User
from podnet.pki.tokens import InvalidToken, verify_token

AUTHENTICATED = "system:authenticated"


def from_certificate(peercert: dict[str, Any] | None) -> User | None:
    """The user a verified client certificate names (ssl's getpeercert() dict), if any."""
    if not peercert:
        return None
    common, organizations = "", []
    for rdn in peercert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                common = value
            elif key == "organizationName":
                organizations.append(value)
    if not common:
        return None
    return User(common, tuple(organizations) + (AUTHENTICATED,))


def from_token(authorization: str | None, public_key: bytes, audiences: tuple[str, ...]) -> User | None:
    """The ServiceAccount a bearer token is for; None without one; 401 for a bad one."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        identity = verify_token(public_key, token.strip(), audiences=audiences)
    except InvalidToken:
        raise ApiError(401, "Unauthorized") from None
    extra = {}
    if identity.pod_name:
        extra["authentication.kubernetes.io/pod-name"] = (identity.pod_name,)
    groups = tuple(identity.groups) if AUTHENTICATED in identity.groups else tuple(identity.groups) + (AUTHENTICATED,)
    return User(identity.username, groups, extra=tuple(sorted(extra.items())))
