"""The supervisor's core: the running cluster, from `podnet up` to `podnet down`.

`Supervisor` reads the desired state (state.py), computes the cluster with the same control
plane as the simulator, builds the network, attaches and starts every pod, and changes all of
that on `apply`, `delete` and readiness changes — deciding what to do with reconcile.py,
doing it through the data plane (the kernel) and the runtime (the processes). Pods that stay
keep their names and addresses, as in a real cluster. What `get` and `describe` show of
running pods comes from status.py; a pod that goes away terminates first, in the background,
as the API server, the EndpointSlice controller and kubelet do it (termination.py). The process
around it (main, the loop that reaps and recomputes) is loop.py, the control socket server.py. The API server's own fields (uid,
creationTimestamp, resourceVersion, generation) are apimeta.py's; events (what kubelet, the
scheduler and the controllers say happened) are recorded where it happens, in events.py's store.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster, incremental, jobs, workloads
from podnet.controlplane.cluster import ClusterChange
from podnet.controlplane.system import apiserver_certificate_sans
from podnet.errors import PodnetError
from podnet.host.layout import ClusterLayout
from podnet.host.netns import kill_pids
from podnet.linux import counted, strays
from podnet.linux.counted import CountedDict
from podnet.linux.dataplane import DataPlane
from podnet.linux.l2announce import L2Announcer
from podnet.linux.netpol import NodePolicy
from podnet.linux.meshproxies import MeshProxies
from podnet.linux.netlink import Pyroute2Netlink
from podnet.linux.prober import ProbeManager
from podnet.linux.runtime import CONFIG_ERRORS, Runtime
from podnet.linux.serviceaccount import ServiceAccountTokens
from podnet.linux.supervisor import reconcile, record, termination
from podnet.linux.supervisor.apimeta import ApiMeta
from podnet.linux.supervisor.apiserver import ApiServerProcess
from podnet.linux.supervisor.controllers import ControllerEvents
from podnet.linux.supervisor.durable import Journal
from podnet.linux.supervisor.events import EventStore, involved, posted_event
from podnet.linux.supervisor.state import ClusterState
from podnet.linux.supervisor.status import (
    finished_phase,
    job_starts,
    live_digest,
    observed_jobs,
    POLICY_KINDS,
    live_readiness,
    object_bodies,
    pods_status,
    sync_status,
)
from podnet.pki.authority import ClusterCredentials
from podnet.policy import counter_owner
from podnet.proxy import NodeProxy
from podnet.semantics.networkpolicy import PolicyEngine, same_policy_inputs

log = logging.getLogger("podnet.supervisor")
POLICY_RETRY_FIRST, POLICY_RETRY_MAX = 0.2, 5.0  # seconds between retries of a failed policy sync
# a restarted supervisor counts on from the recorded generation plus this: the dead one may have
# moved it a few times after its last write (the loop writes every REAP_INTERVAL), and a watcher
# holding one of those must still see the next change as one
GENERATION_MARGIN = 1000


class Steps:
    """How long each step of a change took, for the log (where an apply's time goes)."""

    def __init__(self):
        self.last = time.monotonic()
        self.taken: list[tuple[str, float]] = []

    def done(self, step: str) -> None:
        now = time.monotonic()
        self.taken.append((step, now - self.last))
        self.last = now

    def __str__(self) -> str:
        total = sum(seconds for _, seconds in self.taken)
        return f"{total * 1e3:.0f} ms (" + ", ".join(f"{step} {seconds * 1e3:.0f}" for step, seconds in self.taken) + ")"


class Supervisor:
    """The running cluster. The kernel and the processes are reached through the data plane,
    the runtime and the netlink its factories make (tests pass fakes: tests/supervisor_fakes.py)."""

    def __init__(self, layout: ClusterLayout, state: ClusterState | None = None, *,
                 dataplane_factory=DataPlane, runtime_factory=Runtime, netlink_factory=Pyroute2Netlink,
                 policy_factory=NodePolicy):
        self.layout = layout
        self.state = state or ClusterState(layout)
        self.config = self.state.config()
        self.inputs: list[dict[str, Any]] = self.state.resume_manifests()
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self._cluster: Cluster | None = None
        self.generation = 0  # bumped whenever the cluster state changes (watchers wait for it)
        # notified at every bump: a `watch` request (the cluster DNS, the ingress controller)
        # answers the moment the generation passes the one its watcher holds
        self.generation_changed = threading.Condition()
        self.dataplane_factory, self.runtime_factory = dataplane_factory, runtime_factory
        self.netlink_factory, self.policy_factory = netlink_factory, policy_factory
        self.dataplane = None
        self.runtime: Runtime | None = None
        self.attached: dict[str, str] = {}  # pod ref -> the netns its processes run in
        # the observed state: pods handed to the data plane and the runtime, whether or not
        # they started (one that failed is not tried again until it is deleted and applied)
        self.started: set[str] = set()
        # pods being deleted (termination.py): ref -> the pod's body marked deleted, kept in the
        # computed cluster until kubelet's side has stopped its processes (the thread, by ref)
        self.terminating: dict[str, dict[str, Any]] = CountedDict()
        self.terminations: dict[str, threading.Thread] = {}
        # ref -> when its grace period ends (time.time()): recorded, so a restarted supervisor
        # goes on with what is left of it, as kubelet does from deletionTimestamp
        self.grace_deadlines: dict[str, float] = CountedDict()
        self.proxies: dict[str, Any] = {}  # node -> its kube-proxy (podnet.proxy.NodeProxy)
        self.policies: dict[str, Any] = {}  # node -> its NetworkPolicy table (podnet.linux.netpol.NodePolicy)
        self.policy_errors: dict[str, str] = {}  # node -> why its last policy sync failed
        # node -> the generation its last good policy sync loaded; the live `trace` compares it with
        # the generation it read, so a sync that leaves a node out must still stamp it if its rules hold
        self.policy_synced: dict[str, int] = {}
        self._policy_retry_at, self._policy_retry_delay = 0.0, POLICY_RETRY_FIRST
        self._rules_check_at = 0.0  # time.monotonic() of check_rules' next look (kubeProxy.syncPeriod)
        self.tokens = None  # kubelet's ServiceAccount token manager (podnet.linux.serviceaccount), with its runtime only
        self.mesh: MeshProxies | None = None  # the meshed pods' proxies (podnet.linux.meshproxies), with kubelet's runtime only
        self.announcer = None  # LoadBalancer IPs on the LAN (podnet.linux.l2announce)
        self.prober = None  # kubelet's probes (podnet.linux.prober.ProbeManager)
        # what the next recompute is for: the pods whose readiness changed or whose termination
        # ended (recomputed alone), or all of it (`_recompute_full`: an adoption, a forced delete)
        self._recompute_refs: set[str] = set()
        self._recompute_full = False
        self._recompute_lock = threading.Lock()  # the prober's thread adds to the refs
        self.apiserver: ApiServerProcess | None = None  # the cluster's Kubernetes API (apiserver.py)
        # kubelet's word on each running pod's containers: ref -> container -> {"ready", "started"}
        self.container_state: dict[str, dict[str, dict[str, bool]]] = CountedDict()
        self.state_changed = threading.Event()
        self.meta = ApiMeta()
        self.events = EventStore()
        self.controllers = ControllerEvents()  # what the controllers say of each change (controllers.py)
        self._backoffs: set[tuple[str, str, int]] = set()  # (pod ref, container, restarts) BackOff emitted
        self._backoff_changes = counted.ChangedRefs()  # the pods changed since BackOff was looked for
        # the Job controller (_sync_jobs): the pods changed since it looked, the generation it
        # looked at, when a Job's time comes next, the Jobs whose end was said
        self._job_changes = counted.ChangedRefs()
        self._jobs_generation = -1
        self._jobs_wake: float | None = None
        self._jobs_said: set[tuple] = set()
        # the record (record.py): running.json/running.log as last written (keyed: `_written`),
        # the change count it was written at, the pods changed since (counted.py), those whose
        # processes are being stopped (looked at each time: a process ending is no assignment);
        # the API fields' journal (apimeta.json/apimeta.log) and what it last said
        self._process_ids = record.ProcessIds()
        self._recorded_count: int | None = None
        self._written: dict[str, Any] | None = None
        self._record_changes = counted.ChangedRefs()
        self._record_polled: set[str] = set()
        self.pods_journal = Journal(self.state.directory, record.RECORD, record.RECORD_LOG)
        self._bodies_changed = True
        self._pods_changed: set[str] = set()  # refs of the pods computed again since
        self.running_pods = reconcile.RunningPods()  # which pods the cluster wants running (pod_actions)
        self._inputs_indexed: tuple[list[dict[str, Any]], Mapping[tuple, dict[str, Any]]] | None = None
        self.meta_journal = Journal(self.state.directory, record.META, record.META_LOG)
        # the pods' live status for the API fields: the count when last noted, the pods changed
        # since, those being stopped
        self._live_noted: int | None = None
        self._live_changes = counted.ChangedRefs()
        self._live_everything = False  # the refs were let go (persist): the next look is at every pod
        self._live_polled: set[str] = set()
        self._journaled: tuple[int, dict[str, Any]] | None = None  # (generation, controllers) last journalled
        self.adopted: list[str] = []  # the pods this supervisor took over from a dead one (adopt)
        self._events_recorded = 0  # the event store's version events.json holds
        self._events_lock = threading.Lock()

    @property
    def cluster(self) -> Cluster | None:
        return self._cluster

    @cluster.setter
    def cluster(self, value: Cluster) -> None:
        self._install(value, ClusterChange.between(self._cluster, value))

    def _install(self, value: Cluster, change: ClusterChange) -> None:
        """The cluster is `value` now (`change`: from the one before): a new generation, the API
        fields and the controllers' events of what changed."""
        self._cluster = value
        change.carry_index()
        pods = [key for key, _ in change.changed if key[0] == "Pod"] + [key for key in change.gone if key[0] == "Pod"]
        if pods:  # running.json holds the running pods' bodies
            self._bodies_changed = True
            self._pods_changed.update(f"{namespace}/{name}" for _, namespace, name in pods)
        with self.generation_changed:
            self.generation += 1
            self.generation_changed.notify_all()
        for obj, type_, reason, message, component in self.controllers.said(value, self.meta.observe(value, change)):
            self.record_event(obj, type_, reason, message, component)

    def wait_for_generation(self, after: int, timeout: float) -> int:
        """The generation once it is no longer `after` (it only grows, across restarts too:
        a restarted supervisor counts on above the recorded one), or the current one after
        `timeout` seconds: a long poll, watchers learn of a change at once without asking
        every few ms."""
        with self.generation_changed:
            self.generation_changed.wait_for(lambda: self.generation != after or self.stopping.is_set(), timeout)
            return self.generation

    def stop_watchers(self) -> None:
        """`down`: let the watches waiting for a change answer now."""
        with self.generation_changed:
            self.generation_changed.notify_all()

    # -- events ---------------------------------------------------------------------------------

    def record_event(self, obj, type_: str, reason: str, message: str, component: str,
                     field_path: str | None = None) -> None:
        about = involved(obj)
        about["uid"] = self.meta.uid(obj)  # a pod made again under its name is another object
        if field_path:
            about["fieldPath"] = field_path
        host = obj.spec.get("nodeName") if component == "kubelet" else None
        self.events.record(about, type_, reason, message, component, host)

    def _proxy_synced(self, node: str, error: str | None) -> None:
        """A node's kube-proxy says its sync was refused (`error`; the kernel keeps the previous
        rules, it retries) or holds again: a Warning event on the Node, and a Normal one when it
        recovers (`get events`, `describe node`). Called from the proxy's thread: no lock taken
        here (stop() holds the lock while it waits for that thread)."""
        about = self.cluster.get("Node", "", node) if self.cluster is not None else None
        if about is None:
            return
        if error is not None:
            self.record_event(about, "Warning", "SyncProxyRulesFailed",
                              "kube-proxy could not sync the rules; the previous rules stay in force, "
                              f"retrying: {error}", "kube-proxy")
        else:
            log.info("proxy sync on node %s succeeded again", node)
            self.record_event(about, "Normal", "SyncProxyRulesRecovered",
                              "kube-proxy synced the rules again after a failure", "kube-proxy")

    def _proxy_rules_changed(self, node: str, reason: str) -> None:
        """A node's kube-proxy found its rules changed outside it (its canary) and syncs them
        all again: a Warning event on the Node. Called from the loop's thread, lock not held."""
        about = self.cluster.get("Node", "", node) if self.cluster is not None else None
        if about is not None:
            self.record_event(about, "Warning", "ProxyRulesChanged",
                              f"kube-proxy's rules were changed outside it ({reason}); syncing all of them again",
                              "kube-proxy")

    def check_rules(self) -> None:
        """kube-proxy's canary on every node (each proxy queues its own full resync), and the
        same for the NetworkPolicy tables: a node whose base chains changed outside podnet has
        both tables replaced at once, with a log line and a Warning event on the Node. Called by
        the loop every round, it looks once per kubeProxy.syncPeriod (1 s by default); the policy
        part waits for a round where no one else holds the lock (whoever holds it is syncing
        anyway). A netlink round trip per node and table owner while nothing changed
        (podnet.proxy.canary)."""
        now = time.monotonic()
        if now < self._rules_check_at or self.config is None:
            return
        self._rules_check_at = now + self.config.kube_proxy.sync_period
        for proxy in list(self.proxies.values()):
            try:
                if hasattr(proxy, "check"):  # (tests stand in objects of their own)
                    proxy.check()
            except Exception:
                log.exception("checking kube-proxy's rules on node %s failed", proxy.node)
        if not self.policies or not self.lock.acquire(blocking=False):
            return
        try:
            changed: dict[str, str | None] = {}  # node -> what changed (None: the periodic resync)
            for node, policy in self.policies.items():
                if node in self.policy_errors or not hasattr(policy, "check"):
                    continue  # a failed node is retried, whole, anyway
                try:
                    reason = policy.check()
                except OSError as exc:
                    log.debug("NetworkPolicy canary on node %s could not be read: %s", node, exc)
                    continue
                if reason is not None:
                    changed[node] = reason
                elif policy.resync_due():
                    log.info("NetworkPolicy on node %s: periodic full resync", node)
                    changed[node] = None
            for node, reason in changed.items():
                if reason is None:
                    continue
                log.warning("NetworkPolicy on node %s: %s outside podnet; replacing its tables", node, reason)
                about = self.cluster.get("Node", "", node)
                if about is not None:
                    self.record_event(about, "Warning", "NetworkPolicyRulesChanged",
                                      f"the NetworkPolicy rules were changed outside podnet ({reason}); "
                                      "loading them again", "kube-network-policies")
            if changed:
                self._sync_policies(set(changed))  # a failure goes to policy_errors: retry_policies
        finally:
            self.lock.release()

    def post_event(self, message: dict[str, Any]) -> dict[str, Any]:
        """An event a controller in a pod reports (the `event` op)."""
        with self.lock:
            cluster = self.cluster
        return posted_event(self.events, cluster, message)

    # -- computing ------------------------------------------------------------------------------

    def _compute(self, inputs: list[dict[str, Any]], keep: Cluster | None,
                 terminating: list[dict[str, Any]] | None = None, observed: jobs.Observed | None = None) -> Cluster:
        """The cluster for `inputs` and the pods being deleted (`terminating`, by default those
        the supervisor holds now: pass a copy taken under the lock when computing outside it,
        and of `observed`, kubelet's word on the Jobs' pods)."""
        marked = list(self.terminating.values()) if terminating is None else terminating
        return reconcile.desired_cluster(reconcile.with_terminating(inputs, marked), self.config,
                                         self._live_readiness, keep, observed or self._job_observed())

    def _job_observed(self) -> jobs.Observed:
        """The time and kubelet's word on the Jobs' pods, for the Job controller (take the lock)."""
        sandboxes = self.runtime.pods if self.runtime is not None else {}
        starts = job_starts(self.cluster, self.meta) if self.cluster is not None else {}
        return observed_jobs(sandboxes, self.container_state, starts, standins=self.config.standins)

    def _live_readiness(self, pod) -> bool | None:
        return live_readiness(self.container_state, pod, self.config.standins)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster = self._compute(self.inputs, None)
        self.dataplane = self.dataplane_factory(self.layout, self.cluster)
        self.runtime = self.runtime_factory(self.layout, self.cluster)
        self._credentials()
        self.dataplane.build()
        self._start_services()
        self.runtime.node_files(self.cluster)
        for pod in reconcile.running_pods(self.cluster):
            self._start_pod(pod)
        self.persist(force=True)

    def adopt(self, saved: dict[str, Any]) -> list[str]:
        """A restarted supervisor (record.py): take over the pods the dead one left running —
        their namespaces, addresses and processes stay as they are — then sync the kernel's rules
        again and let the loop reconcile what changed meanwhile (a container that died is
        restarted by reap, per restartPolicy; a pod wanted but not running is started; a pod the
        dead one started but had not recorded is stopped and started again — by its namespace,
        or for a hostNetwork pod by its processes' UTS namespace, strays.py; a termination
        under way goes on until its recorded grace deadline). The generation counts on above
        the recorded one. Returns the refs of the pods adopted."""
        meta = saved["meta"]  # record.read_meta: the snapshot, then each change journalled after it
        self.meta.restore(meta["state"]["apimeta"])
        controllers, generation = meta["state"]["controllers"], meta["state"]["generation"]
        for change in meta["changes"]:
            if change.get("apimeta"):
                self.meta.apply(change["apimeta"])
            controllers = change.get("controllers", controllers)
            generation = change["generation"]
        self.controllers.restore(controllers)
        self.meta_journal.continue_from(meta["seq"])
        self.pods_journal.continue_from(int(saved.get("seq") or 0))
        try:
            events = record.read_events(self.state.directory)
        except record.RecordError as exc:
            events = None
            log.warning("the events are not carried over: %s", exc)
        if events is not None:
            self.events.restore(events)
            self._events_recorded = self.events.version
        self.container_state = CountedDict((ref, dict(states)) for ref, states in saved["containerState"].items())
        self.terminating = CountedDict(saved["terminating"])
        self.grace_deadlines = CountedDict((ref, float(at)) for ref, at in (saved.get("graceDeadlines") or {}).items())
        # the watchers (cluster DNS, ingress controller, `get -w`) hold the dead one's generation:
        # this one counts on above it, so theirs is never taken for the current one
        with self.generation_changed:
            self.generation = int(generation or 0) + GENERATION_MARGIN
        keep = Cluster(config=self.config)
        for body in saved["bodies"]:
            metadata = body["metadata"]
            keep.objects[("Pod", metadata["namespace"], metadata["name"])] = \
                KubeObject("Pod", metadata["namespace"], metadata["name"], body)
        self.cluster = self._compute(self.inputs, keep)
        self.dataplane = self.dataplane_factory(self.layout, self.cluster)
        self.runtime = self.runtime_factory(self.layout, self.cluster)
        self._credentials()
        self.dataplane.adopt_network()
        adopted = []
        for entry in saved["pods"]:
            ref = f"{entry['namespace']}/{entry['name']}"
            pod = self.cluster.get("Pod", entry["namespace"], entry["name"])
            if pod is None:
                log.warning("%s: recorded as running but no longer in the cluster; it is removed", ref)
                continue
            sandbox = record.adopted_sandbox(entry, pod)
            self.dataplane.adopt(pod, entry["netns"])
            if self.mesh is not None and not sandbox.terminating:  # its proxy's files current (the capture stays)
                try:
                    self.mesh.prepare(pod, self.cluster, None)
                except Exception:
                    log.exception("%s: its proxy's files could not be written again", ref)
            self.attached[ref] = entry["netns"]
            self.started.add(ref)
            self.runtime.pods[ref] = sandbox
            adopted.append(ref)
        for netns in self.dataplane.collect_garbage():
            log.warning("%s: a pod namespace the dead supervisor had not recorded; removed, its pod starts again", netns)
        if getattr(self.dataplane, "real", False):
            self._stop_unrecorded_host_network_pods()
        self._start_services()
        self.runtime.node_files(self.cluster)
        if self.prober is not None:
            for ref in adopted:
                if not self.runtime.pods[ref].terminating:  # readiness as it was until a probe says otherwise
                    self.prober.add_pod(self.runtime.pods[ref], self.container_state.get(ref))
        for ref in [ref for ref in self.terminating if ref in self.runtime.pods]:
            self._begin_termination(ref, resumed=True)  # a deletion under way goes on, with what is left of its grace
        for ref in [ref for ref in self.terminating if ref not in self.runtime.pods]:
            del self.terminating[ref]
            self.grace_deadlines.pop(ref, None)
            self._recompute()
        self._start_waiting()  # a pod wanted but not running: started now
        self.persist(force=True)
        self.adopted = adopted
        return adopted

    def _credentials(self) -> None:
        """The cluster's CA, the API server's and the admin's certificates and the ServiceAccount
        key (podnet.pki), before any pod starts: kubelet's side gives every pod a token signed
        with it. Kept across restarts (`ensure` remakes only what is missing or wrong). Only
        with kubelet's runtime: the supervisor's unit tests run a fake one (and write nothing
        under /run/podnet)."""
        if not hasattr(self.runtime, "tokens"):
            return
        first = self.cluster.nodes[0]
        credentials = ClusterCredentials(self.layout.pki_dir)
        credentials.ensure(*apiserver_certificate_sans(self.config, first.name, first.ip))
        self.tokens = ServiceAccountTokens(self.layout, credentials)
        self.runtime.tokens = self.tokens
        self.mesh = MeshProxies(self.layout)

    def mesh_stats(self, window: float) -> dict[str, Any]:
        """`podnet mesh stat`: each meshed pod's proxy's counters now and at the window's start
        (mesh/stats.py makes the figures), with the pods to group them by."""
        with self.lock:
            if self.mesh is None:
                return {"samples": {}, "pods": []}
            netns = dict(self.attached)
            pods = [pod.body for pod in self.cluster.of_kind("Pod")]
        samples = self.mesh.sample(netns, window)  # (outside the lock: it waits on the proxies)
        return {"samples": samples, "pods": pods}

    def renew_mesh_certificates(self) -> None:
        """The meshed pods' certificates past half their life renewed (called by the loop)."""
        if self.mesh is not None and self.mesh.agents:
            with self.lock:
                self.mesh.renew_due()

    def refresh_tokens(self) -> None:
        """Rewrite the pods' ServiceAccount tokens past 80% of their life (called by the loop);
        a terminating pod's too, as kubelet's, while its grace period lasts."""
        if self.tokens is None:
            return
        with self.lock:
            pods = {ref: sandbox.pod for ref, sandbox in self.runtime.pods.items() if sandbox.pod is not None}
            self.tokens.refresh(pods, self.cluster)

    def _stop_unrecorded_host_network_pods(self) -> None:
        """The processes of hostNetwork pods the dead supervisor started but had not recorded
        (strays.py) are stopped; their pods are not started, so _start_waiting starts them again,
        as collect_garbage does for the others by their namespaces."""
        recorded = [p.pid for s in self.runtime.pods.values()
                    for p in (s.pause, *(c.process for c in s.containers)) if p is not None and p.poll() is None]
        nodes = [self.layout.node_netns(node.name) for node in self.cluster.nodes]
        for netns, pids in strays.unrecorded_pod_processes(nodes, recorded).items():
            log.warning("%s: processes %s belong to a hostNetwork pod the dead supervisor had not recorded; stopped, "
                        "its pod starts again", netns, ", ".join(map(str, pids)))
            kill_pids(pids)

    def record(self) -> dict[str, Any]:
        """What running.json holds now (record.py), made from every pod; call under the lock."""
        return record.listed(self._record_of(self.runtime.pods.keys() | self.container_state.keys()))

    def _record_of(self, refs: Iterable[str]) -> dict[str, Any]:
        """The record (keyed) of the pods among `refs`: the running ones' sandbox entries and
        bodies as computed, their containers' states; the terminations whole (a few)."""
        pods, bodies, states = {}, {}, {}
        for ref in refs:
            if ref in self.container_state:
                states[ref] = self.container_state[ref]
            sandbox = self.runtime.pods.get(ref)
            if sandbox is None:
                continue
            pods[ref] = record.sandbox_record(sandbox, self._process_ids)
            pod = self.cluster.get("Pod", *ref.split("/", 1))
            if pod is not None:
                bodies[ref] = pod.body
        return {"pods": pods, "bodies": bodies, "containerState": states,
                "graceDeadlines": dict(self.grace_deadlines), "terminating": dict(self.terminating)}

    def _looked_at(self, changes: counted.ChangedRefs, polled: set[str]) -> set[str]:
        """The pods a consumer of the runtime's records looks at again: those changed since it
        last looked, and those being stopped (`polled`, kept up to date here): their processes
        end as they are stopped, which assigns nothing."""
        refs = changes.take() | polled
        for ref in refs:
            sandbox = self.runtime.pods.get(ref)
            if sandbox is not None and sandbox.terminating:
                polled.add(ref)
            else:
                polled.discard(ref)
        return refs

    def persist(self, force: bool = False, events: bool = True) -> None:
        """Write what changed of the record (record.py): a line of the API fields, the controllers'
        word and the generation in the journal; running.json if the pods' processes, their
        states or their computed bodies changed; events.json if the event store did. The loop
        asks every round; a change, an adoption, a start write at once (`force`: all of it).
        Only the pods changed since the last writing are looked at (counted.py). A write to the
        cluster leaves the events to the loop's next round (`events`): they are a history,
        written whole, not what the write must wait for."""
        if events or force:
            self._persist_events(force)
        with self.lock:
            if self.runtime is None or self.cluster is None:
                return
            if self._live_changes.pending() > 2 * len(self.runtime.pods) + 1000:
                # nobody asks (no API server): the refs are let go, and the next look is at every pod
                self._live_changes.take()
                self._live_everything = True
            self._journal_meta(force)
            count = counted.count  # read before the record is made: a change meanwhile moves it again
            if force or self._bodies_changed or count != self._recorded_count:
                refs = self._looked_at(self._record_changes, self._record_polled) | self._pods_changed
                written = self._written
                try:
                    if force or written is None or self.pods_journal.due:
                        self._process_ids.forget_except({
                            p.pid for s in self.runtime.pods.values()
                            for p in (s.pause, *(c.process for c in s.containers)) if p is not None})
                        whole = self._record_of(self.runtime.pods.keys() | self.container_state.keys())
                        self.pods_journal.snapshot(record.listed(whole))
                        self._written = whole
                    else:
                        change = record.pods_change(written, self._record_of(refs), refs)
                        if change:
                            self.pods_journal.append(change)
                            record.apply_pods_change(written, change)  # what is on disk now
                except BaseException:
                    self._record_changes.put_back(refs)  # not written: looked at again next time
                    raise
                self._bodies_changed, self._pods_changed = False, set()
                self._recorded_count = count

    def _persist_events(self, force: bool) -> None:
        """events.json, if the event store changed since it was written (its own lock: the
        supervisor's is not held for it when the loop writes them)."""
        with self._events_lock:
            version = self.events.version  # read before the export: an event meanwhile is written next time
            if force or version != self._events_recorded:
                record.write_events(self.state.directory, self.events.export())
                self._events_recorded = version

    def _inputs_index(self) -> Mapping[tuple, dict[str, Any]]:
        """self.inputs by key, kept from the change that made them (or made now)."""
        if self._inputs_indexed is None or self._inputs_indexed[0] is not self.inputs:
            self._inputs_indexed = (self.inputs, reconcile.inputs_by_key(self.inputs))
        return self._inputs_indexed[1]

    def _journal_meta(self, force: bool) -> None:
        """The API fields' journal (durable.Journal): a line of what changed since the last,
        or all of it once the log has outgrown its snapshot (or `force`)."""
        controllers = self.controllers.export()
        if force or self._journaled is None or self.meta_journal.due:
            self.meta_journal.snapshot({"apimeta": self.meta.export(), "controllers": controllers,
                                   "generation": self.generation})
        else:
            change: dict[str, Any] = {"generation": self.generation}
            meta = self.meta.changes()
            if meta is not None:
                change["apimeta"] = meta
            if controllers != self._journaled[1]:
                change["controllers"] = controllers
            if meta is None and len(change) == 1 and self.generation == self._journaled[0]:
                return
            self.meta_journal.append(change)
        self._journaled = (self.generation, controllers)

    def _start_services(self) -> None:
        """kube-proxy on every node, the L2 announcer and the prober — each only where the
        data plane is real (tests drive the supervisor with a fake data plane)."""
        if not getattr(self.dataplane, "real", False):
            return
        netlink = self.netlink_factory()
        try:
            for node in self.cluster.nodes:
                self._start_node_agents(node.name, netlink)
        finally:
            netlink.close()  # an open socket would keep the node's namespace alive after down
        self.announcer = L2Announcer(self.layout)
        self.announcer.sync(self.cluster)
        self.prober = ProbeManager(self.runtime, self.layout, self._probe_changed, self._probe_restart,
                                   on_failure=self._probe_failed)
        if self.tokens is not None:  # the credentials exist (kubelet's runtime, not a test's fake)
            self.apiserver = ApiServerProcess(self.layout)
            self.apiserver.ensure()  # a restarted supervisor keeps the one that runs

    def _start_node_agents(self, node: str, netlink) -> None:
        """A node's kube-proxy and NetworkPolicy table, synced to the cluster before any pod
        of the node starts (never a moment unprotected), and the node's settings they need."""
        networking = self.config.networking
        netns = self.layout.node_netns(node)
        netlink.apply(netns, reconcile.node_changes(networking))
        proxy = NodeProxy(self.layout.cluster, node, netns, networking.proxy_mode,
                          pod_subnet=str(networking.pod_subnet), service_subnet=str(networking.service_subnet),
                          report=self._proxy_synced, noticed=self._proxy_rules_changed)
        self.proxies[node] = proxy  # known before it syncs: a later update retries a sync that fails
        proxy.sync_now(self.cluster)
        policy = self.policy_factory(node, netns)
        self.policies[node] = policy  # likewise: retry_policies syncs it again
        policy.sync(self.cluster)
        self.policy_synced[node] = self.generation

    def _probe_changed(self, ref: str, container: str, ready: bool, started: bool) -> None:
        """From the prober's thread: note it, and let the reconciler recompute."""
        # replaced, not changed in place: the record counts its changes (counted.py)
        self.container_state[ref] = {**self.container_state.get(ref, {}), container: {"ready": ready, "started": started}}
        self._recompute(ref)

    def _probe_failed(self, ref: str, container: str, kind: str, message: str) -> None:
        """A probe attempt failed: kubelet's Unhealthy event, with the probe's message."""
        pod = self.cluster.get("Pod", *ref.split("/", 1))
        if pod is not None:
            self.record_event(pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}", "kubelet",
                              f"spec.containers{{{container}}}")

    def _probe_restart(self, ref: str, container: str) -> None:
        """Liveness (or startup) failed: kill the container; the reaper restarts it with back-off."""
        with self.lock:
            sandbox = self.runtime.pods.get(ref)
            if sandbox is not None and sandbox.terminating:
                return  # it is being stopped anyway, and would not be restarted
            log.info("%s: container %s failed its liveness probe and will be restarted", ref, container)
            pod = self.cluster.get("Pod", *ref.split("/", 1))
            if pod is not None:
                self.record_event(pod, "Normal", "Killing",
                                  f"Container {container} failed liveness probe, will be restarted", "kubelet",
                                  f"spec.containers{{{container}}}")
            self.runtime.kill_container(ref, container)

    def reap(self) -> None:
        """Restart containers that exited, by their restartPolicy (called by the loop)."""
        with self.lock:
            self.runtime.reap()
            self._kubelet_events()
            self._backoff_events()
            self._sync_jobs()

    def _sync_jobs(self) -> None:
        """The Job controller's turn (controlplane/jobs.py decides; compute makes the pods it
        decides, with the same rule): when a Job's pod changed, the cluster changed or a Job's
        time came (a back-off over, a deadline, a TTL), it looks at every Job — a pod to make
        asks for a recomputation, the pods of a Job that finished are killed, a Job whose
        ttlSecondsAfterFinished passed is deleted, and the Job's events are said once."""
        changed = [ref for ref in self._job_changes.take() if (sandbox := self.runtime.pods.get(ref)) is not None
                   and sandbox.pod is not None and (fields.controller_of(sandbox.pod) or {}).get("kind") == "Job"]
        now = time.time()
        if not changed and self._jobs_generation == self.generation and not (self._jobs_wake and now >= self._jobs_wake):
            return
        self._jobs_generation = self.generation
        if not self.cluster.of_kind("Job"):
            self._jobs_wake = None
            return
        observed = self._job_observed()
        owned: dict[tuple[str, str], list[KubeObject]] = {}
        for pod in self.cluster.of_kind("Pod"):
            owner = fields.controller_of(pod)
            if owner and owner.get("kind") == "Job":
                owned.setdefault((pod.namespace, owner.get("name")), []).append(pod)
        wake, expired, remake = [], [], False
        for job in self.cluster.of_kind("Job"):
            pods = owned.get((job.namespace, job.name), [])
            decision = workloads.job_decision(job, pods, observed)
            remake = remake or bool(decision.create)
            for name in decision.kill:
                self._kill_job_pod(f"{job.namespace}/{name}")
            if decision.verdict is not None and job.key not in self._jobs_said:
                self._jobs_said.add(job.key)
                verdict = decision.verdict
                if verdict.type == "Complete":
                    self.record_event(job, "Normal", "Completed", "Job completed", "job-controller")
                else:
                    self.record_event(job, "Warning", verdict.reason, verdict.message, "job-controller")
            if decision.expired:
                expired.append(job)
            elif decision.wake_at is not None:
                wake.append(decision.wake_at)
        self._jobs_wake = min(wake) if wake else None
        if remake:
            self._recompute()
        for job in expired:
            self._delete_finished_job(job)

    def _kill_job_pod(self, ref: str) -> None:
        """A pod of a Job that finished: its containers killed and not restarted (the Job
        controller deletes it upstream; here it stays, Failed, with its Job)."""
        sandbox = self.runtime.pods.get(ref)
        if sandbox is None or sandbox.terminating:
            return
        for container in sandbox.containers:
            if container.restart_policy != "Never":
                container.restart_policy = "Never"
            if container.next_start:
                container.next_start = 0.0
            if container.running:
                log.info("%s: container %s killed: its Job finished", ref, container.name)
                self.runtime.kill_container(ref, container.name)

    def _delete_finished_job(self, job) -> None:
        """ttlSecondsAfterFinished passed (the TTL-after-finished controller): the Job is deleted,
        its pods with it."""
        body = self._inputs_index().get(job.key)
        self._jobs_said.discard(job.key)
        if body is None:
            return
        log.info("job %s: deleted %ss after it finished (ttlSecondsAfterFinished)", job.ref,
                 job.spec.get("ttlSecondsAfterFinished"))
        try:
            self.change(json.dumps({"apiVersion": "v1", "kind": "List", "items": [body]}), delete=True)
        except PodnetError as exc:
            log.warning("job %s: could not be deleted after its TTL: %s", job.ref, exc)

    def _backoff_events(self) -> None:
        """kubelet's BackOff: once per wait of a crashed container before its restart (looked
        for among the pods changed since the last look: a crash is an exit recorded, counted.py)."""
        for ref in self._backoff_changes.take():
            sandbox = self.runtime.pods.get(ref)
            for container in sandbox.containers if sandbox is not None else ():
                key = (ref, container.name, container.restarts)
                if container.next_start and not container.running and key not in self._backoffs:
                    self._backoffs.add(key)
                    pod = self.cluster.get("Pod", *ref.split("/", 1))
                    if pod is not None:
                        self.record_event(pod, "Warning", "BackOff",
                                          f"Back-off restarting failed container {container.name} in pod "
                                          f"{pod.name}_{pod.namespace}({pod.metadata.get('uid')})", "kubelet",
                                          f"spec.containers{{{container.name}}}")

    def recompute(self) -> None:
        """Readiness changed, or a terminating pod is gone: recompute the pods' conditions and
        EndpointSlices (the pods keep their names and addresses), start what waited for the
        terminating pod, then the proxies' rules and the L2 announcements. The
        computing runs outside the lock, so `get` and `exec` are answered meanwhile (with 300
        pods it takes most of a second); if an apply or delete replaced the cluster in the
        meantime, this result is dropped and the next round recomputes from that one."""
        with self.lock:
            with self._recompute_lock:
                refs, full = self._recompute_refs, self._recompute_full
                self._recompute_refs, self._recompute_full = set(), False
            fast = None if full else self._recomputed(refs)
            if fast is not None:
                self._take_recomputed(fast)
                return
            inputs, keep, generation = list(self.inputs), self.cluster, self.generation
            terminating, observed = list(self.terminating.values()), self._job_observed()
        cluster = self._compute(inputs, keep, terminating, observed)
        with self.lock:
            if self.generation != generation:
                self._recompute()
                return
            self._take_recomputed(cluster)

    def _recompute(self, ref: str | None = None) -> None:
        """Ask the loop to recompute, for the pod `ref` (its readiness, its termination) or all."""
        with self._recompute_lock:
            if ref is None:
                self._recompute_full = True
            else:
                self._recompute_refs.add(ref)
        self.state_changed.set()

    def _recomputed(self, refs: set[str]) -> Cluster | None:
        """The recomputation for the pods of `refs` alone, without computing the cluster again:
        a pod whose readiness changed gets its status again (and its workload's status and its
        Services' endpoints follow); a terminating pod that is gone goes. None when a computation
        could decide more: a ReplicaSet would make or rename a pod now, a StatefulSet or a
        DaemonSet makes its pod again, the pod is applied again under its name."""
        pods, gone = [], []
        for ref in sorted(refs):
            pod = self.cluster.get("Pod", *ref.split("/", 1))
            if pod is None:
                continue
            if fields.is_terminating(pod) and ref not in self.terminating:  # its termination is over
                owner = fields.controller_of(pod)
                if pod.key in self._inputs_index() or (owner is not None and owner.get("kind") != "ReplicaSet"):
                    return None
                gone.append(pod.key)
            elif ref in self.started and not fields.is_terminal(pod):
                again = incremental.running_again(pod.body, self.cluster, self._live_readiness)
                if again is None:
                    return None
                if again.body != pod.body:
                    pods.append(again)
        if not pods and not gone:
            return self.cluster
        cluster = incremental.pods_replaced(self.cluster, pods, gone)
        if cluster is None:
            return None
        owners = {(key[1], owner.get("name")) for key in gone if (owner := fields.controller_of(self.cluster.objects[key]))}
        for namespace, name in owners:  # each ReplicaSet once, however many of its pods went
            rs = cluster.get("ReplicaSet", namespace, name)
            if rs is None or not incremental.names_hold(cluster, rs):
                return None
        return cluster

    def _take_recomputed(self, cluster: Cluster) -> None:
        """The recomputed cluster, under the lock (recompute's last step)."""
        if cluster is self.cluster:  # nothing changed: what waited may start all the same
            self._start_waiting()
            return
        change = ClusterChange.between(self.cluster, cluster)
        # a pod the new cluster no longer has stops (before the cluster changes: its Killing
        # events are about it). So goes the replacement a ReplicaSet made while the pod it
        # replaced was terminating: once that one is gone, the names are computed again and
        # the replacement takes the old name (module doc of delete_pods); left running, it
        # would hold its address, which the cluster then gives to the next pod.
        for ref in self.running_pods.actions(cluster, self.started, change).stop:
            self._stop_pod(ref)
        self._install(cluster, change)
        self.dataplane.cluster = cluster
        self.runtime.cluster = cluster
        # a pod that waited for a terminating one to go (the same name applied again, a
        # StatefulSet's ordinal, a DaemonSet's node) starts now, inside the new policy sets
        self._sync_policies()
        self._start_waiting()
        self._publish(policies=False)

    def _publish(self, policies: bool = True) -> None:
        if policies:
            self._sync_policies()
        for proxy in self.proxies.values():
            proxy.update(self.cluster)
        if self.mesh is not None:  # istiod's push: the files that changed, to each meshed pod's proxy
            self.mesh.push(self.cluster)
        if self.announcer is not None:
            self.announcer.sync(self.cluster)

    def _sync_policies(self, nodes: set[str] | None = None) -> list[str]:
        """Every node's NetworkPolicy table (or those of `nodes`), now: one `nft -f` each, all
        rendered first and then loaded in parallel (each mostly waits for the kernel). A node
        whose load fails keeps its previous rules; the failure is logged, kept in
        `policy_errors` (retry_policies tries again) and returned."""
        syncing = [node for node in self.policies if nodes is None or node in nodes]
        engine = PolicyEngine(self.cluster) if syncing else None
        planned, errors = {}, {}
        for node in syncing:
            try:
                planned[node] = self.policies[node].plan(self.cluster, engine)
            except Exception as exc:
                errors[node] = exc

        def load(node: str) -> None:
            try:
                self.policies[node].load(planned[node])
            except Exception as exc:
                errors[node] = exc

        loading = [node for node, plan in planned.items() if plan.text]
        threads = [threading.Thread(target=load, args=(node,), name=f"netpol:{node}") for node in loading[1:]]
        for thread in threads:
            thread.start()
        for node in [node for node in planned if node not in loading] + loading[:1]:
            load(node)  # nothing to load (bookkeeping), and one of the loads in this thread
        for thread in threads:
            thread.join()
        failed = []
        for node in self.policies:
            if node in errors:
                exc = errors[node]
                log.warning("NetworkPolicy sync on node %s failed; its previous rules stay in force: %s", node, exc)
                self.policy_errors[node] = str(exc)
                failed.append(f"NetworkPolicy sync on node {node} failed (its previous rules stay in force): {exc}")
            elif node in planned:
                self.policy_errors.pop(node, None)
                self.policy_synced[node] = self.generation  # what the live trace checks against
        return failed

    def retry_policies(self) -> None:
        """Sync again the nodes whose last NetworkPolicy sync failed, with back-off doubling to
        POLICY_RETRY_MAX (kube-proxy's retries); called by the loop every round."""
        if not self.policy_errors or time.monotonic() < self._policy_retry_at:
            return
        with self.lock:
            failed = self._sync_policies(set(self.policy_errors))
            self._start_waiting()
        self._policy_retry_delay = min(POLICY_RETRY_MAX, self._policy_retry_delay * 2) if failed else POLICY_RETRY_FIRST
        self._policy_retry_at = time.monotonic() + self._policy_retry_delay

    def _start_waiting(self) -> None:
        """Start the pods held back while their node's NetworkPolicy sync failed, once it holds
        (a pod never runs on a node whose rules do not know it: it would be unprotected)."""
        for pod in self.running_pods.actions(self.cluster, self.started).start:
            if pod.spec.get("nodeName") in self.policy_errors:
                continue
            try:
                self._start_pod(pod)
            except Exception:  # the pod fails, the cluster goes on
                log.exception("starting %s failed", pod.ref)

    def _start_pod(self, pod) -> None:
        self.started.add(pod.ref)
        netns = self.dataplane.attach(pod)
        self.attached[pod.ref] = netns
        self.runtime.cluster = self.cluster
        if self.mesh is not None:  # its proxy's identity, files and capture before any of its containers
            self.mesh.prepare(pod, self.cluster, netns)
        self.record_event(pod, "Normal", "Scheduled",
                          f"Successfully assigned {pod.ref} to {pod.spec.get('nodeName')}", "default-scheduler")
        sandbox = self.runtime.start_pod(pod, netns)
        self.meta.pod_start(pod.ref)
        not_created = {c.name for c in sandbox.containers if c.waiting and c.waiting[0] in CONFIG_ERRORS}
        for spec in pod.spec.get("containers") or []:
            self._say_started(pod, spec.get("name"), created=spec.get("name") not in not_created)
        self._kubelet_events()
        if self.prober is not None:
            self.prober.add_pod(sandbox)

    def _say_started(self, pod, container: str, created: bool = True) -> None:
        """kubelet's Pulled, Created and Started for a container it starts (Pulled alone for one
        whose config it could not make: the runtime's Failed follows, _kubelet_events)."""
        spec = next((c for c in pod.spec.get("containers") or [] if c.get("name") == container), {})
        where = f"spec.containers{{{container}}}"
        self.record_event(pod, "Normal", "Pulled",
                          f'Container image "{spec.get("image")}" already present on machine', "kubelet", where)
        if created:
            self.record_event(pod, "Normal", "Created", f"Created container: {container}", "kubelet", where)
            self.record_event(pod, "Normal", "Started", f"Started container {container}", "kubelet", where)

    def _kubelet_events(self) -> None:
        """The events the runtime left for kubelet to record (Runtime.events): a container's
        config it could not make (Failed), its creation once it could (Created, Started), keys
        of an envFrom source left out (InvalidEnvironmentVariableNames, about the pod)."""
        for ref, container, type_, reason, message in self.runtime.take_events():
            pod = self.cluster.get("Pod", *ref.split("/", 1))
            if pod is None:
                continue
            sidecar = any(c.get("name") == container for c in pod.spec.get("initContainers") or [])
            where = f"spec.{'initContainers' if sidecar else 'containers'}{{{container}}}" if container else None
            self.record_event(pod, type_, reason, message, "kubelet", where)

    def _stop_pod(self, ref: str, killing_said: bool = False) -> None:
        if self.prober is not None:
            self.prober.remove_pod(ref)
        self.container_state.pop(ref, None)
        if not killing_said:
            self._say_killing(ref)
        self.meta.pod_gone(ref)
        self._backoffs = {key for key in self._backoffs if key[0] != ref}
        self.runtime.stop_pod(ref)
        self.started.discard(ref)
        netns = self.attached.pop(ref, None)
        if netns is not None:
            namespace, name = ref.split("/", 1)
            self.dataplane.detach(namespace, name)
        if self.mesh is not None:
            self.mesh.forget(*ref.split("/", 1))

    def _say_killing(self, ref: str) -> None:
        """kubelet's Killing, once per container of a pod it begins to stop."""
        pod = self.cluster.get("Pod", *ref.split("/", 1)) if self.cluster is not None else None
        sandbox = self.runtime.pods.get(ref)
        for container in sandbox.containers if sandbox is not None and pod is not None else []:
            self.record_event(pod, "Normal", "Killing", f"Stopping container {container.name}", "kubelet",
                              f"spec.containers{{{container.name}}}")

    # -- termination (termination.py) ---------------------------------------------------------------

    def _marked_deleted(self, refs: list[str], requested: int | None) -> dict[str, dict[str, Any]]:
        """The running pods `refs` as the API server leaves them after a graceful delete."""
        now = datetime.now(timezone.utc)
        marked = {}
        for ref in refs:
            pod = self.cluster.get("Pod", *ref.split("/", 1))
            if pod is not None:
                marked[ref] = termination.marked_deleted(pod.body, now, termination.grace_period(pod, requested))
        return marked

    def _begin_termination(self, ref: str, resumed: bool = False) -> None:
        """kubelet's side, in a thread of its own (the cluster without the pod's endpoint for new
        connections is already published): preStop, SIGTERM, the wait, SIGKILL; then
        _finish_termination. `resumed`: a restarted supervisor goes on with a termination the dead
        one began — the grace period ends when it was to end (its recorded deadline, else the
        pod's deletionTimestamp), kubelet's Killing was said already."""
        pod = self.cluster.get("Pod", *ref.split("/", 1))
        sandbox = self.runtime.begin_termination(ref)
        if pod is None or sandbox is None:
            self._finish_termination(ref)
            return
        grace = int(pod.metadata.get("deletionGracePeriodSeconds") or 0)
        if ref not in self.grace_deadlines:
            self.grace_deadlines[ref] = termination.grace_deadline(pod.metadata, grace, time.time(), resumed)
        left = max(0.0, self.grace_deadlines[ref] - time.time())
        deadline = time.monotonic() + left
        if resumed:
            log.info("%s: terminating, %.1fs left of its grace period of %ds", ref, left, grace)
        else:
            self._say_killing(ref)
            log.info("%s: terminating, grace period %ds", ref, grace)
        thread = threading.Thread(target=self._terminate, args=(ref, sandbox, pod, deadline),
                                  name=f"terminate:{ref}", daemon=True)
        self.terminations[ref] = thread
        thread.start()

    def _terminate(self, ref: str, sandbox, pod, deadline: float) -> None:
        def hook_failed(container: str, message: str) -> None:
            with self.lock:
                self.record_event(pod, "Warning", "FailedPreStopHook", message, "kubelet",
                                  f"spec.containers{{{container}}}")

        try:
            node_netns = self.layout.node_netns(pod.spec.get("nodeName") or "")
            ended = termination.kill_pod(self.runtime, sandbox, node_netns, deadline, self.stopping, hook_failed)
            log.info("%s: containers stopped: %s", ref, ", ".join(f"{c} {how}" for c, how in sorted(ended.items())))
        except Exception:
            log.exception("terminating %s failed; it is stopped now", ref)
        finally:
            self._finish_termination(ref)

    def _finish_termination(self, ref: str) -> None:
        """Every container of the pod is gone: stop the sandbox, detach the pod (veth, address)
        and let the pod object go (the loop recomputes). Not after `down` began: the teardown
        removes everything itself."""
        with self.lock:
            self.terminations.pop(ref, None)
            if self.stopping.is_set() or ref not in self.terminating:
                return
            self._stop_pod(ref, killing_said=True)
            del self.terminating[ref]
            self.grace_deadlines.pop(ref, None)
            self._recompute(ref)

    def wait_for_terminations(self, timeout: float) -> bool:
        """Whether every termination under way ended within `timeout` seconds (for tests)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                threads = list(self.terminations.values())
            if not threads:
                return True
            if time.monotonic() >= deadline:
                return False
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def change(self, documents: str | Mapping[str, str], delete: bool,
               grace_period: int | None = None) -> dict[str, Any]:
        """apply -f / delete -f: recompute, then stop what went away and start what came.
        `documents`: one List text, or the texts of the files the objects were read from, by
        name (so a problem is reported at the user's file and line). A pod that goes away
        terminates (termination.py) with `grace_period` (a delete's --grace-period) or its own;
        0 (--force) stops it at once."""
        steps = Steps()
        # an invalid request is refused before the lock
        store = reconcile.admitted_files({"request": documents} if isinstance(documents, str) else documents)
        steps.done("admit")
        with self.lock:
            steps.done("lock")
            if self.stopping.is_set():  # `down` began: what this would start, nothing would remove
                raise PodnetError(f"cluster {self.layout.cluster} is being removed (podnet down): nothing changed")
            index = self._inputs_index()
            request = reconcile.change_request(self.inputs, store, delete, index)
            cluster = reconcile.changed_cluster(self.cluster, self.inputs, store, delete, index, self._live_readiness)
            incremental_change = cluster is not None
            if cluster is None:
                cluster = self._compute(request.inputs, self.cluster)
            reconcile.check_nodes(self.cluster, cluster, self.layout.cluster)
            change = ClusterChange.between(self.cluster, cluster)
            actions = self.running_pods.actions(cluster, self.started, change)
            graceful = [ref for ref in actions.stop if ref in self.runtime.pods and grace_period != 0]
            if graceful:  # they stay, Terminating, until their processes are gone
                marked = self._marked_deleted(graceful, grace_period)
                # back in the cluster, marked: without a computation when nothing new is placed
                # beside them (a scale down); else computed with them (their addresses stay taken)
                fast = None
                if incremental_change and not actions.start:
                    again = [incremental.running_again(body, cluster, self._live_readiness) for body in marked.values()]
                    fast = incremental.pods_replaced(cluster, again, ()) if None not in again else None
                candidate, cluster = cluster, fast if fast is not None else \
                    self._compute(request.inputs, self.cluster, list(self.terminating.values()) + list(marked.values()))
                self.terminating.update(marked)
                # the pods to start as this cluster places and addresses them: next to the
                # terminating ones, whose addresses stay taken (RunningPods follows from the candidate)
                started = self.running_pods.actions(cluster, self.started, ClusterChange.between(candidate, cluster))
                actions = reconcile.PodActions(actions.stop, started.start)
                change = ClusterChange.between(self.cluster, cluster)
            steps.done("compute")
            for ref in actions.stop:
                if ref not in graceful:
                    self._stop_pod(ref)
            steps.done("stop")
            unchanged = cluster is self.cluster  # applied again as it is: nothing to publish
            # nothing NetworkPolicy reads changed (a ConfigMap, a workload's labels): no sync
            policies_hold = unchanged or same_policy_inputs(change)
            if not unchanged:
                self._install(cluster, change)
                self.dataplane.cluster = cluster
                self.runtime.cluster = cluster  # a ConfigMap or Secret a waiting container names may be here now
            # the new pods are in the policy sets before they start: never a moment unprotected
            policy_failures = self._sync_policies(set(self.policy_errors) if policies_hold else None)
            if policies_hold:  # the rules of the other nodes are those of this generation too
                self.policy_synced.update((node, self.generation) for node in self.policies
                                          if node not in self.policy_errors)
            steps.done("policies")
            failed, waiting = [], []
            for pod in actions.start:
                if pod.spec.get("nodeName") in self.policy_errors:
                    waiting.append(pod.ref)  # fail closed: it starts once its node's rules hold
                    continue
                try:
                    self._start_pod(pod)
                except Exception as exc:  # the pod fails, the cluster goes on
                    log.exception("starting %s failed", pod.ref)
                    failed.append(f"{pod.ref}: {exc}")
            steps.done("start")
            if request.inputs != self.inputs:
                self.inputs = request.inputs
                self._inputs_indexed = (request.inputs, request.by_key)
                self.state.save_manifests(request.inputs, {key: request.by_key.get(key) for key in request.keys})
            steps.done("save")
            if not unchanged:
                self._publish(policies=False)
            steps.done("publish")
            for ref in graceful:  # after the publish: new connections already go elsewhere
                self._begin_termination(ref)
            self.persist(events=False)
            log.info("%s of %d objects: %s", "delete" if delete else "apply", len(request.keys), steps)
            lines = request.lines(failed) + [f"Warning: {f}" for f in policy_failures]
            lines += [f"Warning: {ref} waits to start until its node's NetworkPolicy rules hold" for ref in waiting]
            started = [ref for ref in actions.started if ref not in waiting]
            answer = {"lines": lines, "started": started, "stopped": list(actions.stop)}
            return {**answer, "warnings": store.warnings} if store.warnings else answer

    def delete_pods(self, refs: list[str], grace_period: int | None = None) -> dict[str, Any]:
        """Pods deleted by name that no input holds — a Deployment's, a StatefulSet's, a
        DaemonSet's (`kubectl delete pod -l k8s-app=kube-dns`): each terminates as a deleted pod
        does (grace period, Terminating, its endpoint withdrawn), then its controller's
        replacement starts. podnet computes pod names, so the replacement has the same name (a
        ReplicaSet would give it a new suffix): new sandbox, new containers, RESTARTS 0."""
        with self.lock:
            if self.stopping.is_set():
                raise PodnetError(f"cluster {self.layout.cluster} is being removed (podnet down): nothing changed")
            for ref in refs:
                if self.cluster.get("Pod", *ref.split("/", 1)) is None:
                    raise PodnetError(f'pods "{ref.split("/", 1)[1]}" not found')
            running = [ref for ref in refs if ref in self.runtime.pods and ref not in self.terminating]
            waiting = [ref for ref in refs if ref not in self.runtime.pods and ref not in self.terminating]
            if waiting:  # nothing runs to end, and the same pod would be made again: say so, not "deleted"
                raise PodnetError(f"pod {', '.join(waiting)} has not started (it waits for its node or a "
                                  "terminating pod of its name): there is nothing to delete yet")
            if grace_period == 0:  # --force: gone at once, the replacement starts with the recompute
                for ref in running:
                    self._stop_pod(ref)
                self._recompute()
                self.persist(events=False)
                return {"deleted": running, "terminating": []}
            marked = self._marked_deleted(running, grace_period)
            cluster = self._compute(self.inputs, self.cluster, list(self.terminating.values()) + list(marked.values()))
            self.terminating.update(marked)
            self.cluster = cluster
            self.dataplane.cluster = cluster
            self.runtime.cluster = cluster
            self._sync_policies()
            self._publish(policies=False)
            for ref in running:
                self._begin_termination(ref)
            self.persist(events=False)
            return {"deleted": [], "terminating": running}

    # -- a node reboot (`podnet node restart`) --------------------------------------------------------

    def restart_node(self, node: str) -> dict[str, Any]:
        """The node loses power and boots again: every process of its pods is SIGKILLed at once
        and its kernel loses kube-proxy's and NetworkPolicy's rules. Then it comes back as a
        rebooted node does: the supervisor syncs the node's Services and policies again (before
        any of its pods runs), and kubelet makes each pod's sandbox again — in the same pod
        network namespace, so with the same address — and starts its containers (restartCount
        + 1, no back-off: kubelet's restarted too), probing readiness anew. Events as kubelet's:
        Starting and Rebooted for the node, SandboxChanged and the containers' for each pod."""
        with self.lock:
            if self.cluster.get("Node", "", node) is None:
                raise PodnetError(f'node "{node}" not found in cluster {self.layout.cluster}')
            refs = sorted(ref for ref, sandbox in self.runtime.pods.items()
                          if sandbox.pod is not None and sandbox.pod.spec.get("nodeName") == node)
            log.info("node %s: rebooting (%d pods)", node, len(refs))
            for ref in refs:  # kubelet's probe results go with it
                if self.prober is not None:
                    self.prober.remove_pod(ref)
                self.container_state.pop(ref, None)
            self.runtime.kill_pods(refs)
            warnings = []
            if node in self.proxies or node in self.policies:
                self._flush_node_rules(node)
                netlink = self.netlink_factory()
                try:
                    self._start_node_agents(node, netlink)
                    self.policy_errors.pop(node, None)
                except Exception as exc:  # the loop retries (kube-proxy's thread, retry_policies)
                    log.exception("node %s: syncing its rules after the reboot failed", node)
                    self.policy_errors[node] = str(exc)
                    if node in self.proxies:
                        self.proxies[node].update(self.cluster)
                    warnings.append(f"Warning: node {node}'s Services and NetworkPolicies are not programmed yet "
                                    f"(retrying): {exc}")
                finally:
                    netlink.close()
            about = self.cluster.get("Node", "", node)
            for type_, reason, message in (("Normal", "Starting", "Starting kubelet."),
                                           ("Warning", "Rebooted",
                                            f"Node {node} has been rebooted, boot id: {uuid.uuid4()}")):
                self.events.record(involved(about), type_, reason, message, "kubelet", node)
            restarted = []
            for ref in refs:
                sandbox = self.runtime.reboot_pod(ref)
                pod = self.cluster.get("Pod", *ref.split("/", 1))
                if sandbox is None or pod is None:
                    continue  # being deleted: its termination ends with its processes gone
                restarted.append(ref)
                self.record_event(pod, "Normal", "SandboxChanged",
                                  "Pod sandbox changed, it will be killed and re-created.", "kubelet")
                for container in sandbox.containers:
                    if container.running:
                        self._say_started(pod, container.name)
                if self.prober is not None:
                    # new containers: not ready until the prober says otherwise (at once for those
                    # without a readiness probe), so the pod leaves its Services' endpoints meanwhile
                    self.container_state[ref] = {c.name: {"ready": False, "started": False} for c in sandbox.containers}
                    self.prober.add_pod(sandbox)
            self._recompute()  # readiness as the new probes say: the loop recomputes
            self.persist(force=True)
            log.info("node %s: rebooted, %d pods started again", node, len(restarted))
            return {"node": node, "pods": restarted, "warnings": warnings}

    def _flush_node_rules(self, node: str) -> None:
        """What a reboot loses of the node's kernel state that podnet programs: kube-proxy's
        rules (its userspace listeners too) and the NetworkPolicy tables."""
        proxy, policy = self.proxies.pop(node, None), self.policies.pop(node, None)
        self.policy_synced.pop(node, None)
        for what, flush in (("kube-proxy's rules", lambda: proxy.stop(cleanup=True) if proxy else None),
                            ("the NetworkPolicy tables", lambda: policy.cleanup() if policy else None)):
            try:
                flush()
            except Exception as exc:  # they stay: the syncs that follow replace them whole
                log.warning("node %s: flushing %s failed: %s", node, what, exc)

    def stop(self) -> None:
        self.stopping.set()  # terminations under way give up: the teardown kills without grace
        with self.lock:
            if self.apiserver is not None:  # first: its socket in the first node's namespace would keep it
                self.apiserver.stop()
            if self.prober is not None:
                self.prober.stop()
            for proxy in self.proxies.values():
                try:
                    proxy.stop(cleanup=False)  # the node's namespace goes with the teardown
                except Exception:
                    log.exception("stopping a proxy failed")
            for policy in self.policies.values():
                if hasattr(policy, "close"):
                    policy.close()  # its canary's socket would keep the node's namespace
            if self.runtime is not None:
                self.runtime.stop_all()
            if self.dataplane is not None:
                self.dataplane.teardown()
            self.meta_journal.close()
            self.pods_journal.close()

    # -- status for the CLI ---------------------------------------------------------------------

    def _readiness_published(self) -> bool:
        """Whether the computed cluster (its EndpointSlices) holds the readiness kubelet reports
        for every running pod: false between a probe's flip and the recompute that follows it."""
        for pod in self.cluster.of_kind("Pod"):
            live = self._live_readiness(pod) if pod.ref in self.container_state else None
            if live is None:
                continue
            condition = next((c for c in pod.status.get("conditions") or [] if c.get("type") == "Ready"), None)
            if condition is not None and (condition.get("status") == "True") != live:
                return False
        return True

    def objects(self, counters: bool = True) -> list[dict[str, Any]]:
        """The API objects; `counters`: with the policies' drop counts, which cost an `nft list`
        per node (`get`/`describe` show them; the servers following the cluster do not need them)."""
        with self.lock:
            return object_bodies(self.cluster, self.runtime.pods, self.container_state,
                                 self._policy_drops() if counters else {}, self.meta)

    def changes(self, since: int) -> dict[str, Any]:
        """What the API server's watch cache needs to catch up from resourceVersion `since`:
        the objects changed after it (stamped, as `objects` serves them), the deletions after
        it, the version now; everything (`"full": true`) when `since` is 0 or its deletions are
        forgotten. Without the policies' drop counters (an `nft list` per node)."""
        with self.lock:
            self._note_live_status()
            found = self.meta.changed_since(since) if since > 0 else None
            only, deleted = (None, []) if found is None else found
            items = object_bodies(self.cluster, self.runtime.pods, self.container_state, {}, self.meta, only)
            return {"full": found is None, "items": items, "deleted": [[v, *key] for v, key in deleted],
                    "resourceVersion": self.meta.version, "generation": self.generation}

    def _note_live_status(self) -> None:
        """kubelet's status of the running pods, to the API fields (a restart moves the pod's
        resourceVersion): of the pods whose sandbox or probe results changed since they were
        last noted (counted.py)."""
        count = counted.count
        if count == self._live_noted:
            return
        refs = self._looked_at(self._live_changes, self._live_polled)
        if self._live_everything:
            refs, self._live_everything = self.runtime.pods.keys() | refs, False
        jobs = set()
        for ref in refs:
            sandbox = self.runtime.pods.get(ref)
            if sandbox is not None:
                namespace, name = ref.split("/", 1)
                self.meta.live(("Pod", namespace, name), live_digest(sandbox, self.container_state.get(ref) or {}))
                owner = fields.controller_of(sandbox.pod) if sandbox.pod is not None else None
                if owner and owner.get("kind") == "Job":
                    jobs.add((namespace, owner.get("name")))
        for namespace, name in jobs:  # a Job's status follows its pods' (status.job_status)
            done = tuple(sorted((ref, finished_phase(s)) for ref, s in self.runtime.pods.items() if s.pod is not None
                                and s.namespace == namespace and (fields.controller_of(s.pod) or {}).get("name") == name
                                and (fields.controller_of(s.pod) or {}).get("kind") == "Job"))
            self.meta.live(("Job", namespace, name), done)
        self._live_noted = count

    def inputs_of(self, keys: list[list[str]] | None) -> list[dict[str, Any] | None]:
        """The objects as applied (what a patch or an update changes), by (kind, namespace, name);
        None for a key that is not an input (computed: a Deployment's pods, EndpointSlices …).
        Without `keys`: every input."""
        with self.lock:
            if keys is None:
                return list(self.inputs)
            by_key = self._inputs_index()
            return [by_key.get(tuple(key)) for key in keys]

    def _policy_drops(self) -> dict[tuple[str, str], dict[str, int]]:
        """Packets dropped per policy — (kind, ref): a NetworkPolicy, an AdminNetworkPolicy or
        the baseline — and direction, summed over the nodes' counters; a node that cannot be
        read is left out."""
        if not self.policies or not any(self.cluster.of_kind(kind) for kind in POLICY_KINDS):
            return {}
        found: dict[tuple[str, str], dict[str, int]] = {}
        for node, policy in self.policies.items():
            try:
                counters = policy.drops()
            except Exception as exc:
                log.warning("reading the NetworkPolicy counters of node %s failed: %s", node, exc)
                continue
            for name, packets in counters.items():
                owner = counter_owner(name)
                if owner is not None:
                    kind, ref, direction = owner
                    per = found.setdefault((kind, ref), {})
                    per[direction] = per.get(direction, 0) + packets
        return found

    def sync_status(self) -> dict[str, dict[str, Any]]:
        """Per node, the rules its kernel holds as far as known (status.sync_status)."""
        with self.lock:
            return sync_status(self.policies, self.policy_synced, self.policy_errors, self.proxies)

    def exec_argv(self, target: str, container: str | None) -> list[str]:
        with self.lock:
            if target == "external":
                return ["ip", "netns", "exec", self.layout.external_netns]
            if target.startswith("node/"):
                node = target[5:]
                if self.cluster.node(node) is None:
                    raise PodnetError(f'node "{node}" not found')
                return ["ip", "netns", "exec", self.layout.node_netns(node)]
            sandbox = self.runtime.pods.get(target)
            if sandbox is None:
                raise PodnetError(f'pod "{target}" is not running in cluster {self.layout.cluster}')
            names = [c.name for c in sandbox.containers]
            if container and container not in names:
                raise PodnetError(f"container {container} is not valid for pod {target}, choose one of: [{' '.join(names)}]")
            chosen = next((c for c in sandbox.containers if c.name == (container or _default_container(sandbox))), None)
            entered = self.runtime.enter_argv(sandbox, [], chosen.workdir if chosen else None)
            running = chosen.process if chosen is not None and chosen.process is not None \
                and chosen.process.poll() is None else None
            if running is None:  # not started (or between restarts): the pod's namespaces without its env
                return entered
            # the container's environment (Secrets among it) goes by execve, never on a command line
            return [sys.executable, "-m", "podnet.linux.withenv", str(running.pid), "--", *entered]

    def _log_container(self, target: str, container: str | None):
        sandbox = self.runtime.pods.get(target)
        if sandbox is None:
            raise PodnetError(f'pod "{target}" is not running in cluster {self.layout.cluster}')
        if container is None:
            apps = [c.name for c in sandbox.containers if not c.sidecar]
            annotated = _annotated_container(sandbox, "kubectl.kubernetes.io/default-logs-container")
            if annotated is None and len(apps) != 1:
                sidecars = [c.name for c in sandbox.containers if c.sidecar]
                raise PodnetError(f"a container name must be specified for pod {target}, choose one of: "
                                  f"[{' '.join(apps)}]" + (f" or one of the init containers: [{' '.join(sidecars)}]"
                                                            if sidecars else ""))
            container = annotated or apps[0]
        chosen = next((c for c in sandbox.containers if c.name == container), None)
        if chosen is None:
            raise PodnetError(f"container {container} is not valid for pod {target}")
        return chosen

    def logs(self, target: str, container: str | None) -> str:
        with self.lock:
            chosen = self._log_container(target, container)
            return chosen.log.read_text(errors="replace") if chosen.log.exists() else ""

    def log_file(self, target: str, container: str | None) -> dict[str, Any]:
        """Where a container's log is and whether its process runs (the API server follows the
        file itself, for `kubectl logs -f` and attach); one file across the container's restarts,
        `starts` the offset where each run's output begins, as far as this supervisor saw them."""
        with self.lock:
            chosen = self._log_container(target, container)
            return {"path": str(chosen.log), "running": chosen.running,
                    "restarts": chosen.restarts, "starts": list(chosen.log_starts)}

    def pod_netns(self, target: str) -> str:
        """The network namespace a running pod's processes are in (a hostNetwork pod's: its node's),
        for the API server's port-forward."""
        with self.lock:
            netns = self.attached.get(target)
            if netns is None:
                raise PodnetError(f'pod "{target}" is not running in cluster {self.layout.cluster}')
            return netns

    def status(self) -> dict[str, Any]:
        """Pods (status.pods_status) and whether every node's kube-proxy holds the current
        Services and endpoints (`servicesProgrammed`: no readiness change waiting to be
        recomputed, no sync pending or failed)."""
        with self.lock:
            failures = self.prober.readiness_failures if self.prober is not None else {}
            first = self.prober.first_readiness if self.prober is not None else {}
            now = self.prober.clock() if first else 0.0
            awaiting = {key: (due - now, delay) for key, (due, delay) in first.items()}
            answer = pods_status(self.layout.cluster, self.cluster, self.runtime.pods, self.container_state, failures,
                                 awaiting)
            errors = {node: p.status.last_error for node, p in self.proxies.items() if p.status.last_error}
            answer["servicesProgrammed"] = (self._readiness_published() and not errors
                                            and not any(p.pending for p in self.proxies.values()))
            answer["proxyErrors"] = errors
            return answer


def _annotated_container(sandbox, annotation: str) -> str | None:
    """The container a pod's annotation names for kubectl (the mesh's injector sets them), if the pod has it."""
    pod = sandbox.pod
    name = (pod.metadata.get("annotations") or {}).get(annotation) if pod is not None else None
    if name is None and annotation != DEFAULT_CONTAINER:
        return _annotated_container(sandbox, DEFAULT_CONTAINER)
    return name if any(c.name == name for c in sandbox.containers) else None


DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


def _default_container(sandbox) -> str | None:
    """kubectl exec's container when none is named: the annotated one, else the first app container."""
    return _annotated_container(sandbox, DEFAULT_CONTAINER) or next(
        (c.name for c in sandbox.containers if not c.sidecar), sandbox.containers[0].name if sandbox.containers else None)
