#!/usr/bin/env python3
"""Regenerates what podnet.apiserver.protobuf decodes with, from the upstream Kubernetes sources:

- src/podnet/apiserver/kubernetes.binpb: a FileDescriptorSet compiled by protoc (from grpcio-tools,
  a development tool only: `python -m venv protoc-venv && protoc-venv/bin/pip install grpcio-tools`)
  from the generated.proto files of k8s.io/api and k8s.io/apimachinery at RELEASE;
- src/podnet/apiserver/kubernetes_go_fields.json: the shape of the Go structs behind those messages
  (read from the same release's types.go files), which the .proto files do not carry but the JSON
  kube-apiserver and kubectl write depends on: per message, per field number, the JSON name, whether
  the Go field is a pointer (present even when zero), `omitempty`, and embedded (its fields flattened
  into the parent's JSON); and the Go slice types protobuf wraps in a message of `items`.

    protoc-venv/bin/python scripts/protobuf_descriptors.py --api K8S_API_REPO --apimachinery APIMACHINERY_REPO

The repositories may be checkouts or bare clones: files are read with `git show RELEASE:path`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2  # the protobuf runtime grpcio-tools brings

# k8s.io/api and k8s.io/apimachinery v0.32.4 are Kubernetes v1.32.4: the kubectl podnet is tested with
# and the version its API server reports.
RELEASE = "v0.32.4"

# The API groups podnet serves (podnet.apiserver.registry) and those kubectl create/run/expose/auth send.
API_PACKAGES = (
    "core/v1", "apps/v1", "batch/v1", "networking/v1", "discovery/v1", "rbac/v1", "authorization/v1",
    "authentication/v1", "autoscaling/v1", "policy/v1", "events/v1",
)
APIMACHINERY_PACKAGES = ("pkg/apis/meta/v1", "pkg/runtime", "pkg/runtime/schema", "pkg/util/intstr", "pkg/api/resource")

HERE = Path(__file__).resolve().parent.parent / "src" / "podnet" / "apiserver"

_STRUCT = re.compile(r"^type (\w+) struct \{$")
_SLICE_ALIAS = re.compile(r"^type (\w+) \[\](\w+)$")
_FIELD = re.compile(r"^(?:(\w+)\s+)?(\S+)\s+`(.*)`$")
_TAG = re.compile(r'(\w+):"([^"]*)"')


def git_show(repo: Path, release: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"{release}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def go_files(repo: Path, release: str, package: str) -> list[str]:
    names = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", f"{release}:{package}"], check=True,
                           capture_output=True, text=True).stdout.split()
    return [f"{package}/{name}" for name in names
            if name.endswith(".go") and not name.endswith("_test.go") and not name.startswith("zz_generated")
            and not name.endswith(".pb.go")]


def go_shapes(source: str, proto_package: str, shapes: dict, lists: list) -> None:
    """The struct fields that carry a protobuf tag, and the slice types (`type Verbs []string`)."""
    lines = source.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        alias = _SLICE_ALIAS.match(line)
        if alias:
            lists.append(f"{proto_package}.{alias.group(1)}")
        struct = _STRUCT.match(line)
        index += 1
        if not struct:
            continue
        fields: dict[str, list] = {}
        while index < len(lines) and lines[index] != "}":
            field = _FIELD.match(lines[index].strip())
            index += 1
            if not field:
                continue
            _, go_type, tag_text = field.groups()
            tags = dict(_TAG.findall(tag_text))
            if "protobuf" not in tags or "json" not in tags:
                continue
            number = tags["protobuf"].split(",")[1]
            json_name, *options = tags["json"].split(",")
            flags = ""
            if go_type.startswith("*"):
                flags += "p"
            if "omitempty" in options:
                flags += "o"
            if not json_name:  # embedded: Go's encoding/json flattens its fields into the parent
                flags += "e"
            fields[number] = [json_name, flags]
        shapes[f"{proto_package}.{struct.group(1)}"] = fields


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", type=Path, required=True, help="a clone of github.com/kubernetes/api")
    parser.add_argument("--apimachinery", type=Path, required=True, help="a clone of github.com/kubernetes/apimachinery")
    parser.add_argument("--release", default=RELEASE)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    sources = [(args.api, "k8s.io/api", package) for package in API_PACKAGES]
    sources += [(args.apimachinery, "k8s.io/apimachinery", package) for package in APIMACHINERY_PACKAGES]
    shapes: dict[str, dict] = {}
    lists: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        protos = []
        for repo, module, package in sources:
            path = f"{module}/{package}/generated.proto"
            (Path(scratch) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(scratch) / path).write_text(git_show(repo, args.release, f"{package}/generated.proto"))
            protos.append(path)
            proto_package = f"{module}/{package}".replace("/", ".")
            for go in go_files(repo, args.release, package):
                go_shapes(git_show(repo, args.release, go), proto_package, shapes, lists)
        descriptors = args.out / "kubernetes.binpb"
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{scratch}", "--include_imports",
                        f"--descriptor_set_out={descriptors}", *protos], check=True)
    compiled = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes())
    messages = {f"{file.package}.{message.name}" for file in compiled.file for message in file.message_type}
    shapes = {name: fields for name, fields in sorted(shapes.items()) if name in messages}
    lists = sorted(name for name in lists if name in messages)
    # one message a line: a new release shows as a readable diff
    lines = [f"  {json.dumps(name)}: {json.dumps(fields, separators=(',', ':'))}" for name, fields in shapes.items()]
    text = (f'{{"release": {json.dumps(args.release)},\n "lists": {json.dumps(lists)},\n "messages": {{\n'
            + ",\n".join(lines) + "\n }\n}\n")
    json.loads(text)
    (args.out / "kubernetes_go_fields.json").write_text(text)
    print(f"{descriptors}: {descriptors.stat().st_size} bytes; {len(shapes)} Go structs, {len(lists)} slice types")
    return 0


if __name__ == "__main__":
    sys.exit(main())
