"""Make one of podnet's own schemas (src/podnet/api/schemas/) from an upstream CRD's YAML.

    python scripts/crd_schema.py CRD.yaml VERSION OUT.json "DESCRIPTION"

The CRD's openAPIV3Schema of VERSION, as a JSON Schema (draft 2020-12) podnet's admission
validates with (api/schema.py): the structure, required fields, enums, patterns and limits
kept; descriptions, defaults and the x-kubernetes-* extensions dropped (the CEL rules are the
API server's, not JSON Schema's: what podnet checks of them is in api/validation.py). An object
that lists its properties takes no others, as `kubectl apply --validate=strict` refuses an
unknown field. metadata is Kubernetes' ObjectMeta. Used for Gateway API's HTTPRoute:

    git -C gateway-api show v1.6.1:config/crd/standard/gateway.networking.k8s.io_httproutes.yaml > httproutes.yaml
    python scripts/crd_schema.py httproutes.yaml v1 src/podnet/api/schemas/gateway-networking-v1.json \\
        "HTTPRoute (gateway.networking.k8s.io/v1), from kubernetes-sigs/gateway-api v1.6.1's standard-channel CRD"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

KEPT = ("type", "enum", "pattern", "maxLength", "minLength", "maxItems", "minItems", "maximum", "minimum",
        "maxProperties", "minProperties", "required", "nullable")
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def converted(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: schema[key] for key in KEPT if key in schema}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if "properties" in schema:
        out["properties"] = {name: converted(child) for name, child in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = converted(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = converted(schema["items"])
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            out[combinator] = [converted(child) for child in schema[combinator]]
    return out


def main(crd_path: str, version: str, out_path: str, description: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    kind, group = crd["spec"]["names"]["kind"], crd["spec"]["group"]
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    root = served["schema"]["openAPIV3Schema"]
    body = converted(root)
    body["properties"]["apiVersion"] = {"type": "string", "enum": [f"{group}/{version}"]}
    body["properties"]["kind"] = {"type": "string", "enum": [kind]}
    body["properties"]["metadata"] = {"$ref": OBJECT_META}
    body["required"] = sorted({"apiVersion", "kind", "metadata", *body.get("required", ())})
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": f"https://podnet.invalid/schemas/{Path(out_path).name}",
                "description": description, "$defs": {kind: body}}
    Path(out_path).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])
