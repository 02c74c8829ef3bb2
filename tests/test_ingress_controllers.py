"""Ingress controllers the input brings (semantics/ingress_controllers.py): which pods are
ingress-nginx controllers and what each serves, one reading for kubelet, the controller process
and trace; podnet adds its own add-on only when the input has no controller."""

from pathlib import Path

import pytest
import yaml

from podnet.semantics import ingress as ingress_semantics
from podnet.semantics import ingress_controllers
from podnet.semantics.ingress_controllers import ControllerFlags
from podnet.sim.explain import Explainer
from podnet.sim.trace import Tracer
from tests.conftest import cluster_of

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "seeds"
OLD = "quay.io/kubernetes-ingress-controller/nginx-ingress-controller:0.21.0"
CURRENT = "registry.k8s.io/ingress-nginx/controller:v1.12.0"


def without_ingress_class(text: str) -> str:
    return "\n---\n".join(d for d in text.split("\n---\n") if "kind: IngressClass" not in d)


def seed_controller(image: str = OLD) -> str:
    return (SEEDS / "nginx-ingress-controller.yaml").read_text().replace(OLD, image)


WEAR_WATCH = without_ingress_class((SEEDS / "ingress-wear-watch.yaml").read_text())


@pytest.mark.parametrize("image,args,expected", [
    (CURRENT, [], ControllerFlags()),
    (OLD, ["/nginx-ingress-controller", "--configmap=default/x"], ControllerFlags(watch_ingress_without_class=True)),
    ("example.com/ingress-nginx/controller:v0.49.3", [], ControllerFlags(watch_ingress_without_class=True)),
    (OLD, ["--ingress-class=internal"], ControllerFlags(ingress_class="internal")),  # 0.x: blank is nginx's only
    (OLD, ["--watch-ingress-without-class=false"], ControllerFlags()),
    (CURRENT, ["--watch-ingress-without-class", "--controller-class=example.com/x"],
     ControllerFlags(controller_class="example.com/x", watch_ingress_without_class=True)),
    ("registry.k8s.io/ingress-nginx/controller@sha256:abc", [], ControllerFlags()),  # a digest says no version
])
def test_a_controllers_flags_with_its_images_defaults(image, args, expected):
    assert ingress_controllers.flags_of(image, args) == expected
    parsed = ingress_controllers.flags_of(CURRENT, expected.args())  # as kubelet hands them on: explicit
    assert parsed == expected


def test_a_pod_is_a_controller_when_it_runs_the_image_with_its_own_entrypoint():
    container = {"name": "c", "image": CURRENT, "args": ["--ingress-class=a"]}

    def controller(*containers):
        cluster = cluster_of(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                             "spec": {"containers": list(containers)}}))
        return ingress_controllers.pod_controller(cluster.get("Pod", "default", "p"), cluster)

    assert controller({"name": "x", "image": "busybox"}, container) == ControllerFlags(ingress_class="a")
    assert controller({**container, "command": ["sleep", "1d"]}) is None
    assert controller({"name": "x", "image": "nginx"}) is None


def test_the_add_on_comes_only_when_the_input_brings_no_controller():
    own = cluster_of(seed_controller() + "\n---\n" + WEAR_WATCH)
    assert own.get("Deployment", "ingress-nginx", "ingress-nginx-controller") is None
    assert [p.name.rsplit("-", 2)[0] for p in own.of_kind("Pod") if "ingress" in p.name] == ["nginx-ingress-controller"]
    assert own.of_kind("IngressClass") == []
    stock = cluster_of(WEAR_WATCH)
    assert stock.get("Deployment", "ingress-nginx", "ingress-nginx-controller") is not None


def node_port(cluster, service: str, name: str = "http") -> int:
    return next(p["nodePort"] for p in cluster.get("Service", "default", service).spec["ports"] if p["name"] == name)


def test_trace_routes_through_the_seeds_own_controller_as_its_version_serves():
    old = cluster_of(seed_controller() + "\n---\n" + WEAR_WATCH)
    result = Tracer(old).trace("external", f"http://192.168.1.11:{node_port(old, 'nginx-ingress')}/wear")
    assert result.verdict == "delivered" and result.destination["pod"].startswith("default/wear-")
    route = next(h for h in result.hops if h.action == "route" and h.at.startswith("default/nginx-ingress-controller-"))
    assert "--watch-ingress-without-class" in route.detail
    assert result.http["status"] == 200 and result.ingress["ingress"] == "default/ingress-wear-watch"
    # the same manifests with a current image: an Ingress without a class is nobody's
    current = cluster_of(seed_controller(CURRENT) + "\n---\n" + WEAR_WATCH)
    result = Tracer(current).trace("external", f"http://192.168.1.11:{node_port(current, 'nginx-ingress')}/wear")
    assert result.verdict == "dropped" and result.http["status"] == 404


def test_a_name_outside_the_cluster_needs_a_load_balancer_address_for_the_controller():
    cluster = cluster_of(seed_controller() + "\n---\n" + WEAR_WATCH)
    result = Tracer(cluster).trace("external", "http://wear.example.com/wear")
    assert result.verdict == "dropped" and "--resolve HOST:PORT:ADDR" in result.reason


INTERNAL = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: internal, namespace: edge}}
spec:
  selector: {{matchLabels: {{app: internal}}}}
  template:
    metadata: {{labels: {{app: internal}}}}
    spec:
      containers:
      - name: controller
        image: {CURRENT}
        args: [/nginx-ingress-controller, --ingress-class=internal, --controller-class=example.com/internal]
---
apiVersion: v1
kind: Service
metadata: {{name: internal, namespace: edge}}
spec:
  type: LoadBalancer
  selector: {{app: internal}}
  ports: [{{name: http, port: 80}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: mine
  annotations: {{kubernetes.io/ingress.class: internal}}
spec:
  rules:
  - http:
      paths: [{{path: /wear, pathType: Prefix, backend: {{service: {{name: wear-service, port: {{number: 80}}}}}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: theirs
  annotations: {{kubernetes.io/ingress.class: nginx}}
spec:
  rules:
  - http:
      paths: [{{path: /watch, pathType: Prefix, backend: {{service: {{name: watch-service, port: {{number: 80}}}}}}}}]
"""


def test_a_controller_of_another_class_serves_only_its_own_ingresses():
    backends = "\n---\n".join(d for d in WEAR_WATCH.split("\n---\n") if "kind: Ingress\n" not in d)
    cluster = cluster_of(backends + "\n---\n" + INTERNAL)
    tracer = Tracer(cluster)
    wear = tracer.trace("external", "http://wear.example.com/wear")  # the name points at its LoadBalancer IP
    assert wear.verdict == "delivered" and wear.ingress["ingress"] == "default/mine"
    assert wear.destination["pod"].startswith("default/wear-")
    watch = tracer.trace("external", "http://wear.example.com/watch")
    assert watch.verdict == "dropped" and watch.http["status"] == 404


def test_what_the_add_on_made_is_not_a_controller_the_input_brings():
    """A running cluster keeps the pods and ReplicaSets controllers made beside the input: the
    add-on's own (owned) pod must not count as the input's controller and take the add-on away."""
    stock = cluster_of(WEAR_WATCH)
    made = [o for o in stock.of_kind("Pod", "ingress-nginx") + stock.of_kind("ReplicaSet", "ingress-nginx")]
    assert made and all(o.metadata.get("ownerReferences") for o in made)
    again = cluster_of(WEAR_WATCH + "".join("\n---\n" + yaml.safe_dump(o.body) for o in made))
    assert again.get("Deployment", "ingress-nginx", "ingress-nginx-controller") is not None


AUTHED = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: secret
  annotations:
    nginx.ingress.kubernetes.io/auth-type: basic
    nginx.ingress.kubernetes.io/auth-secret: basic-auth
    nginx.ingress.kubernetes.io/limit-rps: "1"
    nginx.ingress.kubernetes.io/server-alias: other.example.com
    nginx.ingress.kubernetes.io/rewrite-target: /
    nginx.ingress.kubernetes.io/canary-weight: "10"
spec:
  rules:
  - http:
      paths: [{path: /wear, pathType: Prefix, backend: {service: {name: wear-service, port: {number: 80}}}}]
"""


def test_annotations_podnet_does_not_model_are_named_and_a_lost_protection_is_loud():
    backends = "\n---\n".join(d for d in WEAR_WATCH.split("\n---\n") if "kind: Ingress\n" not in d)
    cluster = cluster_of(backends + "\n---\n" + AUTHED)
    ingress = cluster.get("Ingress", "default", "secret")
    assert ingress_semantics.unmodelled_annotations(ingress) == ["auth-secret", "auth-type", "limit-rps", "server-alias"]
    warning = ingress_semantics.unmodelled_warning(ingress)
    assert "served WITHOUT authentication or rate and connection limits" in warning
    controller = ingress_semantics.IngressController(cluster, watch_ingress_without_class=True)
    assert warning in controller.warnings  # the cluster's controller posts these as Warning events
    route = controller.route("http://x/wear")
    assert route.status == 200 and f"warning: {warning}" in route.explanation
    [finding] = [f for f in Explainer(cluster).findings() if f.object == "Ingress default/secret"]
    assert finding.severity == "warning" and "WITHOUT authentication" in finding.message
    plain = cluster_of(backends + "\n---\n" + AUTHED.replace("auth-", "x-auth-").replace("limit-rps", "ssl-redirect"))
    assert "WITHOUT" not in ingress_semantics.unmodelled_warning(plain.get("Ingress", "default", "secret"))


def test_trace_reads_the_controllers_flags_as_kubelet_starts_it():
    """$(CLASS) in the controller's args is expanded from its environment (here a ConfigMap's
    value), as kubelet expands it before starting the process."""
    backends = "\n---\n".join(d for d in WEAR_WATCH.split("\n---\n") if "kind: Ingress\n" not in d)
    from_config = INTERNAL.replace("--ingress-class=internal", "--ingress-class=$(CLASS)").replace(
        "        args: [", "        env: [{name: CLASS, valueFrom: {configMapKeyRef: {name: edge, key: class}}}]\n        args: [")
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: edge, namespace: edge}\ndata: {class: internal}\n"
    cluster = cluster_of(backends + "\n---\n" + config_map + "---\n" + from_config)
    wear = Tracer(cluster).trace("external", "http://wear.example.com/wear")
    assert wear.verdict == "delivered" and wear.ingress["ingress"] == "default/mine"
