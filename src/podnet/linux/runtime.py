"""Containers as processes in a pod's namespaces, the way a container runtime and kubelet do it.

Each pod gets a sandbox process (`sleep infinity`, doing the pause container's job) started with `ip netns exec`, which
gives it a mount namespace where the pod's /etc/netns/<netns>/{resolv.conf,hosts} are bound
over /etc, and `unshare --uts` for the pod's own hostname. Containers, and `podnet exec`, join
that sandbox with `nsenter` — so they share the pod's network, hostname, resolv.conf and hosts,
like containers of one pod. Output goes to one log file per container (for `podnet logs`);
restartPolicy decides what happens when a process exits, and kubelet's CrashLoopBackOff
(podnet.crashloop) when it starts again. What runs for each image is
podnet.images' word (podnet.kubelet.container_argv): the host's nginx and redis-server get
their files in the pod's own state directory here; an image that cannot be pulled (images:
strict) starts nothing and waits as kubelet's ErrImagePull, then ImagePullBackOff. A container
whose environment names a ConfigMap or Secret (or a key) that is not there is not created: it
waits as kubelet's CreateContainerConfigError (podnet.semantics.containerenv) and is tried again
every CONFIG_RETRY seconds, as kubelet's next sync does, so it starts once the object is applied.
What kubelet would record as events on the way is left in `Runtime.events` for the supervisor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

from podnet import crashloop, images
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.host.layout import ClusterLayout
from podnet.host.started import STARTED_ENV
from podnet.kubelet import container_argv, hosts_file, redis_argv
from podnet.linux import serviceaccount
from podnet.linux.counted import Counted, CountedDict
from podnet.controlplane.pods import is_sidecar
from podnet.mesh.interception import proxy_uid
from podnet.mesh.pilot_agent import PROXY_DIR_ENV, PROXY_UID_ENV, TRACES_ENV
from podnet.semantics.containerenv import (CREATE_CONFIG_ERROR, INVALID_NAMES_REASON, RUN_CONTAINER_ERROR,
                                           ContainerConfigError, resolve_environment)
from podnet.semantics.dns import resolv_conf

ETC_NETNS = Path("/etc/netns")
STARTED_GRACE = 5.0  # seconds a podnet program may take to say it started before it is probed anyway
TERMINATION_POLL = 0.05  # seconds between looks at a terminating container's process
PULL_BACKOFF = 1.0  # seconds from ErrImagePull to ImagePullBackOff (kubelet's first image back-off: 10 s)
# seconds between attempts to make a container's config that failed (kubelet: its next pod sync)
CONFIG_RETRY = 1.0
CONFIG_ERRORS = (CREATE_CONFIG_ERROR, RUN_CONTAINER_ERROR)  # waiting reasons of a container not created
NGINX_PAGE = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n<body><h1>Welcome to nginx!</h1>\n<p>Served by podnet's nginx behaviour.</p></body></html>\n"


@dataclass
class Container(Counted):  # its changes are counted: the supervisor's record (supervisor/record.py) holds it
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    restart_policy: str
    workdir: str | None = None
    # not created: (reason, message) as kubelet's waiting state — an image that cannot be pulled
    # (backoff_at: ErrImagePull turns ImagePullBackOff), a config kubelet cannot make (backoff_at:
    # its next attempt)
    waiting: tuple[str, str] | None = None
    backoff_at: float = 0.0
    image: str = ""
    process: subprocess.Popen | None = None
    restarts: int = 0
    last_exit: int | None = None  # its process's exit code, once seen (None again when it restarts)
    finished_at: float = 0.0  # when that exit was seen (monotonic): kubelet's FinishedAt
    next_start: float = 0.0  # when it starts again (monotonic; 0: no restart due); CrashLoopBackOff until then
    backoff: crashloop.BackOff | None = None  # kubelet's back-off entry for the container
    note: str = ""
    # where each run's output begins in the log (one file across restarts), for `kubectl logs`
    # (the current run) and `--previous`; empty for a container adopted from an earlier supervisor
    log_starts: list[int] = field(default_factory=list)
    started_at: float | None = None  # wall-clock time its process last started (status startedAt)
    # a native sidecar (an init container with restartPolicy Always): started before the app
    # containers, which are `held` (not started) until it says it has started
    sidecar: bool = False
    held: bool = False
    pod_ref: str = field(kw_only=True)  # its pod's: what a change of it is a change of (counted.py)

    def _changed_pod(self) -> str | None:
        return self.__dict__.get("pod_ref")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class PodSandbox(Counted):  # as Container, but for what the record does not hold
    _uncounted: ClassVar[frozenset[str]] = frozenset({"pod", "found"})
    namespace: str
    name: str
    netns: str
    pause: subprocess.Popen
    containers: list[Container] = field(default_factory=list)
    host_network: bool = False
    pod: KubeObject | None = None
    # (its parent, the pause process) as last found: one read of the parent's children tells
    # whether it still runs (reap looks every 0.2 s, under the supervisor's lock)
    found: tuple[int, int] | None = None
    # the pod is being deleted (kubelet's termination, podnet.linux.supervisor.termination):
    # its containers are stopped, not restarted, and its sandbox is not made again
    terminating: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _changed_pod(self) -> str | None:
        fields = self.__dict__
        return f"{fields['namespace']}/{fields['name']}" if "name" in fields else None


class Runtime:
    def __init__(self, layout: ClusterLayout, cluster: Cluster):
        self.layout = layout
        self.cluster = cluster
        self.logs = layout.state_dir / "logs"
        self.pods: dict[str, PodSandbox] = CountedDict()
        # kubelet's token manager (serviceaccount.py), once the supervisor has the cluster's credentials
        self.tokens: serviceaccount.ServiceAccountTokens | None = None
        # what kubelet would record as events, for the supervisor to take (take_events): (pod ref,
        # container name or None for the pod itself, type, reason, message)
        self.events: list[tuple[str, str | None, str, str, str]] = []

    # -- files the pod sees ---------------------------------------------------------------------

    def write_pod_files(self, pod: KubeObject, netns: str) -> None:
        etc = ETC_NETNS / netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(resolv_conf(pod, self.cluster).render())
        (etc / "hosts").write_text(hosts_file(pod, self.cluster))

    # -- lifecycle ------------------------------------------------------------------------------

    def node_files(self, cluster: Cluster) -> None:
        """A node's own /etc/hosts and (empty: nodes have no DNS) resolv.conf, which its
        hostNetwork pods and `podnet exec node/…` see."""
        for node in cluster.nodes:
            etc = ETC_NETNS / self.layout.node_netns(node.name)
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                       f"{node.ip}\t{node.name}\n")
            (etc / "resolv.conf").write_text("# podnet nodes have no DNS server of their own\n")

    def start_pod(self, pod: KubeObject, netns: str) -> PodSandbox:
        """Start the sandbox and every container of `pod` inside network namespace `netns`."""
        self.logs.mkdir(parents=True, exist_ok=True)
        host_network = bool(pod.spec.get("hostNetwork"))
        if not host_network:  # hostNetwork pods see their node's files, as kubelet gives them
            self.write_pod_files(pod, netns)
        try:
            if self.tokens is not None:
                self.tokens.write(pod, self.cluster)
            sandbox = PodSandbox(pod.namespace, pod.name, netns, self._start_sandbox(pod, netns))
            sandbox.host_network = host_network
            sandbox.pod = pod
            self._wait_for_sandbox(sandbox)
        except BaseException:
            if not host_network:
                remove_pod_files(netns)
            serviceaccount.remove_files(self.layout, pod.namespace, pod.name)
            raise
        sidecars = [c for c in pod.spec.get("initContainers") or [] if is_sidecar(c)]
        for spec in [*sidecars, *(pod.spec.get("containers") or [])]:
            sidecar = any(spec is c for c in sidecars)
            container = Container(spec.get("name"), [], {},
                                  self.logs / f"{pod.namespace}_{pod.name}_{spec.get('name')}.log",
                                  "Always" if sidecar else pod.spec.get("restartPolicy", "Always"),
                                  image=str(spec.get("image") or ""), sidecar=sidecar, pod_ref=sandbox.ref)
            sandbox.containers.append(container)
            if images.behaviour_of(spec, self.cluster.config.standins).runs == images.UNPULLABLE:
                container.waiting = ("ErrImagePull", images.pull_error(container.image))
                container.backoff_at = time.monotonic() + PULL_BACKOFF
                continue
            if not sidecar and not self._sidecars_started(sandbox):
                container.held = True  # kubelet starts the app once its sidecars have started
                continue
            self._create(sandbox, container)
        self.pods[sandbox.ref] = sandbox
        return sandbox

    def _create(self, sandbox: PodSandbox, container: Container) -> bool:
        """kubelet's generateContainerConfig, then the start: the container's environment and
        process, made now (a ConfigMap applied since counts). When the config cannot be made the
        container waits, not created (CreateContainerConfigError), and reap tries again."""
        pod = sandbox.pod
        spec = container_spec(pod, container.name) if pod is not None else None
        if spec is None:
            return False
        try:
            resolved = resolve_environment(pod, spec, self.cluster)
        except ContainerConfigError as error:
            if container.waiting != (error.reason, error.message):  # kubelet's Failed, once per message
                self.events.append((sandbox.ref, container.name, "Warning", "Failed", f"Error: {error.message}"))
            container.waiting = (error.reason, error.message)
            container.backoff_at = time.monotonic() + CONFIG_RETRY
            return False
        for skipped in resolved.skipped:
            self.events.append((sandbox.ref, None, "Warning", INVALID_NAMES_REASON, skipped.message))
        env = resolved.env
        standins = self.cluster.config.standins
        behaviour = images.behaviour_of(spec, standins)
        argv = container_argv(spec, env, standins)
        if argv and argv[1:3] in (["-m", "podnet.dns"], ["-m", "podnet.ingressnginx"]):
            # the cluster DNS and the ingress controller watch the live state, as CoreDNS and
            # ingress-nginx the API server; the controller keeps nginx's files in the pod's own directory
            env = {**env, "PODNET_CONTROL_SOCKET": str(self.layout.socket_path),
                   "PODNET_NGINX_DIR": str(self.layout.ingress_controller_dir(pod.namespace, pod.name,
                                                                              spec.get("name")))}
        if argv and argv[1:3] == ["-m", "podnet.mesh.pilot_agent"]:  # its Envoy's files, kept by the supervisor
            traces = self.layout.mesh_traces_file(pod.namespace, pod.name)
            traces.parent.mkdir(parents=True, exist_ok=True)
            env = {**env, PROXY_DIR_ENV: str(self.layout.mesh_proxy_dir(pod.namespace, pod.name)),
                   TRACES_ENV: str(traces), PROXY_UID_ENV: str(proxy_uid(f"{self.layout.cluster}/{pod.ref}"))}
        created_late = container.waiting is not None  # it waited for its config: kubelet says it now
        container.argv, container.env, container.waiting = argv or [], env, None
        container.note = behaviour.summary() if behaviour.runs == images.STANDIN else ""
        if argv is None:
            container.argv, container.note = self._no_behaviour(pod, spec, container, env)
        workdir = spec.get("workingDir")
        if workdir and Path(workdir).is_dir():
            container.workdir = workdir
        elif workdir:  # podnet does not create directories on the host it could not remove again
            container.note = (container.note + "; " if container.note else "") + \
                f"workingDir {workdir} does not exist on this host: running in /"
        self._start(sandbox, container)
        if created_late:
            self.events.append((sandbox.ref, container.name, "Normal", "Created", f"Created container: {container.name}"))
            self.events.append((sandbox.ref, container.name, "Normal", "Started", f"Started container {container.name}"))
        return True

    def take_events(self) -> list[tuple[str, str | None, str, str, str]]:
        """What kubelet would have recorded since the last call (Runtime.events), taken."""
        taken, self.events = self.events, []
        return taken

    def _sidecars_started(self, sandbox: PodSandbox) -> bool:
        """Whether every sidecar of the pod runs and, if it is a podnet program (the mesh's
        proxy), has said so: the app containers may start."""
        for container in sandbox.containers:
            if container.sidecar and container.waiting and container.waiting[0] in CONFIG_ERRORS:
                return False  # not created yet: it may be, once its ConfigMap or Secret is there
            if container.sidecar and not container.waiting:
                if not container.running:
                    return False
                if signals_start(container.argv) and not started_file(self.layout, sandbox.ref, container).exists():
                    return False
        return True

    def _start_held(self, sandbox: PodSandbox) -> None:
        if any(c.held for c in sandbox.containers) and self._sidecars_started(sandbox):
            for container in sandbox.containers:
                if container.held:
                    container.held = False
                    self._create(sandbox, container)

    def _stop_sidecars_when_done(self, sandbox: PodSandbox) -> None:
        """A pod that does not restart its containers (a Job's) is done once its app containers
        have exited: kubelet then stops its sidecars, which are not started again, and the pod
        finishes (the sidecar complaint native sidecars answer)."""
        pod = sandbox.pod
        if pod is None or pod.spec.get("restartPolicy", "Always") == "Always":
            return
        if not app_containers_done(sandbox):
            return
        for container in sandbox.containers:
            if container.sidecar and container.restart_policy == "Always":
                container.restart_policy = "Never"
                container.next_start = 0.0
                if container.running:
                    _signal_group(container.process, signal.SIGTERM)

    def _start_sandbox(self, pod: KubeObject, netns: str) -> subprocess.Popen:
        if pod.spec.get("hostNetwork"):
            hostname = pod.spec.get("nodeName")  # hostNetwork pods share the node's UTS namespace
        else:
            hostname = pod.spec.get("hostname") or pod.name
            if pod.spec.get("setHostnameAsFQDN") and pod.spec.get("subdomain"):
                domain = self.cluster.config.networking.dns_domain
                hostname = f"{hostname}.{pod.spec['subdomain']}.{pod.namespace}.svc.{domain}"
        script, extra = 'hostname "$0" && exec sleep infinity', []
        if pod.spec.get("hostNetwork") and pod.spec.get("dnsPolicy") == "ClusterFirstWithHostNet":
            # the node's network but the cluster DNS: kubelet's resolv.conf for this pod alone,
            # bound over the node's in the mount namespace `ip netns exec` made for the sandbox
            own = self.layout.state_dir / "hostnet" / f"{pod.namespace}_{pod.name}.resolv.conf"
            own.parent.mkdir(parents=True, exist_ok=True)
            own.write_text(resolv_conf(pod, self.cluster).render())
            script, extra = 'mount --bind "$1" /etc/resolv.conf && ' + script, [str(own)]
        if serviceaccount.has_token(self.layout, pod.namespace, pod.name):
            # the projected ServiceAccount volume, in the sandbox's own mount namespace
            serviceaccount.ensure_mountpoint()
            extra.append(str(self.layout.serviceaccount_dir(pod.namespace, pod.name)))
            script = serviceaccount.mount_script(f'"${len(extra)}"') + " && " + script
        return subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--uts", "--fork", "--kill-child", "--",
             "sh", "-c", script, hostname[:64], *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def _no_behaviour(self, pod: KubeObject, spec: dict, container: Container,
                      env: dict[str, str]) -> tuple[list[str], str]:
        image = str(spec.get("image") or "")
        if image.rsplit("/", 1)[-1].startswith(("nginx:", "nginx@")) or image.rsplit("/", 1)[-1] == "nginx":
            return self._nginx(pod, spec), "nginx: the host's nginx with a default page"
        if images.behaviour_of(spec).image == "redis-server":
            data = self.layout.state_dir / "redis" / f"{pod.namespace}_{pod.name}_{spec.get('name')}"
            data.mkdir(parents=True, exist_ok=True)
            return redis_argv(spec, env, str(data)), f"redis: the host's redis-server, its data in {data}"
        note = f"podnet has no behaviour for image {image} and no command was given: the container idles"
        return [sys.executable, "-m", "podnet.agnhost.pause_image"], note

    def _nginx(self, pod: KubeObject, spec: dict) -> list[str]:
        root = self.layout.state_dir / "nginx" / f"{pod.namespace}_{pod.name}_{spec.get('name')}"
        (root / "html").mkdir(parents=True, exist_ok=True)
        (root / "html" / "index.html").write_text(NGINX_PAGE)
        for path in (root.parent, root, root / "html"):  # nginx's workers (nobody) read the page
            path.chmod(0o755)
        (root / "html" / "index.html").chmod(0o644)
        (root / "nginx.conf").write_text(
            f"pid {root}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
            f"http {{\n  access_log /dev/stdout;\n  client_body_temp_path {root}/tmp;\n"
            f"  server {{\n    listen 80;\n    root {root}/html;\n  }}\n}}\n")
        return ["nginx", "-c", str(root / "nginx.conf"), "-g", "daemon off;"]

    def _wait_for_sandbox(self, sandbox: PodSandbox, timeout: float = 5.0) -> None:
        """The pause process must be inside its namespaces before containers join it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sandbox_pid(sandbox) is not None:
                return
            if sandbox.pause.poll() is not None:
                raise RuntimeError(f"the sandbox of {sandbox.ref} exited ({sandbox.pause.returncode})")
            time.sleep(0.01)
        raise RuntimeError(f"the sandbox of {sandbox.ref} did not start within {timeout}s")

    @staticmethod
    def sandbox_pid(sandbox: PodSandbox) -> int | None:
        """The pause process itself: the innermost child of `ip netns exec … unshare --fork`."""
        if sandbox.found is not None:
            parent, pid = sandbox.found
            try:  # still its parent's child: the same process (a pid is not reused while it lives)
                if Path(f"/proc/{parent}/task/{parent}/children").read_text().split()[:1] == [str(pid)]:
                    return pid
            except OSError:
                pass
            sandbox.found = None
        parent, pid = None, sandbox.pause.pid
        for _ in range(4):
            children = Path(f"/proc/{pid}/task/{pid}/children")
            try:
                kids = children.read_text().split()
            except OSError:
                return None
            if not kids:
                try:  # the process may be exec'ing or gone by now: not (yet) the sandbox
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    return None
                if cmdline[:2] != [b"sleep", b"infinity"]:
                    return None
                if parent is not None:
                    sandbox.found = (parent, pid)
                return pid
            parent, pid = pid, int(kids[0])
        return None

    def container_environment(self, sandbox: PodSandbox, name: str) -> dict[str, str] | None:
        """The environment container `name` runs with (what kubelet's exec probes and hooks see,
        as they run in the container); None when the sandbox has no such container."""
        container = next((c for c in sandbox.containers if c.name == name), None)
        if container is None:
            return None
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **container.env}

    def enter_argv(self, sandbox: PodSandbox, argv: list[str], workdir: str | None = None) -> list[str]:
        """argv run inside the pod: its network, hostname and mount (resolv.conf, hosts)."""
        pid = self.sandbox_pid(sandbox)
        if pid is None:
            raise RuntimeError(f"the sandbox of {sandbox.ref} is not running")
        wd = [f"--wd={workdir}"] if workdir else []
        return ["nsenter", "-t", str(pid), "--net", "--uts", "--mount", *wd, "--", *argv]

    def _start(self, sandbox: PodSandbox, container: Container) -> None:
        log = open(container.log, "ab")
        container.log_starts.append(log.tell())  # append mode opens at the end
        try:
            if container.note:
                log.write(f"podnet: {container.note}\n".encode())
                log.flush()
            env = self.container_environment(sandbox, container.name) or {}
            if signals_start(container.argv):
                path = started_file(self.layout, sandbox.ref, container)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)
                env[STARTED_ENV] = str(path)
            container.process = subprocess.Popen(self.enter_argv(sandbox, container.argv, container.workdir),
                                                 stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            container.started_at = time.time()
        finally:
            log.close()

    def reap(self) -> None:
        """Apply restartPolicy to containers that exited (call periodically), each started again
        when kubelet's back-off allows (podnet.crashloop). A sandbox that died is made again, as
        kubelet recreates a pod sandbox."""
        now = time.monotonic()
        for sandbox in self.pods.values():
            if sandbox.terminating:
                continue
            if sandbox.pause.poll() is not None or self.sandbox_pid(sandbox) is None:
                self._recreate_sandbox(sandbox)
                continue
            for container in sandbox.containers:
                if container.waiting and container.waiting[0] == "ErrImagePull" and now >= container.backoff_at:
                    container.waiting = ("ImagePullBackOff", images.pull_backoff(container.image))
                if container.waiting and container.waiting[0] in CONFIG_ERRORS and now >= container.backoff_at:
                    if container.sidecar or self._sidecars_started(sandbox):
                        self._create(sandbox, container)  # kubelet's next sync tries again
                if container.process is None or container.process.poll() is None:
                    continue
                if container.last_exit is None:
                    self._exited(container, now)
                self._restart_if_due(sandbox, container, now)
            self._start_held(sandbox)
            self._stop_sidecars_when_done(sandbox)

    @staticmethod
    def _exited(container: Container, now: float) -> None:
        """kubelet sees the container's process ended: it restarts per restartPolicy, at once or
        after its back-off window (next_start)."""
        code = container.process.returncode
        container.last_exit, container.finished_at = code, now
        if container.restart_policy == "Always" or (container.restart_policy == "OnFailure" and code != 0):
            container.next_start = crashloop.restart_at(container.backoff, now)

    def _restart_if_due(self, sandbox: PodSandbox, container: Container, now: float) -> None:
        if not container.next_start or now < container.next_start:
            return
        max_period = self.cluster.config.kubelet.max_container_restart_period
        container.backoff = crashloop.restarted(container.backoff, container.finished_at, now, max_period)
        container.restarts += 1
        container.next_start = 0.0
        container.last_exit = None
        self._start(sandbox, container)

    def kill_container(self, ref: str, name: str) -> None:
        """What kubelet does to a container that fails liveness: kill it; reap() restarts it."""
        sandbox = self.pods.get(ref)
        for container in sandbox.containers if sandbox else []:
            if container.name == name and container.running:
                _signal_group(container.process, signal.SIGKILL)

    def begin_termination(self, ref: str) -> PodSandbox | None:
        """The pod is being deleted: from now on reap leaves it alone (no restart of a container
        that exits at SIGTERM, no new sandbox). Its sandbox, or None if it has none."""
        sandbox = self.pods.get(ref)
        if sandbox is not None:
            sandbox.terminating = True
        return sandbox

    @staticmethod
    def stop_container(container: Container, deadline: float, interrupted: threading.Event) -> str:
        """kubelet's StopContainer after the preStop hook: SIGTERM to the container's processes,
        then wait until they exit or the grace period ends at `deadline` (monotonic), then
        SIGKILL. "exited" (at SIGTERM, or before), "killed" (the grace period ran out) or
        "interrupted" (`interrupted` was set: `podnet down` kills everything itself)."""
        process = container.process
        if process is None or process.poll() is not None:
            return "exited"
        _signal_group(process, signal.SIGTERM)
        while process.poll() is None:
            if interrupted.is_set():
                return "interrupted"
            if time.monotonic() >= deadline:
                _signal_group(process, signal.SIGKILL)
                process.wait()
                return "killed"
            interrupted.wait(min(TERMINATION_POLL, max(0.0, deadline - time.monotonic())))
        return "exited"

    def _recreate_sandbox(self, sandbox: PodSandbox) -> None:
        """kubelet's answer to a dead sandbox: kill what is left of the pod, make the sandbox
        again in the same network namespace, and start the containers again as after any exit
        (restartPolicy, back-off)."""
        for container in sandbox.containers:
            if container.process is not None and container.process.poll() is None:
                _signal_group(container.process, signal.SIGKILL)
                container.process.wait()
        _signal_group(sandbox.pause, signal.SIGKILL)
        sandbox.pause.wait()
        sandbox.pause, sandbox.found = self._start_sandbox(sandbox.pod, sandbox.netns), None
        self._wait_for_sandbox(sandbox)
        now = time.monotonic()
        for container in sandbox.containers:
            if container.process is None:  # its image cannot be pulled: it never started
                continue
            if container.last_exit is None:
                self._exited(container, now)
            self._restart_if_due(sandbox, container, now)

    def kill_pods(self, refs: list[str]) -> None:
        """Every process of the pods (sandboxes and containers) SIGKILLed at once, as when their
        node loses power; waits until they are gone. The pods stay, their sandboxes dead."""
        sandboxes = [self.pods[ref] for ref in refs if ref in self.pods]
        processes = [p for s in sandboxes for p in [s.pause, *(c.process for c in s.containers if c.process)]]
        for process in processes:
            _signal_group(process, signal.SIGKILL)
        for process in processes:
            process.wait()

    def reboot_pod(self, ref: str) -> PodSandbox | None:
        """The pod after its node rebooted (kill_pods first): kubelet starts afresh, its back-off
        entries lost with it, and makes the sandbox again; each container starts at once as
        restartPolicy allows, its restart counted (kubelet reads the count of the container it
        finds exited). The sandbox, or None if the pod is not here or is being deleted."""
        sandbox = self.pods.get(ref)
        if sandbox is None or sandbox.terminating:
            return None
        for container in sandbox.containers:
            container.backoff = None
            if container.next_start:  # it was waiting out a back-off the reboot forgot: due now
                container.next_start = time.monotonic()
        self._recreate_sandbox(sandbox)
        return sandbox

    def stop_pod(self, ref: str, grace: float = 2.0) -> None:
        self.stop_pods([ref], grace)

    def stop_pods(self, refs: list[str], grace: float = 2.0) -> None:
        """SIGTERM to every process of the pods at once, one grace period, then SIGKILL."""
        sandboxes = [s for s in (self.pods.pop(ref, None) for ref in refs) if s is not None]
        processes = [p for s in sandboxes for p in [*(c.process for c in s.containers if c.process), s.pause]]
        for process in processes:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for sandbox in sandboxes:
            if not sandbox.host_network:
                remove_pod_files(sandbox.netns)
            serviceaccount.remove_files(self.layout, sandbox.namespace, sandbox.name)
            if self.tokens is not None:
                self.tokens.forget(sandbox.ref)

    def stop_all(self) -> None:
        self.stop_pods(list(self.pods))


def container_spec(pod: KubeObject, name: str) -> dict | None:
    """The pod's container (or native sidecar) of that name, as its spec says it."""
    specs = [*(pod.spec.get("containers") or []), *(c for c in pod.spec.get("initContainers") or [] if is_sidecar(c))]
    return next((c for c in specs if c.get("name") == name), None)


def app_containers_done(sandbox: PodSandbox) -> bool:
    """Whether the pod's app containers have all exited for good (none runs, none waits to start
    or to be restarted): a pod that does not restart them is then done, once its sidecars stop."""
    apps = [c for c in sandbox.containers if not c.sidecar]
    return bool(apps) and not any(c.process is None or c.running or c.last_exit is None or c.next_start for c in apps)


STARTED_PROGRAMS = ("podnet.dns", "podnet.ingressnginx", "podnet.agnhost", "podnet.agnhost.standin",
                    "podnet.mesh.pilot_agent")  # they call podnet.host.started


def signals_start(argv: list[str]) -> bool:
    """Whether the container runs one of podnet's stand-ins, which say when they have started
    (podnet.host.started)."""
    return len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2] in STARTED_PROGRAMS


def started_file(layout: ClusterLayout, ref: str, container: Container) -> Path:
    """The file the container's current instance touches once its program runs."""
    return layout.state_dir / "started" / f"{ref.replace('/', '_')}_{container.name}.{container.restarts}"


def program_started(layout: ClusterLayout, ref: str, container: Container, since: float, now: float) -> bool:
    """Whether the container counts as started for kubelet's prober: it runs and, if its program
    says when it has started, it did (or STARTED_GRACE passed since `since`, its start as the
    prober saw it)."""
    if not container.running:
        return False
    if not signals_start(container.argv) or now - since >= STARTED_GRACE:
        return True
    return started_file(layout, ref, container).exists()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    if process.pid <= 0:  # an adopted process that had ended (podnet.linux.adopted): killpg(0) is our own group
        return
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def remove_pod_files(netns: str) -> None:
    etc = ETC_NETNS / netns
    for name in ("resolv.conf", "hosts"):
        try:
            (etc / name).unlink()
        except FileNotFoundError:
            pass
    try:
        etc.rmdir()
    except OSError:
        pass
