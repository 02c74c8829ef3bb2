"""The ingress-nginx controller process, as it runs in the `ingress-nginx-controller-…` pod.

ingress-nginx's controller watches the API server (Ingresses, IngressClasses, Services,
EndpointSlices, Secrets), renders one nginx.conf, checks it with `nginx -t` and reloads nginx
gracefully (internal/ingress/controller/nginx.go: `testTemplate`, then `nginx -s reload`), and
posts the endpoints to nginx's Lua balancer instead when only they changed (`configureDynamically`:
no reload for a pod coming or going; podnet.ingressnginx.balancer). This process does the same over the cluster state podnet's supervisor holds
(podnet.host.control.LiveCluster, as the cluster DNS follows it: a long poll the supervisor
answers as soon as its state changes, so a change reaches nginx within one sync): the route table is
`IngressController(cluster)` — the very object `podnet trace http://…` answers from — rendered by
podnet.ingressnginx.nginxconf. A configuration nginx refuses is never loaded: the running one
stays, and the error is logged (ingress-nginx: "Error reloading NGINX"). nginx runs as this
process's child in the pod's namespaces, in the foreground (`daemon off`), so the container
lives as long as nginx does: if nginx dies, the controller exits and kubelet restarts it.

The readiness and liveness probes ask nginx itself on :10254/healthz (ingress-nginx answers
there from the controller after checking nginx's status page; here nginx serves it, so a Ready
controller is one whose nginx runs with a loaded configuration).

Flags: ingress-nginx's own, those that change what is served — `--ingress-class`,
`--controller-class`, `--watch-ingress-without-class`; the rest (`--publish-service`,
`--election-id`, …) are accepted and have no effect here (noted once in the log).

Events: each sync's Sync events and Warnings (podnet.ingressnginx.events) are posted to the
supervisor (the control socket's `event` op) when they are new — a Warning once while its
problem lasts, Sync once per version of the Ingress — so `podnet describe ing` shows them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from podnet.api.store import load_store
from podnet.config import load_config
from podnet.controlplane import Cluster, compute
from podnet.host.control import LiveCluster, send
from podnet.host.started import signal_started
from podnet.ingressnginx import balancer, certificates, nginxconf
from podnet.ingressnginx.events import ingress_events
from podnet.ingressnginx.status import ControllerStatus
from podnet.semantics import ingress_controllers
from podnet.semantics.ingress import IngressController

log = logging.getLogger("podnet.ingress-nginx")
# the longest one watch of the supervisor's state waits (a change answers it at once): how
# often the controller also checks that nginx still runs, and how long SIGTERM may wait
WATCH_WAIT = 1.0
RETRY_INTERVAL = 0.25  # seconds before asking again when the supervisor did not answer
STARTING = 10.0       # how long a starting nginx may take to listen for its first endpoints
NGINX = "nginx"


class NginxProcess:
    """The nginx master, started once with a checked configuration, then reloaded."""

    def __init__(self, options: nginxconf.NginxOptions):
        self.options = options
        self.conf = options.runtime_dir / "nginx.conf"
        self.process: subprocess.Popen | None = None

    @staticmethod
    def check(text: str) -> str | None:
        """nginx's verdict on a configuration (`nginx -t` on a copy): None if it loads."""
        return nginxconf.validate(text)

    def load(self, text: str) -> None:
        """Install a checked configuration: start nginx, or reload it (SIGHUP: new workers take
        new connections, old ones finish theirs — no request in flight is dropped)."""
        candidate = self.conf.with_suffix(".new")
        candidate.write_text(text)
        os.replace(candidate, self.conf)  # atomic: nginx never reads half a file
        if self.process is None:
            self.options.pid_file.unlink(missing_ok=True)
            self.process = subprocess.Popen(nginxconf.command(self.options, self.conf, "-g", "daemon off;"))
        else:
            self.process.send_signal(signal.SIGHUP)

    def configure(self, document: str) -> None:
        """The endpoints to the Lua balancer (balancer.document); OSError if nginx does not take them."""
        balancer.post(self.options.configuration_listen, document, timeout=STARTING)

    def wait_listening(self, timeout: float) -> None:
        """Until nginx listens (it writes its pid file once its sockets are bound), it dies, or
        `timeout` passes."""
        deadline = time.monotonic() + timeout
        while self.alive() and not self.options.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Controller:
    """Follow the cluster; render, check and load nginx.conf whenever what it says changes."""

    def __init__(self, args: argparse.Namespace, runtime_dir: Path, default_certificate: Path | None = None):
        self.args = args
        self.runtime_dir = runtime_dir
        self.options = nginxconf.NginxOptions(
            runtime_dir=runtime_dir,
            default_certificate=default_certificate or certificates.default_certificate(runtime_dir / "ssl"))
        self.nginx = NginxProcess(self.options)
        self.loaded: str | None = None   # the configuration nginx runs
        self.posted_backends: str | None = None  # the balancer document nginx has (balancer.document)
        self.unposted = False  # the last sync's endpoints did not reach nginx: sync the same state again
        self.refused: str | None = None  # the last text nginx refused (not tried again)
        self.reported: set[str] = set()  # problems already logged for the current state
        self.refused_error: str | None = None
        self.status = ControllerStatus(None)
        self.post_event = None  # callable(request) posting to the supervisor; None: events are only logged
        self.posted: set[tuple] = set()  # the events of the current state already posted

    def routes_of(self, cluster: Cluster) -> IngressController:
        served = self.args.served
        return IngressController(cluster, served.controller_class, served.ingress_class,
                                 served.watch_ingress_without_class)

    def sync(self, cluster: Cluster, generation: int | None = None) -> bool:
        """One render from `cluster` (the supervisor's state `generation`); True when nginx runs
        the result. status.json says which generation nginx serves, for the live trace."""
        served = self._sync(cluster)
        if served:
            self.status = ControllerStatus(generation)
        else:
            self.status = ControllerStatus(self.status.generation, generation, self.refused_error)
        self.status.write(self.runtime_dir)
        return served

    def _sync(self, cluster: Cluster) -> bool:
        routes = self.routes_of(cluster)
        found = certificates.secret_certificates(routes, self.runtime_dir / "ssl")
        for problem in [*found.problems, *routes.warnings]:
            if problem not in self.reported:  # as ingress-nginx's events: once, not every sync
                log.warning("%s", problem)
        self.reported = {*found.problems, *routes.warnings}
        self._post_events(routes, found.problems)
        options = dataclasses.replace(self.options, certificates=found.files)
        upstreams = nginxconf.endpoint_upstreams(routes)
        text = nginxconf.render(routes, upstreams, options)
        if text != self.loaded or not self.nginx.alive():
            if text == self.refused:
                return False
            error = self.nginx.check(text)
            if error is not None:
                self.refused, self.refused_error = text, error
                log.error("Error reloading NGINX: the new configuration is refused, the running one stays:\n%s", error)
                return False
            started = not self.nginx.alive()
            self.nginx.load(text)
            self.loaded, self.refused = text, None
            if started:
                self.posted_backends = None  # a new nginx has no endpoints (a reload keeps the shared dict)
            log.info("Backend successfully reloaded")
        return self._post_backends(balancer.document(upstreams))

    def _post_backends(self, document: str) -> bool:
        """ingress-nginx's configureDynamically: the endpoints to the balancer, when they changed."""
        self.unposted = False
        if document == self.posted_backends:
            return True
        try:
            self.nginx.configure(document)
        except OSError as exc:
            self.refused_error, self.unposted = f"posting the endpoints to nginx: {exc}", True
            log.error("Dynamic reconfiguration failed: %s", exc)
            return False
        self.posted_backends = document
        log.info("Dynamic reconfiguration succeeded")
        return True


    def _post_events(self, routes: IngressController, problems: list[str]) -> None:
        versions = {i.ref: i.metadata.get("resourceVersion") for i in routes.ingresses}
        current = {(event, versions.get(f"{event.namespace}/{event.name}") if event.type == "Normal" else None)
                   for event in ingress_events(routes, problems)}
        if self.post_event is not None:
            for event, _ in sorted(current - self.posted, key=lambda e: (e[0].type != "Normal", e[0].message)):
                try:
                    self.post_event(event.request())
                except Exception as exc:  # the supervisor restarting: the event is lost, as the API's may be
                    log.warning("posting event %s %s on Ingress %s/%s: %s", event.type, event.reason,
                                event.namespace, event.name, exc)
        self.posted = current


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """ingress-nginx's flags that change what is served; the others are returned unused."""
    parser = argparse.ArgumentParser(prog="nginx-ingress-controller", add_help=True)
    ingress_controllers.add_flags(parser)
    parser.add_argument("-f", dest="files", action="append", help="manifests to serve (standalone, no cluster)")
    parser.add_argument("--config", help="cluster config for -f")
    parser.add_argument("--runtime-dir", help="nginx's files (default: $PODNET_NGINX_DIR, else a new temp dir)")
    words = [w for w in argv if w != "/nginx-ingress-controller"]  # the image's entrypoint, as args give it
    args, unused = parser.parse_known_args(words)
    args.served = ingress_controllers.from_namespace(args)  # kubelet passes them resolved for the image
    return args, unused


def main(argv: list[str] | None = None) -> int:
    args, unused = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if unused:
        log.info("flags without effect in podnet: %s", " ".join(unused))
    missing = balancer.missing_modules()
    if missing:  # nginx.conf loads them: say so once, plainly, rather than nginx's dlopen error
        log.error("nginx's Lua module is not installed (%s): apt-get install libnginx-mod-http-lua",
                  ", ".join(missing))
        return 1
    runtime = Path(args.runtime_dir or os.environ.get("PODNET_NGINX_DIR") or tempfile.mkdtemp(prefix="podnet-nginx-"))
    runtime.mkdir(parents=True, exist_ok=True)
    control = os.environ.get("PODNET_CONTROL_SOCKET")
    live = LiveCluster(control) if control and not args.files else None
    controller = Controller(args, runtime)
    if live is not None:
        controller.post_event = lambda message: send(Path(control), message, timeout=10)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        cluster = None if live else _standalone(args)
        while not stopping:
            if cluster is not None:
                controller.sync(cluster, live.generation if live is not None else None)
                if not controller.unposted:
                    cluster = None  # else: nginx did not take the endpoints, the same state again
                controller.nginx.wait_listening(2.0)
                signal_started()  # nginx listens on the health port: kubelet may probe now (podnet.host.started)
            if controller.nginx.process is not None and not controller.nginx.alive():
                log.error("nginx exited with %s", controller.nginx.process.returncode)
                return 1
            if live is None:
                time.sleep(WATCH_WAIT)
                continue
            if cluster is not None:  # the endpoints did not reach nginx: again, shortly
                time.sleep(RETRY_INTERVAL)
                continue
            try:
                cluster = live.wait(WATCH_WAIT)  # answered as soon as the supervisor's state moves
            except Exception as exc:  # the supervisor restarting: keep serving what nginx has
                log.warning("cluster state: %s", exc)
                time.sleep(RETRY_INTERVAL)
    except KeyboardInterrupt:
        pass
    finally:
        controller.nginx.stop()
    return 0


def _standalone(args: argparse.Namespace) -> Cluster:
    """-f: the manifests computed once, as `podnet get -f` computes them."""
    return compute(load_store(args.files or []), load_config(args.config))
