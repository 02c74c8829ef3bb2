"""Typed, read-only access to objects: reading never changes the body; writes ask for it."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.api import fields
from podnet.api.objects import KubeObject


def _pod(body: dict) -> KubeObject:
    return KubeObject("Pod", "default", "p", body)


# ---------------------------------------------------------------- reading does not write


@pytest.mark.parametrize("body", [
    {},
    {"metadata": {"name": "p"}},
    {"metadata": {"name": "p"}, "status": {}},
    {"metadata": {"name": "p"}, "status": {"podIP": "10.244.1.5"}},
    {"metadata": None, "status": None},
], ids=["empty", "no-status", "empty-status", "status", "nulls"])
def test_reading_metadata_and_status_leaves_the_body_as_it_was(body):
    before = copy.deepcopy(body)
    obj = _pod(body)
    _ = obj.metadata, obj.status, obj.labels, obj.annotations, obj.spec
    _ = obj.metadata.get("uid"), obj.status.get("podIP")
    assert obj.body == before


def test_status_and_metadata_are_read_only_views():
    obj = _pod({"metadata": {"name": "p"}, "status": {"phase": "Running"}})
    with pytest.raises(TypeError):
        obj.status["phase"] = "Failed"  # type: ignore[index]
    with pytest.raises(TypeError):
        obj.metadata["uid"] = "x"  # type: ignore[index]
    assert obj.status == {"phase": "Running"} and obj.metadata == {"name": "p"}


def test_writers_create_what_is_missing_and_write_through():
    obj = _pod({})
    obj.status_for_update()["phase"] = "Running"
    obj.metadata_for_update().setdefault("labels", {})["app"] = "web"
    assert obj.body == {"status": {"phase": "Running"}, "metadata": {"labels": {"app": "web"}}}
    assert obj.status["phase"] == "Running" and obj.labels == {"app": "web"}


# ---------------------------------------------------------------- the readers of api.fields


@pytest.mark.parametrize("port, expected", [
    ({"port": 80}, "TCP"),  # unset: the API server's default
    ({"port": 80, "protocol": None}, "TCP"),  # null is unset too
    ({"port": 80, "protocol": ""}, "TCP"),
    ({"port": 53, "protocol": "UDP"}, "UDP"),
    ({"containerPort": 9000, "protocol": "SCTP"}, "SCTP"),  # container ports alike
    ({}, "TCP"),  # a NetworkPolicy port with neither port nor protocol
], ids=["unset", "null", "empty", "udp", "sctp-container-port", "policy-port-without-fields"])
def test_a_port_without_protocol_is_tcp(port, expected):
    before = dict(port)
    assert fields.protocol(port) == expected
    assert port == before


def _svc(spec: dict | None = None, status: dict | None = None) -> KubeObject:
    body: dict = {"metadata": {"name": "s"}, "spec": spec or {}}
    if status is not None:
        body["status"] = status
    return KubeObject("Service", "default", "s", body)


@pytest.mark.parametrize("spec, ip, ips, headless", [
    ({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]}, "10.96.0.5", ["10.96.0.5"], False),
    ({"clusterIP": "10.96.0.5"}, "10.96.0.5", ["10.96.0.5"], False),  # clusterIPs not filled in yet
    ({"clusterIP": "None", "clusterIPs": ["None"]}, "", [], True),  # headless: the marker is no IP
    ({"clusterIP": ""}, "", [], False),  # asks for one to be allocated
    ({"type": "ExternalName", "externalName": "example.org"}, "", [], False),
], ids=["allocated", "clusterIP-only", "headless", "empty", "externalname"])
def test_cluster_ips(spec, ip, ips, headless):
    svc = _svc(spec)
    assert (fields.cluster_ip(svc), fields.cluster_ips(svc), fields.is_headless(svc)) == (ip, ips, headless)


@pytest.mark.parametrize("status, ips, addresses", [
    (None, [], []),  # no status at all
    ({}, [], []),
    ({"loadBalancer": {}}, [], []),  # pending
    ({"loadBalancer": None}, [], []),
    ({"loadBalancer": {"ingress": [{"ip": "192.168.1.200", "ipMode": "VIP"}]}}, ["192.168.1.200"], ["192.168.1.200"]),
    ({"loadBalancer": {"ingress": [{"hostname": "lb.example.org"}, {"ip": "192.168.1.201"}]}},
     ["192.168.1.201"], ["lb.example.org", "192.168.1.201"]),  # a hostname is an address, not an IP
], ids=["no-status", "empty-status", "pending", "null", "ip", "hostname-and-ip"])
def test_load_balancer_ingress(status, ips, addresses):
    svc = _svc({"type": "LoadBalancer"}, status)
    before = copy.deepcopy(svc.body)
    assert fields.load_balancer_ips(svc) == ips
    assert fields.load_balancer_addresses(svc) == addresses
    assert svc.body == before


RUNNING = {
    "phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}], "hostIP": "192.168.1.11",
    "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                   {"type": "ContainersReady", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
}


def test_pod_status_readers_of_a_running_pod():
    pod = _pod({"metadata": {"name": "p"}, "status": copy.deepcopy(RUNNING)})
    assert (fields.phase(pod), fields.pod_ip(pod), fields.pod_ips(pod), fields.host_ip(pod)) == \
        ("Running", "10.244.1.5", ["10.244.1.5"], "192.168.1.11")
    assert fields.condition(pod, "Ready") == {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
    assert fields.condition(pod, "PodReadyToStartContainers") is None
    assert fields.condition_statuses(pod) == {"Initialized": "True", "Ready": "False", "ContainersReady": "False",
                                              "PodScheduled": "True"}
    assert not fields.is_ready(pod) and not fields.is_terminal(pod) and not fields.is_terminating(pod)
    assert pod.body["status"] == RUNNING


def test_pod_status_readers_of_a_pod_without_status():
    pod = _pod({"metadata": {"name": "p"}})
    assert (fields.phase(pod), fields.pod_ip(pod), fields.pod_ips(pod), fields.host_ip(pod)) == ("", "", [], "")
    assert fields.conditions(pod) == [] and fields.condition_statuses(pod) == {}
    assert not fields.is_ready(pod) and not fields.is_terminal(pod)
    assert pod.body == {"metadata": {"name": "p"}}


@pytest.mark.parametrize("ready, expected", [("True", True), ("False", False), ("Unknown", False)])
def test_ready_is_the_ready_condition_being_true(ready, expected):
    pod = _pod({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": ready}]}})
    assert fields.is_ready(pod) is expected


@pytest.mark.parametrize("phase, terminal", [("Pending", False), ("Running", False), ("Succeeded", True),
                                             ("Failed", True), ("Unknown", False)])
def test_terminal_phases(phase, terminal):
    assert fields.is_terminal(_pod({"status": {"phase": phase}})) is terminal


def test_terminating_is_a_deletion_timestamp():
    assert fields.is_terminating(_pod({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}))
    assert not fields.is_terminating(_pod({"metadata": {"name": "p"}}))


def test_node_addresses_by_type():
    node = KubeObject("Node", "", "n", {"status": {"addresses": [
        {"type": "InternalIP", "address": "192.168.1.11"}, {"type": "Hostname", "address": "n"},
        {"type": "InternalIP", "address": "192.168.1.99"}]}})
    assert fields.node_addresses(node) == {"InternalIP": "192.168.1.11", "Hostname": "n"}  # the first of a type
    assert fields.node_addresses(KubeObject("Node", "", "m", {})) == {}


@settings(deadline=None)  # a loaded CI machine is no reason to fail
@given(st.dictionaries(st.sampled_from(["phase", "podIP", "podIPs", "hostIP", "conditions", "loadBalancer", "addresses"]),
                       st.none() | st.text(max_size=3) | st.lists(st.fixed_dictionaries({"ip": st.text(max_size=3)}), max_size=2)))
def test_no_reader_changes_the_object(status):
    obj = _pod({"metadata": {"name": "p"}, "status": status})
    before = copy.deepcopy(obj.body)
    readers = [fields.phase, fields.pod_ip, fields.host_ip, fields.conditions, fields.is_terminal, fields.is_terminating]
    for read in readers:
        try:
            read(obj)
        except (AttributeError, TypeError, KeyError):
            pass  # nonsense shapes may fail validation-style, but still must not write
    assert obj.body == before


@pytest.mark.parametrize("conditions, ready, serving, terminating", [
    (None, True, True, False),  # no conditions: ready, as consumers of the API read it
    ({}, True, True, False),
    ({"ready": None}, True, True, False),  # null is unknown, not false
    ({"ready": False}, False, False, False),  # serving follows ready when unset
    ({"ready": False, "serving": True, "terminating": True}, False, True, True),  # a draining pod still serves
    ({"ready": True, "serving": False}, True, False, False),
], ids=["no-conditions", "empty", "null-ready", "not-ready", "terminating-serving", "not-serving"])
def test_endpoint_conditions(conditions, ready, serving, terminating):
    endpoint = {"addresses": ["10.244.1.5"]} if conditions is None else {"addresses": ["10.244.1.5"], "conditions": conditions}
    assert (fields.endpoint_ready(endpoint), fields.endpoint_serving(endpoint), fields.endpoint_terminating(endpoint)) == \
        (ready, serving, terminating)


def test_controller_of_is_the_controlling_owner_reference():
    rs = {"kind": "ReplicaSet", "name": "web-1", "controller": True}
    pod = _pod({"metadata": {"ownerReferences": [{"kind": "ConfigMap", "name": "x"}, rs]}})
    assert fields.controller_of(pod) == rs
    assert fields.controller_of(_pod({"metadata": {"ownerReferences": [{"kind": "ConfigMap", "name": "x"}]}})) is None
    assert fields.controller_of(_pod({})) is None
