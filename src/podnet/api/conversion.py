"""Conversion of deprecated API versions to the stored one, as kubectl/the API server do."""

from __future__ import annotations

import copy
from typing import Any

from podnet.api.kinds import KindInfo


def convert(info: KindInfo, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Returns the converted object and the deprecation warning to show (None: nothing to say)."""
    if info.kind == "Ingress":
        old = body["apiVersion"]
        return _ingress_v1beta1_to_v1(body), (
            f"{old} Ingress is deprecated in v1.14+, unavailable in v1.22+; "
            "converted to networking.k8s.io/v1 Ingress"
        )
    if info.api_version in ("security.istio.io/v1", "gateway.networking.k8s.io/v1"):  # v1beta1: the same schema
        return {**body, "apiVersion": info.api_version}, None
    raise ValueError(f"no conversion for {info.kind} {body.get('apiVersion')}")


def _backend(old: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(old, dict):
        return old
    if "resource" in old:
        return {"resource": old["resource"]}
    port = old.get("servicePort")
    port_field = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": old.get("serviceName"), "port": port_field}}


def _ingress_v1beta1_to_v1(body: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(body)
    new["apiVersion"] = "networking.k8s.io/v1"
    spec = new.get("spec") or {}
    if "backend" in spec:
        spec["defaultBackend"] = _backend(spec.pop("backend"))
    for rule in spec.get("rules") or []:
        for path in ((rule or {}).get("http") or {}).get("paths") or []:
            if not isinstance(path, dict):
                continue
            # v1beta1 left pathType unset, which the server defaulted to ImplementationSpecific.
            path.setdefault("pathType", "ImplementationSpecific")
            if "backend" in path:
                path["backend"] = _backend(path["backend"])
    return new
