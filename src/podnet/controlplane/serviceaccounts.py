"""ServiceAccounts: the controller's `default` in every namespace, and the admission default.

The ServiceAccount controller of kube-controller-manager makes a ServiceAccount named
`default` in each namespace (no token Secret since Kubernetes 1.24: pods get projected
tokens); the ServiceAccount admission plugin gives a pod that names none that one, and the v1
API writes the name in the deprecated `serviceAccount` field as well.
"""

from __future__ import annotations

from typing import Any

from podnet.api.objects import KubeObject

DEFAULT = "default"


def default_service_account(namespace: str) -> KubeObject:
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT, "namespace": namespace}}
    return KubeObject("ServiceAccount", namespace, DEFAULT, body)


def is_generated(obj: KubeObject) -> bool:
    """A `default` ServiceAccount the controller made (one from the input has a source)."""
    return obj.kind == "ServiceAccount" and obj.name == DEFAULT and obj.source is None


def apply_pod_service_account(spec: dict[str, Any]) -> None:
    """serviceAccountName, from the deprecated serviceAccount if only that is set, else `default`;
    both fields then hold it, as the v1 API serves a pod."""
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT
    spec["serviceAccountName"] = name
    spec["serviceAccount"] = name
