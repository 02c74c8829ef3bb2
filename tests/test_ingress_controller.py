"""The ingress controller process without root: its flags, its sync (render, nginx -t, load;
never a refused configuration), the status it leaves for the live trace, and trace's judgement."""

from __future__ import annotations

import json

from podnet.errors import PodnetError
from podnet.images import behaviour_of
from podnet.ingressnginx import certificates
from podnet.ingressnginx import controller as ctl
from podnet.ingressnginx.events import ingress_events
from podnet.ingressnginx.status import ControllerStatus
from podnet.kubelet import container_argv
from podnet.linux.enforced import controller_sync
from tests.conftest import cluster_of

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  ingressClassName: nginx
  rules:
  - host: web.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec: {containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec]}]}
"""


class FakeNginx:
    """NginxProcess's interface: what was checked and loaded; `refuse` makes nginx -t fail."""

    def __init__(self):
        self.loaded: list[str] = []
        self.refuse = False
        self.refuse_endpoints = False
        self.configured: list[str] = []
        self.process = None

    def check(self, text: str) -> str | None:
        return "nginx: [emerg] invented for the test" if self.refuse else None

    def load(self, text: str) -> None:
        self.loaded.append(text)

    def configure(self, document: str) -> None:
        if self.refuse_endpoints:
            raise ConnectionRefusedError("invented for the test")
        self.configured.append(document)

    def alive(self) -> bool:
        return bool(self.loaded)


def controller(tmp_path) -> ctl.Controller:
    args, unused = ctl.parse_args(["/nginx-ingress-controller", "--ingress-class=nginx",
                                   "--publish-service=ingress-nginx/ingress-nginx-controller"])
    assert unused == ["--publish-service=ingress-nginx/ingress-nginx-controller"]
    out = ctl.Controller(args, tmp_path, default_certificate=tmp_path / "default.pem")
    out.nginx = FakeNginx()
    return out


def test_flags_as_ingress_nginx_takes_them():
    args, _ = ctl.parse_args(["--watch-ingress-without-class=true", "--controller-class=example.com/x"])
    assert args.served.watch_ingress_without_class is True and args.served.controller_class == "example.com/x"
    args, _ = ctl.parse_args(["--watch-ingress-without-class"])
    assert args.served.watch_ingress_without_class is True
    defaults = ctl.parse_args([])[0].served
    assert (defaults.ingress_class, defaults.controller_class, defaults.watch_ingress_without_class) == (
        "nginx", "k8s.io/ingress-nginx", False)


def test_a_sync_loads_once_and_says_which_state_nginx_serves(tmp_path):
    c = controller(tmp_path)
    cluster = cluster_of(INGRESS)
    assert c.sync(cluster, 7)
    assert len(c.nginx.loaded) == 1 and "server_name web.example.com" in c.nginx.loaded[0]
    assert c.sync(cluster, 8) and len(c.nginx.loaded) == 1  # same routes: nothing reloaded
    assert ControllerStatus.read(tmp_path) == ControllerStatus(8)


def test_an_endpoint_change_is_posted_without_a_reload(tmp_path):
    """ingress-nginx's dynamic configuration: the endpoints go to the Lua balancer; nginx.conf
    stays, so nothing is reloaded; a document nginx did not take is posted again."""
    c = controller(tmp_path)
    assert c.sync(cluster_of(INGRESS), 1)
    [(name, first)] = [line.split() for line in c.nginx.configured[0].splitlines()]
    assert name == "default-web-80" and first.startswith("10.244.") and first.endswith(":8080")
    two = INGRESS + INGRESS[INGRESS.index("---\napiVersion: v1\nkind: Pod"):].replace("name: web,", "name: web2,")
    c.nginx.refuse_endpoints = True
    assert not c.sync(cluster_of(two), 2) and c.unposted
    assert ControllerStatus.read(tmp_path) == ControllerStatus(1, 2, "posting the endpoints to nginx: invented for the test")
    c.nginx.refuse_endpoints = False
    assert c.sync(cluster_of(two), 2) and not c.unposted
    assert len(c.nginx.loaded) == 1 and len(c.nginx.configured) == 2
    name, *both = c.nginx.configured[1].split()
    assert name == "default-web-80" and first in both and len(set(both)) == 2
    assert c.sync(cluster_of(two), 3) and len(c.nginx.configured) == 2  # unchanged: not posted again


def test_a_refused_configuration_is_never_loaded_and_the_previous_one_is_still_served(tmp_path):
    c = controller(tmp_path)
    assert c.sync(cluster_of(INGRESS), 1)
    c.nginx.refuse = True
    assert not c.sync(cluster_of(INGRESS.replace("web.example.com", "other.example.com")), 2)
    assert len(c.nginx.loaded) == 1
    status = json.loads((tmp_path / "status.json").read_text())
    assert status == {"generation": 1, "refused_generation": 2, "refused_error": "nginx: [emerg] invented for the test"}


def test_the_live_trace_judges_the_controller_by_its_status():
    assert controller_sync("ingress-nginx/c", 5, lambda: ControllerStatus(5)).in_sync
    assert controller_sync("ingress-nginx/c", 5, lambda: ControllerStatus(6)).in_sync
    behind = controller_sync("ingress-nginx/c", 5, lambda: ControllerStatus(4), patience=0)
    assert not behind.in_sync and "behind" in behind.reason and "(4, this is 5)" in behind.reason
    refused = controller_sync("ingress-nginx/c", 5, lambda: ControllerStatus(4, 5, "bad"), patience=0)
    assert not refused.in_sync and "refused" in refused.reason and "bad" in refused.reason
    assert not controller_sync("ingress-nginx/c", 5, lambda: None, patience=0).in_sync
    seen = iter([ControllerStatus(4), ControllerStatus(5)])  # catches up while trace waits
    assert controller_sync("ingress-nginx/c", 5, lambda: next(seen), patience=5).in_sync


def test_the_controller_images_run_podnets_controller_and_serve_what_it_serves():
    # the flags follow as kubelet resolved them for the image: before 1.0 an Ingress without a class was
    # the default class's (0.x had no --watch-ingress-without-class)
    for image, without_class in (("registry.k8s.io/ingress-nginx/controller:v1.12.0", "false"),
                                 ("quay.io/kubernetes-ingress-controller/nginx-ingress-controller:0.21.0", "true")):
        container = {"name": "controller", "image": image, "args": ["/nginx-ingress-controller", "--ingress-class=nginx"]}
        argv = container_argv(container, {})
        assert argv[1:] == ["-m", "podnet.ingressnginx", "/nginx-ingress-controller", "--ingress-class=nginx",
                            "--controller-class=k8s.io/ingress-nginx", "--ingress-class=nginx",
                            f"--watch-ingress-without-class={without_class}"]
        served = ctl.parse_args(argv[3:])[0].served
        assert served.watch_ingress_without_class is (without_class == "true")
        assert behaviour_of(container).serves(10254, "TCP") and not behaviour_of(container).serves(8443, "TCP")
    other = container_argv({"name": "controller", "image": "example.com/other/controller:1"}, {})
    assert other[1:] == ["-m", "podnet.agnhost.standin", "example.com/other/controller:1"]  # not the controller


def test_the_controller_posts_sync_and_a_warning_for_a_missing_service_once(tmp_path):
    c = controller(tmp_path)
    posted: list[dict] = []
    c.post_event = posted.append
    without_service = INGRESS.replace("kind: Service\nmetadata: {name: web", "kind: Service\nmetadata: {name: other")
    c.sync(cluster_of(without_service), 1)
    assert [(p["op"], p["component"], p["type"], p["reason"], p["message"]) for p in posted] == [
        ("event", "nginx-ingress-controller", "Normal", "Sync", "Scheduled for sync"),
        ("event", "nginx-ingress-controller", "Warning", "Sync",
         "Service default/web does not exist: path / answers 503")]
    assert posted[1]["involvedObject"] == {"kind": "Ingress", "namespace": "default", "name": "web"}
    c.sync(cluster_of(without_service), 2)
    assert len(posted) == 2  # the problem lasts: said once
    c.sync(cluster_of(INGRESS), 3)
    assert len(posted) == 2  # fixed: nothing to say (the Ingress itself did not change)
    c.sync(cluster_of(without_service), 4)
    assert posted[-1]["type"] == "Warning" and len(posted) == 3  # back again: said again


def test_an_event_the_supervisor_refuses_is_logged_and_the_sync_goes_on(tmp_path, caplog):
    c = controller(tmp_path)

    def refuse(message):
        raise PodnetError("event: Ingress default/web not found")

    c.post_event = refuse
    assert c.sync(cluster_of(INGRESS), 1)
    assert "posting event Normal Sync on Ingress default/web" in caplog.text


def test_a_tls_secret_nginx_cannot_use_is_a_warning_on_the_ingresses_that_name_it(tmp_path):
    with_tls = INGRESS.replace("  rules:\n", "  tls: [{hosts: [web.example.com], secretName: absent}]\n  rules:\n", 1)
    routes = ctl.Controller(ctl.parse_args([])[0], tmp_path).routes_of(cluster_of(with_tls))
    problems = certificates.secret_certificates(routes, tmp_path / "ssl").problems
    assert [(e.name, e.type, e.reason, e.message) for e in ingress_events(routes, problems)] == [
        ("web", "Normal", "Sync", "Scheduled for sync"),
        ("web", "Warning", "Sync", "Secret default/absent does not exist: the default certificate is served")]


def test_without_nginxs_lua_module_the_controller_says_what_to_install(monkeypatch, caplog):
    monkeypatch.setattr(ctl.balancer, "missing_modules", lambda: ["/usr/lib/nginx/modules/ngx_http_lua_module.so"])
    assert ctl.main(["--ingress-class=nginx"]) == 1
    assert "apt-get install libnginx-mod-http-lua" in caplog.text
