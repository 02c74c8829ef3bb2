"""The mesh's injector (controlplane/injection.py) and what the runtime makes of an injected pod
without root: the proxy as a native sidecar, the app's probes moved to the agent, a running pod
never injected again, kubectl's READY counting the sidecar, the app held while the proxy starts,
a Job-like pod done only once its proxy has stopped, and the agent's status port."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading

import pytest

from podnet import images
from podnet.controlplane import injection
from podnet.kubelet import container_argv
from podnet.linux.supervisor.status import runtime_status
from podnet.mesh import pilot_agent
from podnet.output.columns import pod_row
from podnet.semantics import mesh
from tests.conftest import cluster_of
from tests.supervisor_fakes import sandbox_of

MESHED = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec:
  serviceAccountName: api
  containers:
  - name: api
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, --http-port=8080]
    ports: [{containerPort: 8080, name: http}]
    readinessProbe: {httpGet: {path: /healthz, port: http}}
    livenessProbe: {tcpSocket: {port: 8080}}
    startupProbe: {exec: {command: [cat, /ready]}}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: shop, labels: {app: plain, sidecar.istio.io/inject: "false"}}
spec: {containers: [{name: plain, image: busybox, command: [sleep, "1000"]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: linked, namespace: default, annotations: {linkerd.io/inject: enabled}}
spec: {containers: [{name: app, image: busybox, command: [sleep, "1000"]}]}
"""


@pytest.fixture(scope="module")
def cluster():
    return cluster_of(MESHED)


def test_the_proxy_is_a_native_sidecar_before_everything_else(cluster):
    api = cluster.get("Pod", "shop", "api")
    proxy = api.spec["initContainers"][0]
    assert (proxy["name"], proxy["restartPolicy"], proxy["image"]) == ("istio-proxy", "Always", injection.PROXY_IMAGE["istio"])
    assert proxy["securityContext"]["runAsUser"] == 1337 and proxy["startupProbe"]["httpGet"]["port"] == 15021
    assert api.labels[mesh.TLS_MODE_LABEL] == "istio" and api.labels["service.istio.io/canonical-name"] == "api"
    status = json.loads(api.metadata["annotations"][injection.STATUS_ANNOTATION])
    assert status["initContainers"] == ["istio-proxy"]
    assert api.metadata["annotations"]["kubectl.kubernetes.io/default-container"] == "api"
    assert mesh.is_meshed(api) and mesh.proxy_container(api) is proxy
    plain = cluster.get("Pod", "shop", "plain")
    assert "initContainers" not in plain.spec and not mesh.is_meshed(plain)
    linked = cluster.get("Pod", "default", "linked")
    assert mesh.proxy_container(linked)["name"] == "linkerd-proxy" and mesh.is_meshed(linked)


def test_the_apps_http_and_tcp_probes_go_to_the_agent_and_exec_stays(cluster):
    api = cluster.get("Pod", "shop", "api")
    app = api.spec["containers"][0]
    assert app["readinessProbe"]["httpGet"] == {"path": "/app-health/api/readyz", "port": 15020, "scheme": "HTTP"}
    assert app["livenessProbe"]["httpGet"] == {"path": "/app-health/api/livez", "port": 15020, "scheme": "HTTP"}
    assert "tcpSocket" not in app["livenessProbe"] and app["startupProbe"]["exec"] == {"command": ["cat", "/ready"]}
    env = {e["name"]: e.get("value") for e in api.spec["initContainers"][0]["env"]}
    probers = json.loads(env["ISTIO_KUBE_APP_PROBERS"])
    assert probers == {"/app-health/api/readyz": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                                                  "timeoutSeconds": 1},
                       "/app-health/api/livez": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1}}


def test_probes_stay_as_written_when_the_pod_says_so():
    text = MESHED.replace("metadata: {name: api, namespace: shop, labels: {app: api}}",
                          "metadata: {name: api, namespace: shop, labels: {app: api}, "
                          "annotations: {sidecar.istio.io/rewriteAppHTTPProbers: 'false'}}")
    app = cluster_of(text).get("Pod", "shop", "api").spec["containers"][0]
    assert app["readinessProbe"]["httpGet"]["port"] == "http"


def test_a_pod_is_injected_once_and_never_once_it_runs(cluster):
    api = cluster.get("Pod", "shop", "api")
    namespace = cluster.get("Namespace", "", "shop")
    before = json.dumps(api.body, sort_keys=True)
    assert injection.inject(api, namespace).injected
    assert json.dumps(api.body, sort_keys=True) == before  # already has its proxy: nothing again
    running = cluster_of(MESHED.replace("istio-injection: enabled", "istio-injection: disabled")).get("Pod", "shop", "api")
    running.body["status"] = {"podIP": "10.244.1.9"}
    injection.inject(running, namespace)  # the namespace labelled after it started: it stays as it is
    assert mesh.proxy_container(running) is None


def test_an_apply_giving_a_running_pod_new_labels_keeps_the_injectors_marks(cluster):
    api = cluster.get("Pod", "shop", "api")
    metadata = {"labels": {"app": "api", "tier": "back"}, "annotations": {"team": "a"}}
    injection.keep_injected_marks(metadata, api)
    assert metadata["labels"][mesh.TLS_MODE_LABEL] == "istio" and metadata["labels"]["tier"] == "back"
    assert injection.STATUS_ANNOTATION in metadata["annotations"] and metadata["annotations"]["team"] == "a"
    plain_metadata = {"labels": {"app": "plain"}}
    injection.keep_injected_marks(plain_metadata, cluster.get("Pod", "shop", "plain"))
    assert plain_metadata == {"labels": {"app": "plain"}}


def test_get_counts_the_sidecar_in_ready(cluster):
    assert pod_row(cluster.get("Pod", "shop", "api"), False)[1:3] == ["2/2", "Running"]
    assert pod_row(cluster.get("Pod", "shop", "plain"), False)[1] == "1/1"


def test_the_proxy_image_runs_podnets_pilot_agent():
    proxy = injection._proxy_container(None, "istio", {})
    assert images.behaviour_of(proxy).listens == images.MESH_PROXY_PORTS
    assert container_argv(proxy, {})[1:5] == ["-m", "podnet.mesh.pilot_agent", "proxy", "sidecar"]


def _sidecar_sandbox(pod):
    sandbox = sandbox_of(pod)
    proxy = sandbox_of(pod).containers[0]
    proxy.name, proxy.sidecar, proxy.restart_policy = "istio-proxy", True, "Always"
    sandbox.containers.insert(0, proxy)
    return sandbox


def test_an_app_held_while_its_proxy_starts_waits_as_pod_initializing(cluster):
    api = cluster.get("Pod", "shop", "api")
    sandbox = _sidecar_sandbox(api)
    app = sandbox.containers[1]
    app.process, app.held = None, True
    body = json.loads(json.dumps(api.body))
    runtime_status(body, sandbox, {"istio-proxy": {"ready": False, "started": False}})
    [entry] = body["status"]["containerStatuses"]
    assert entry["state"] == {"waiting": {"reason": "PodInitializing"}} and not entry["ready"]
    assert body["status"]["phase"] == "Pending"  # kubelet's pod is initializing until its sidecar started
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]}["Initialized"] == "False"
    assert pod_row(type(api)(api.kind, api.namespace, api.name, body), False)[1:3] == ["0/2", "Init:0/1"]
    # its proxy started (the prober's word), the app not yet released: kubectl shows the app's wait
    body = json.loads(json.dumps(api.body))
    runtime_status(body, sandbox, {"istio-proxy": {"ready": True, "started": True}})
    assert pod_row(type(api)(api.kind, api.namespace, api.name, body), False)[1:3] == ["1/2", "PodInitializing"]


def test_a_pod_that_does_not_restart_is_done_once_its_proxy_has_stopped_too(cluster):
    batch = cluster_of(MESHED.replace("name: api, namespace: shop", "name: batch, namespace: shop").replace(
        "  serviceAccountName: api\n", "  serviceAccountName: api\n  restartPolicy: Never\n")).get("Pod", "shop", "batch")
    sandbox = _sidecar_sandbox(batch)
    proxy, app = sandbox.containers
    app.process.exit(0)
    app.last_exit = 0
    body = json.loads(json.dumps(batch.body))
    runtime_status(body, sandbox, {})
    assert body["status"]["phase"] == "Running"  # its proxy still runs
    proxy.process.exit(0)
    proxy.last_exit = 0
    body = json.loads(json.dumps(batch.body))
    runtime_status(body, sandbox, {})
    assert body["status"]["phase"] == "Succeeded"
    assert body["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_the_agent_runs_the_apps_own_probes_from_inside_the_pod():
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # held, never listening, until the end: its port refuses
    port, nothing = app.server_address[1], closed.getsockname()[1]
    # the probes that must succeed get 30 s: the app is a thread of this process, which a loaded
    # machine may not run within pilot-agent's default 1 s
    probers = {"/app-health/a/readyz": {"httpGet": {"path": "/healthz", "port": port}, "timeoutSeconds": 30},
               "/app-health/a/livez": {"httpGet": {"path": "/broken", "port": port}},
               "/app-health/a/startupz": {"tcpSocket": {"port": port}, "timeoutSeconds": 30},
               "/app-health/b/readyz": {"tcpSocket": {"port": nothing}}}
    status = http.server.ThreadingHTTPServer(("127.0.0.1", 0), pilot_agent.status_handler(probers))
    threading.Thread(target=status.serve_forever, daemon=True).start()
    try:
        answers = {}
        for path in [*probers, "/elsewhere"]:
            connection = http.client.HTTPConnection("127.0.0.1", status.server_address[1], timeout=120)
            connection.request("GET", path)
            answers[path] = connection.getresponse().status
            connection.close()
        assert answers == {"/app-health/a/readyz": 200, "/app-health/a/livez": 503, "/app-health/a/startupz": 200,
                           "/app-health/b/readyz": 503, "/elsewhere": 404}
    finally:
        app.shutdown()
        status.shutdown()
        closed.close()



def test_a_probe_on_a_port_name_nobody_declares_stays_as_written():
    text = MESHED.replace("readinessProbe: {httpGet: {path: /healthz, port: http}}",
                          "readinessProbe: {httpGet: {path: /healthz, port: admin}}")
    app = cluster_of(text).get("Pod", "shop", "api").spec["containers"][0]
    assert app["readinessProbe"]["httpGet"]["port"] == "admin"  # (kubelet's probe fails as it would without a mesh)


def test_the_canonical_name_is_the_workloads():
    job = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: nightly-report, namespace: shop}
spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-front, namespace: shop}
spec:
  selector: {matchLabels: {tier: x}}
  template: {metadata: {labels: {tier: x}}, spec: {containers: [{name: c, image: busybox}]}}
"""
    cluster = cluster_of(job)
    names = {p.metadata["ownerReferences"][0]["kind"]: p.labels["service.istio.io/canonical-name"]
             for p in cluster.of_kind("Pod", "shop")}
    assert names == {"Job": "nightly-report", "ReplicaSet": "web-front"}


def test_what_an_apply_sets_itself_wins_over_the_kept_marks(cluster):
    metadata = {"annotations": {"kubectl.kubernetes.io/default-container": "other"}}
    injection.keep_injected_marks(metadata, cluster.get("Pod", "shop", "api"))
    assert metadata["annotations"]["kubectl.kubernetes.io/default-container"] == "other"
    assert injection.STATUS_ANNOTATION in metadata["annotations"]


def test_the_injector_marks_opaque_ports_from_the_pod_its_namespace_or_linkerds_default():
    cluster = cluster_of(MESHED + """
---
apiVersion: v1
kind: Namespace
metadata: {name: data, annotations: {linkerd.io/inject: enabled, config.linkerd.io/opaque-ports: "4000-4100"}}
---
apiVersion: v1
kind: Pod
metadata: {name: cache, namespace: data}
spec: {containers: [{name: cache, image: redis, ports: [{containerPort: 4001}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: own, namespace: data, annotations: {config.linkerd.io/opaque-ports: "redis,25"}}
spec: {containers: [{name: own, image: redis, ports: [{containerPort: 6380, name: redis}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: none, namespace: data, annotations: {config.linkerd.io/opaque-ports: ""}}
spec: {containers: [{name: none, image: redis, ports: [{containerPort: 4001}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: pg, namespace: default, annotations: {linkerd.io/inject: enabled}}
spec: {containers: [{name: pg, image: postgres, ports: [{containerPort: 5432}, {containerPort: 8080}]}]}
""")
    def opaque(namespace, name):
        pod = cluster.get("Pod", namespace, name)
        return pod.metadata.get("annotations", {}).get(mesh.OPAQUE_PORTS), mesh.opaque_ports(pod)
    # Linkerd's default (the server-speaks-first protocols), as far as the pod declares those ports
    assert opaque("default", "linked") == (None, ())  # it declares none
    assert opaque("default", "pg") == ("5432", ((5432, 5432),))
    assert opaque("data", "none") == ("", ())  # its own, even empty
    assert opaque("data", "cache") == ("4000-4100", ((4000, 4100),))  # the namespace's
    assert opaque("data", "own") == ("redis,25", ((6380, 6380), (25, 25)))  # its own, a port by its name
    assert opaque("shop", "api") == (None, ())  # Istio's injector has no default
    assert mesh.is_opaque(cluster.get("Pod", "data", "cache"), 4001)
    assert mesh.port_protocol([], cluster.get("Pod", "data", "cache"), 4001) == "tcp"


def test_a_services_opaque_ports_may_be_named():
    service = cluster_of("""
apiVersion: v1
kind: Service
metadata: {name: pg, namespace: default, annotations: {config.linkerd.io/opaque-ports: "http-pg,9000-9001"}}
spec: {ports: [{name: http-pg, port: 8080}, {name: http, port: 80}, {name: http-x, port: 9001}]}
""").get("Service", "default", "pg")
    assert [mesh.opaque_service_port(service, p) for p in service.spec["ports"]] == [True, False, True]
