"""podnet.apiserver.protowire: Kubernetes protobuf request bodies, read as kubectl writes them."""

from __future__ import annotations

import pytest

from podnet.apiserver import protowire


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return protowire.MAGIC + field(1, field(1, api_version) + field(2, kind)) + field(2, raw) + field(4, "")


# What kubectl 1.32.4 sent for `kubectl auth can-i list pods -n dev` (captured from its request).
KUBECTL_CAN_I = (b'k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x129\n\x10\n\x00\x12\x00'
                 b'\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x1b\n\x19\n\x03dev\x12\x04list\x1a\x00"\x00*\x04pods2\x00'
                 b':\x00\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00')


def test_kubectls_self_subject_access_review():
    assert protowire.decode_review(KUBECTL_CAN_I) == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
        "spec": {"resourceAttributes": {"namespace": "dev", "verb": "list", "resource": "pods"}}}


def test_subject_access_review_with_user_groups_extra_and_uid():
    spec = (field(2, field(1, "/healthz") + field(2, "get")) + field(3, "jane") + field(4, "devs")
            + field(4, "system:authenticated") + field(5, field(1, "scopes") + field(2, field(1, "a") + field(1, "b")))
            + field(6, "u-1"))
    body = envelope("authorization.k8s.io/v1", "SubjectAccessReview", field(1, field(1, "check")) + field(2, spec))
    assert protowire.decode_review(body) == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {"name": "check"},
        "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}, "user": "jane",
                 "groups": ["devs", "system:authenticated"], "extra": {"scopes": ["a", "b"]}, "uid": "u-1"}}


def test_self_subject_rules_review_and_unknown_fields_skipped():
    raw = field(2, field(1, "dev") + field(9, 7)) + field(15, 42)
    body = envelope("authorization.k8s.io/v1", "SelfSubjectRulesReview", raw)
    assert protowire.decode_review(body)["spec"] == {"namespace": "dev"}


@pytest.mark.parametrize("body, message", [
    (b'{"kind": "SelfSubjectAccessReview"}', "no k8s"),
    (envelope("v1", "Namespace", field(1, field(1, "x"))), "is not an access review"),
    (protowire.MAGIC + b"\x0a\x05ab", "truncated"),
])
def test_what_is_not_a_review_is_refused(body, message):
    with pytest.raises(ValueError, match=message):
        protowire.decode_review(body)


def test_content_type():
    assert protowire.is_protobuf("application/vnd.kubernetes.protobuf")
    assert protowire.is_protobuf("application/vnd.kubernetes.protobuf; charset=utf-8")
    assert not protowire.is_protobuf("application/json") and not protowire.is_protobuf(None)
