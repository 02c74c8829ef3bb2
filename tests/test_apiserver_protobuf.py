"""kubectl's protobuf request bodies (podnet.apiserver.protobuf): each typed-client command's body,
captured from the real kubectl by a recording server, decodes to the very JSON kubectl prints for
the same command with `--dry-run=client -o json` (the Go encoding of the same object); the
special types and Go's field rules on hand-built messages; bad bodies refused with one message;
and the commands end to end against podnet's API server."""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from podnet.api.schema import is_own_schema_kind
from podnet.apiserver import discovery, protobuf
from podnet.apiserver.registry import RESOURCES
from tests.apiharness import ApiHarness
from tests.conftest import free_port

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (make install: apt-get install kubectl)")

IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
META = "k8s.io.apimachinery.pkg.apis.meta.v1"


def envelope(api_version: str, kind: str, message) -> bytes:
    unknown = protobuf.message_class("k8s.io.apimachinery.pkg.runtime.Unknown")()
    unknown.typeMeta.apiVersion, unknown.typeMeta.kind = api_version, kind
    unknown.raw = message.SerializeToString()
    return protobuf.MAGIC + unknown.SerializeToString()


def new(name: str):
    return protobuf.message_class(name)()


# -- the types with their own JSON form, and Go's field rules ---------------------------------------

@pytest.mark.parametrize("nanoseconds, text", [
    (0, "0s"), (1, "1ns"), (1500, "1.5µs"), (300_000_000, "300ms"), (1_500_000_000, "1.5s"),
    (60_000_000_000, "1m0s"), (3_600_000_000_000, "1h0m0s"), (5_430_000_000_000, "1h30m30s"), (-2_000_000_000, "-2s"),
])
def test_durations_print_as_go_s_time_duration(nanoseconds, text):
    assert protobuf.go_duration(nanoseconds) == text


def test_times_are_rfc3339_utc_whole_seconds_and_micro_times_keep_microseconds():
    event = new("k8s.io.api.core.v1.Event")
    event.metadata.name = "e"
    event.firstTimestamp.seconds, event.firstTimestamp.nanos = 1_700_000_000, 999_000_000
    event.eventTime.seconds, event.eventTime.nanos = 1_700_000_000, 123_456_789
    decoded = protobuf.decode(envelope("v1", "Event", event))
    assert decoded["firstTimestamp"] == "2023-11-14T22:13:20Z"
    assert decoded["eventTime"] == "2023-11-14T22:13:20.123456Z"
    assert decoded["lastTimestamp"] is None  # a zero Time is null (metav1.Time.MarshalJSON)
    assert decoded["metadata"] == {"name": "e", "creationTimestamp": None}


def test_int_or_string_quantity_pointers_and_embedded_structs():
    pod = new("k8s.io.api.core.v1.Pod")
    pod.metadata.name = "p"
    container = pod.spec.containers.add(name="c", image=IMAGE)
    container.readinessProbe.handler.httpGet.port.type = 1
    container.readinessProbe.handler.httpGet.port.strVal = "http"
    container.livenessProbe.handler.tcpSocket.port.intVal = 8080
    container.resources.limits["memory"].string = "64Mi"
    volume = pod.spec.volumes.add(name="scratch")
    volume.volumeSource.emptyDir.SetInParent()
    pod.spec.terminationGracePeriodSeconds = 0          # *int64: a zero that was sent stays
    pod.spec.hostNetwork = False                         # bool, omitempty: a zero goes
    decoded = protobuf.decode(envelope("v1", "Pod", pod))
    spec = decoded["spec"]
    (got,) = spec["containers"]
    assert got["readinessProbe"] == {"httpGet": {"port": "http"}}  # ProbeHandler's fields are Probe's
    assert got["livenessProbe"]["tcpSocket"] == {"port": 8080}
    assert got["resources"] == {"limits": {"memory": "64Mi"}}
    assert spec["volumes"] == [{"name": "scratch", "emptyDir": {}}]  # VolumeSource's fields are Volume's
    assert spec["terminationGracePeriodSeconds"] == 0
    assert "hostNetwork" not in spec and "nodeName" not in spec
    assert decoded["status"] == {}


def test_raw_extensions_are_embedded_json_and_byte_maps_base64():
    revision = new("k8s.io.api.apps.v1.ControllerRevision")
    revision.metadata.name = "r"
    revision.data.raw = b'{"spec":{"replicas":3}}'
    revision.revision = 2
    assert protobuf.decode(envelope("apps/v1", "ControllerRevision", revision)) == {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "r", "creationTimestamp": None}, "data": {"spec": {"replicas": 3}}, "revision": 2}
    secret = new("k8s.io.api.core.v1.Secret")
    secret.data["key"] = b"\x00\xffsecret"
    assert protobuf.decode(envelope("v1", "Secret", secret))["data"] == {"key": "AP9zZWNyZXQ="}


def test_delete_options_in_any_group_version_are_meta_v1_s():
    options = new(f"{META}.DeleteOptions")
    options.gracePeriodSeconds = 0
    options.propagationPolicy = "Foreground"
    assert protobuf.decode(envelope("apps/v1", "DeleteOptions", options)) == {
        "apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground"}


def test_access_reviews_keep_go_s_non_omitempty_fields_and_extra_values_are_lists():
    review = new("k8s.io.api.authorization.v1.SubjectAccessReview")
    review.spec.user = "jane"
    review.spec.extra["scopes"].items.extend(["a", "b"])
    review.spec.nonResourceAttributes.path = "/healthz"
    review.spec.nonResourceAttributes.verb = "get"
    assert protobuf.decode(envelope("authorization.k8s.io/v1", "SubjectAccessReview", review)) == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {"creationTimestamp": None},
        "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}, "user": "jane", "extra": {"scopes": ["a", "b"]}},
        "status": {"allowed": False}}


def test_every_message_of_the_served_groups_has_a_json_form():
    """No field reachable from a kind lacks its Go name: the shapes and the descriptors agree."""
    pool, shapes, lists = protobuf._tables()
    seen: set[str] = set()
    # (CRDs upstream are served as JSON only, as kube-apiserver serves them)
    pending = [protobuf.message_name(r.group_version, r.kind) for r in RESOURCES if not is_own_schema_kind(r.kind)]
    while pending:
        name = pending.pop()
        if name in seen or name in protobuf._SPECIAL or name in lists:
            continue
        seen.add(name)
        descriptor = pool.FindMessageTypeByName(name)
        assert name in shapes, f"no Go shape for {name}"
        for field in descriptor.fields:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                field = field.message_type.fields_by_name["value"]
            elif str(field.number) not in shapes[name]:
                raise AssertionError(f"{name}.{field.name} has no Go JSON name")
            if field.message_type is not None:
                pending.append(field.message_type.full_name)
    assert "k8s.io.api.core.v1.Container" in seen and "k8s.io.api.rbac.v1.PolicyRule" in seen
    for package in protobuf.PACKAGES.values():  # every group named has its compiled file
        assert pool.FindFileByName(f"k8s.io/api/{package}/v1/generated.proto")


@pytest.mark.parametrize("body, message", [
    (b'{"kind": "Pod"}', "does not start with the Kubernetes magic number"),
    (protobuf.MAGIC + b"\xff\xff\xff", "not a valid Unknown"),
    (protobuf.MAGIC, "names no apiVersion and kind"),
])
def test_bodies_that_are_not_kubernetes_protobuf_are_refused_with_one_message(body, message):
    with pytest.raises(ValueError, match=message):
        protobuf.decode(body)


def test_kinds_without_a_protobuf_form_and_compressed_bodies_are_refused():
    with pytest.raises(ValueError, match="cannot decode protobuf for AdminNetworkPolicy in policy.networking.k8s.io/v1alpha1"):
        protobuf.decode(envelope("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy", new(f"{META}.Status")))
    with pytest.raises(ValueError, match="PodDisruptionBudget in policy.networking.k8s.io/v1"):  # not policy/v1's
        protobuf.decode(envelope("policy.networking.k8s.io/v1", "PodDisruptionBudget", new(f"{META}.Status")))
    unknown = new("k8s.io.apimachinery.pkg.runtime.Unknown")
    unknown.typeMeta.apiVersion, unknown.typeMeta.kind, unknown.contentEncoding = "v1", "Pod", "gzip"
    with pytest.raises(ValueError, match="contentEncoding 'gzip'"):
        protobuf.decode(protobuf.MAGIC + unknown.SerializeToString())
    unknown = new("k8s.io.apimachinery.pkg.runtime.Unknown")
    unknown.typeMeta.apiVersion, unknown.typeMeta.kind = "v1", "Pod"
    unknown.raw = b"\x0a\x05ab"  # metadata: 5 bytes announced, 2 there
    with pytest.raises(ValueError, match="not a valid Pod"):
        protobuf.decode(protobuf.MAGIC + unknown.SerializeToString())


# -- bodies captured from the real kubectl -----------------------------------------------------------

WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "agnhost", "image": IMAGE, "ports": [{"containerPort": 8080}]}]}}}}


class Recorder:
    """An API server that answers discovery as podnet's does and records every POST's body, then
    refuses it (kubectl has sent it by then; its answer does not matter here)."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.posts: list[tuple[str, str, bytes]] = []
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "u", "user": {"token": "recorder"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "default"}}]}))
        self.directory = directory
        self._stop: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        parts = request.path.strip("/").split("/")
        answers = {"/version": discovery.version, "/api": lambda: discovery.api_versions("127.0.0.1"),
                   "/apis": discovery.api_group_list, "/api/v1": lambda: discovery.resource_list("", "v1")}
        if request.path in answers:
            return web.json_response(answers[request.path]())
        if parts[0] == "apis" and len(parts) == 3:
            return web.json_response(discovery.resource_list(parts[1], parts[2]))
        if request.method == "GET" and request.path == "/apis/apps/v1/namespaces/default/deployments/web":
            return web.json_response(WEB)
        if request.method == "POST":
            self.posts.append((request.path, request.headers.get("Content-Type", ""), body))
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                                  "reason": "AlreadyExists", "message": "recorded"}, status=409)

    def __enter__(self) -> "Recorder":
        ready = threading.Event()

        async def serve() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        self._thread.start()
        assert ready.wait(30), "the recording server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, "--kubeconfig", str(self.kubeconfig), *args], capture_output=True, text=True,
                              timeout=60, env={"HOME": str(self.directory), "PATH": "/usr/bin:/bin"})

    def capture(self, *args: str) -> tuple[str, str, bytes]:
        self.posts.clear()
        self.kubectl(*args)
        assert len(self.posts) == 1, f"kubectl {' '.join(args)} POSTed {len(self.posts)} bodies"
        return self.posts[0]

    def dry_run(self, *args: str) -> dict:
        """What kubectl prints for the command with --dry-run=client -o json (its flags before `--`)."""
        cut = args.index("--") if "--" in args else len(args)
        result = self.kubectl(*args[:cut], "--dry-run=client", "-o", "json", *args[cut:])
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    directory = tmp_path_factory.mktemp("recorder")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with Recorder(directory) as server:
        yield server


CREATED = [  # every typed-client create kubectl has, as a user types it
    ("create", "namespace", "x"),
    ("create", "configmap", "cm", "--from-literal=a=1", "--from-literal=b=two"),
    ("create", "secret", "generic", "s", "--from-literal=k=v", "--type=Opaque"),
    ("create", "secret", "tls", "t", "--cert={dir}/tls.crt", "--key={dir}/tls.key"),
    ("create", "secret", "docker-registry", "d", "--docker-server=reg.example", "--docker-username=u", "--docker-password=p"),
    ("create", "serviceaccount", "sa"),
    ("create", "deployment", "web", f"--image={IMAGE}", "--", "/agnhost", "netexec"),
    ("create", "deployment", "idle", f"--image={IMAGE}", "--port=8080", "--replicas=0"),
    ("create", "service", "clusterip", "s", "--tcp=80:8080"),
    ("create", "service", "clusterip", "headless", "--clusterip=None"),
    ("create", "service", "nodeport", "n", "--tcp=80:8080", "--node-port=30080"),
    ("create", "service", "loadbalancer", "l", "--tcp=80:http"),
    ("create", "service", "externalname", "e", "--external-name=example.com"),
    ("create", "job", "j", "--image=busybox", "--", "date"),
    ("create", "cronjob", "c", "--image=busybox", "--schedule=*/1 * * * *", "--", "date"),
    ("create", "role", "r", "--verb=get,list", "--resource=pods,deployments.apps", "--resource-name=a"),
    ("create", "clusterrole", "cr", "--verb=get", "--resource=nodes", "--non-resource-url=/healthz"),
    ("create", "clusterrole", "aggregated", "--aggregation-rule=rbac.example.com/aggregate=true"),
    ("create", "rolebinding", "rb", "--role=r", "--user=u", "--serviceaccount=default:sa"),
    ("create", "clusterrolebinding", "crb", "--clusterrole=cr", "--group=g"),
    ("create", "ingress", "i", "--rule=foo.com/bar=svc1:8080,tls=my-cert", "--class=nginx", "--annotation=a=b"),
    ("create", "poddisruptionbudget", "pdb", "--selector=app=web", "--min-available=1"),
    ("create", "poddisruptionbudget", "pdb2", "--selector=app=web", "--max-unavailable=50%"),
    ("create", "quota", "q", "--hard=cpu=1500m,memory=1Gi,pods=2"),
    ("create", "priorityclass", "high", "--value=1000", "--description=d"),
    ("autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=80"),
]


@needs_kubectl
@pytest.mark.parametrize("args", CREATED, ids=lambda args: " ".join(args[1:3]))
def test_kubectl_create_bodies_decode_to_what_kubectl_prints_as_json(recorder, args):
    args = tuple(arg.replace("{dir}", str(recorder.directory)) for arg in args)
    expected = recorder.dry_run(*args)
    path, content_type, body = recorder.capture(*args)
    assert content_type == protobuf.MEDIA_TYPE
    if expected["kind"] == "PriorityClass":  # scheduling.k8s.io: a group podnet has no descriptors for
        with pytest.raises(ValueError, match="cannot decode protobuf for PriorityClass"):
            protobuf.decode(body)
        return
    assert protobuf.decode(body) == expected


REVIEWS = [  # what Go's encoding/json writes for the object kubectl builds (types.go at v1.32)
    (("auth", "can-i", "list", "pods"), "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {"creationTimestamp": None},
      "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}},
      "status": {"allowed": False}}),
    (("auth", "can-i", "get", "pods", "--subresource=log", "-n", "kube-system"),
     "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {"creationTimestamp": None},
      "spec": {"resourceAttributes": {"namespace": "kube-system", "verb": "get", "resource": "pods", "subresource": "log"}},
      "status": {"allowed": False}}),
    (("auth", "can-i", "get", "/healthz"), "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {"creationTimestamp": None},
      "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}, "status": {"allowed": False}}),
    (("auth", "can-i", "--list"), "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
     {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "metadata": {"creationTimestamp": None},
      "spec": {"namespace": "default"}, "status": {"resourceRules": None, "nonResourceRules": None, "incomplete": False}}),
    (("auth", "whoami"), "/apis/authentication.k8s.io/v1/selfsubjectreviews",
     {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {"creationTimestamp": None},
      "status": {"userInfo": {}}}),
    (("create", "token", "sa", "--duration=1h"), "/api/v1/namespaces/default/serviceaccounts/sa/token",
     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {"creationTimestamp": None},
      "spec": {"audiences": None, "expirationSeconds": 3600, "boundObjectRef": None},
      "status": {"token": "", "expirationTimestamp": None}}),
    (("create", "token", "sa", "--audience=vault", "--bound-object-kind=Pod", "--bound-object-name=p",
      "--bound-object-uid=0f9a"), "/api/v1/namespaces/default/serviceaccounts/sa/token",
     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {"creationTimestamp": None},
      "spec": {"audiences": ["vault"], "expirationSeconds": None,  # a nil *int64 without omitempty
               "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "0f9a"}},
      "status": {"token": "", "expirationTimestamp": None}}),
]


@needs_kubectl
@pytest.mark.parametrize("args, path, expected", REVIEWS, ids=[" ".join(args) for args, _, _ in REVIEWS])
def test_kubectl_auth_and_token_bodies_decode_as_go_writes_them(recorder, args, path, expected):
    got_path, content_type, body = recorder.capture(*args)
    assert (got_path, content_type) == (path, protobuf.MEDIA_TYPE)
    assert protobuf.decode(body) == expected


@needs_kubectl
@pytest.mark.parametrize("args", [
    ("run", "p", f"--image={IMAGE}", "--port=8080"),
    ("expose", "deployment", "web", "--port=80", "--target-port=8080"),
], ids=lambda args: args[0])
def test_kubectl_run_and_expose_send_json_which_podnet_reads_as_before(recorder, args):
    _, content_type, body = recorder.capture(*args)
    assert content_type == "application/json" and json.loads(body)["kind"] in ("Pod", "Service")


# -- end to end: podnet's API server given kubectl's protobuf ----------------------------------------

@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with ApiHarness(tmp_path_factory.mktemp("api-protobuf"), []) as harness:
        yield harness


@needs_kubectl
def test_kubectl_s_typed_commands_work_against_podnet(api):
    assert api.kubectl("create", "namespace", "team").stdout.strip() == "namespace/team created"
    assert api.kubectl_json("get", "namespace", "team")["status"]["phase"] == "Active"
    assert api.kubectl("create", "configmap", "settings", "--from-literal=a=1").stdout.strip() == "configmap/settings created"
    assert api.kubectl_json("get", "configmap", "settings")["data"] == {"a": "1"}
    out = api.kubectl("create", "deployment", "web", f"--image={IMAGE}", "--", "/agnhost", "netexec").stdout
    assert out.strip() == "deployment.apps/web created"
    deployment = api.kubectl_json("get", "deployment", "web")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == ["/agnhost", "netexec"]
    assert api.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080").stdout.strip() == "service/web exposed"
    assert api.kubectl_json("get", "service", "web")["spec"]["ports"][0]["targetPort"] == 8080
    assert api.kubectl("run", "client", f"--image={IMAGE}", "--", "/agnhost", "pause").stdout.strip() == "pod/client created"
    assert api.kubectl_json("get", "pod", "client")["spec"]["containers"][0]["image"] == IMAGE
    assert api.kubectl("create", "serviceaccount", "reader", "-n", "team").stdout.strip() == "serviceaccount/reader created"
    assert api.kubectl("create", "role", "pod-reader", "-n", "team", "--verb=get,list", "--resource=pods").stdout.strip() \
        == "role.rbac.authorization.k8s.io/pod-reader created"
    assert api.kubectl_json("get", "role", "pod-reader", "-n", "team")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    assert api.kubectl("create", "rolebinding", "read-pods", "-n", "team", "--role=pod-reader",
                       "--serviceaccount=team:reader").stdout.strip() == "rolebinding.rbac.authorization.k8s.io/read-pods created"
    assert api.kubectl_json("get", "rolebinding", "read-pods", "-n", "team")["subjects"] == [
        {"kind": "ServiceAccount", "name": "reader", "namespace": "team"}]


def test_a_broken_protobuf_body_is_answered_400_with_what_is_wrong(api):
    context = ssl.create_default_context(cafile=str(api.credentials.ca_path))
    context.load_cert_chain(api.credentials.admin_cert_path, api.credentials.admin_key_path)
    request = urllib.request.Request(f"https://127.0.0.1:{api.port}/api/v1/namespaces/default/configmaps", method="POST",
                                     data=protobuf.MAGIC + b"\xff\xff", headers={"Content-Type": protobuf.MEDIA_TYPE})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=context, timeout=60)
    status = json.loads(refused.value.read())
    assert (status["code"], status["reason"]) == (400, "BadRequest")
    assert "the protobuf body is not a valid Unknown" in status["message"]


def test_the_descriptors_are_of_the_release_podnet_reports():
    """k8s.io/api v0.X.Y is Kubernetes v1.X.Y: the version /version names and kubectl's."""
    release = json.loads(resources.files("podnet.apiserver").joinpath("kubernetes_go_fields.json").read_text())["release"]
    assert release.replace("v0.", "v1.", 1) == discovery.KUBERNETES_VERSION


@needs_kubectl
def test_kubectl_auth_reviews_answer_through_protobuf(api):
    assert api.kubectl("auth", "can-i", "list", "pods").stdout.strip() == "yes"
    as_reader = ("--as=system:serviceaccount:default:nobody",)
    denied = api.kubectl("auth", "can-i", "list", "secrets", *as_reader, check=False)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    rules = api.kubectl("auth", "can-i", "--list").stdout.splitlines()
    assert rules[0].split()[:2] == ["Resources", "Non-Resource"] and any(line.startswith("*.*") for line in rules)
    whoami = api.kubectl("auth", "whoami").stdout
    assert "kubernetes-admin" in whoami and "system:masters" in whoami

