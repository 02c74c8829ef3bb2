"""`podnet get -w` and `podnet wait` without a cluster (no root): what --for means and how it
is judged (kubectl's pkg/cmd/wait rules), the arguments wait takes, what a watch reports
between two readings, and how -w prints it. The commands on a real cluster are
tests/test_watch_wait_root.py."""

from __future__ import annotations

import io
import json

import pytest

from podnet.api.objects import KubeObject
from podnet.cli import watching
from podnet.cli.get import WatchPrinter
from podnet.cli.wait import WEEK, parse_resources, parse_timeout
from podnet.cli.waitfor import Condition, Create, Delete, JSONPath, WaitError, parse_for


def pod(name: str, ready: str = "True", phase: str = "Running", **metadata) -> KubeObject:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z",
                         **metadata},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "node1"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}],
                       "containerStatuses": [{"name": "c", "ready": ready == "True", "restartCount": 0,
                                              "state": {"running": {}}}]}}
    return KubeObject("Pod", "default", name, body)


# ---- --for ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, goal", [
    ("delete", Delete()), ("DELETE", Delete()), ("create", Create()),
    ("condition=Ready", Condition("Ready", "true")),
    ("condition=Ready=false", Condition("Ready", "false")),
    ("condition=Available=True", Condition("Available", "True")),
])
def test_for_reads_as_kubectl_reads_it(text, goal):
    assert parse_for(text) == goal


@pytest.mark.parametrize("text, expression, value", [
    ("jsonpath={.status.phase}=Running", "{.status.phase}", "Running"),
    ("jsonpath=.status.phase=Running", "{.status.phase}", "Running"),  # relaxed, as kubectl get's
    ("jsonpath=status.phase='Running'", "{.status.phase}", "Running"),  # quotes trimmed
    ("jsonpath={.status.loadBalancer.ingress}", "{.status.loadBalancer.ingress}", None),  # any value
    ('jsonpath={.status.conditions[?(@.type=="Ready")].status}=True',
     '{.status.conditions[?(@.type=="Ready")].status}', "True"),  # a filter's == is not the value's =
])
def test_jsonpath_goals_split_expression_and_value_as_kubectl(text, expression, value):
    goal = parse_for(text)
    assert isinstance(goal, JSONPath) and (goal.expression, goal.value) == (expression, value)


@pytest.mark.parametrize("text, message", [
    ("", 'error: unrecognized condition: ""'),
    ("ready", 'error: unrecognized condition: "ready"'),
    ("jsonpath=", "error: jsonpath expression cannot be empty"),
    ("jsonpath={.status.phase}=", "error: jsonpath wait has to have a value after equal sign"),
    ("jsonpath={.a}=b=c", "error: jsonpath wait format must be"),
    ("jsonpath={{.a}}", "error: unexpected path string"),
])
def test_a_bad_for_is_kubectls_error(text, message):
    with pytest.raises(WaitError) as caught:
        parse_for(text)
    assert str(caught.value).startswith(message)


def test_a_condition_is_met_by_its_type_and_status_compared_case_insensitively():
    assert parse_for("condition=ready").met(pod("web").body)
    assert not parse_for("condition=Ready").met(pod("web", ready="False").body)
    assert parse_for("condition=Ready=FALSE").met(pod("web", ready="False").body)
    assert not parse_for("condition=Initialized").met(pod("web").body)  # no such condition: not yet


def test_a_condition_observed_for_an_older_generation_is_not_met():
    body = pod("web", generation=3).body
    body["status"]["conditions"][0]["observedGeneration"] = 2
    assert not parse_for("condition=Ready").met(body)
    body["status"]["conditions"][0]["observedGeneration"] = 3
    assert parse_for("condition=Ready").met(body)


def test_jsonpath_compares_one_scalar_as_go_prints_it():
    body = pod("web").body
    body["status"]["readyReplicas"], body["status"]["ratio"], body["status"]["flag"] = 3, 2.0, True
    assert parse_for("jsonpath={.status.phase}=Running").met(body)
    assert not parse_for("jsonpath={.status.phase}=Pending").met(body)
    assert parse_for("jsonpath={.status.readyReplicas}=3").met(body)
    assert parse_for("jsonpath={.status.ratio}=2").met(body)
    assert parse_for("jsonpath={.status.flag}=true").met(body)
    assert parse_for('jsonpath={.status.conditions[?(@.type=="Ready")].status}=True').met(body)
    assert parse_for("jsonpath={.status.conditions[0].type}=Ready").met(body)
    assert not parse_for("jsonpath={.status.podIP}").met(body)  # not there (yet): not met
    assert parse_for("jsonpath={.status.conditions}").met(body)  # any value, even a list


def test_jsonpath_that_leads_to_an_object_or_to_several_values_is_an_error():
    body = pod("web").body
    body["spec"]["containers"].append({"name": "d", "image": "busybox"})
    with pytest.raises(WaitError, match="error: jsonpath leads to a nested object or list which is not supported"):
        parse_for("jsonpath={.status.conditions}=x").met(body)
    with pytest.raises(WaitError, match="error: given jsonpath expression matches more than one value"):
        parse_for("jsonpath={.spec.containers[*].name}=c").met(body)
    assert parse_for("jsonpath={.status.conditions[*].type}=Ready").met(body)  # one condition: one value


# ---- the other arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("words, selector, every, expected", [
    (["pod/web"], None, False, (["Pod"], ["web"])),
    (["pods/web", "po/db"], None, False, (["Pod"], ["web", "db"])),
    (["pod", "web", "db"], None, False, (["Pod"], ["web", "db"])),
    (["pods"], "app=web", False, (["Pod"], [])),
    (["deploy,sts"], None, True, (["Deployment", "StatefulSet"], [])),
])
def test_wait_takes_objects_as_kubectl_does(words, selector, every, expected):
    assert parse_resources(words, selector, every) == expected


@pytest.mark.parametrize("words, selector, every, message", [
    ([], None, False, "error: You must provide one or more resources by argument or filename."),
    (["pod"], None, False, "error: resource(s) were provided, but no name was specified"),
    (["pod", "web"], "app=web", False, "error: name cannot be provided when a selector is specified"),
    (["pod/web", "db"], None, False, "error: there is no need to specify a resource type as a separate argument"),
    (["pod/web", "svc/web"], None, False, "error: podnet waits on objects of one type at a time"),
])
def test_bad_objects_are_kubectls_errors(words, selector, every, message):
    with pytest.raises(WaitError) as caught:
        parse_resources(words, selector, every)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("0", 0), ("1m30s", 90), ("500ms", 0.5), ("-1s", WEEK)])
def test_the_timeout_is_a_go_duration(text, seconds):
    assert parse_timeout(text) == seconds


def test_a_timeout_without_unit_is_gos_error():
    with pytest.raises(WaitError, match='invalid argument "60" for "--timeout" flag: time: missing unit in duration "60"'):
        parse_timeout("60")


# ---- what a watch reports, and how -w prints it ---------------------------------------------------


def test_changes_between_two_readings_are_a_watchs_events_in_key_order():
    before = {o.key: o for o in (pod("a"), pod("b"), pod("c"))}
    after = {o.key: o for o in (pod("b"), pod("c", ready="False"), pod("d"))}
    changes = watching.changes(before, after, now=0.0)
    assert [(c.type, c.obj.name) for c in changes] == [("DELETED", "a"), ("MODIFIED", "c"), ("ADDED", "d")]
    deleted = changes[0].obj
    assert deleted.metadata["deletionTimestamp"] == "1970-01-01T00:00:00Z"  # a pod deleted gracefully
    assert "deletionTimestamp" not in before[deleted.key].metadata  # the reading is not changed
    assert watching.changes(after, after) == []


def printed(output: str | None, *batches: list[KubeObject]) -> str:
    out = io.StringIO()
    printer = WatchPrinter(output, "Pod", False, out)
    for batch in batches:
        printer.print_all(batch)
    return out.getvalue()


def test_w_prints_the_table_then_one_row_per_change_in_its_columns():
    flipped = watching.changes({pod("web").key: pod("web")}, {pod("web").key: pod("web", ready="False")})
    gone = watching.changes({pod("web").key: pod("web")}, {}, now=0.0)
    lines = printed(None, [pod("web"), pod("db")], [c.obj for c in flipped], [c.obj for c in gone]).splitlines()
    assert [line.split()[:3] for line in lines] == [["NAME", "READY", "STATUS"], ["web", "1/1", "Running"],
                                                   ["db", "1/1", "Running"], ["web", "0/1", "Running"],
                                                   ["web", "1/1", "Terminating"]]
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # one column for READY


def test_watch_only_prints_the_header_with_its_first_row():
    assert printed(None, [], [pod("web")]).splitlines()[0].split()[:2] == ["NAME", "READY"]
    assert printed(None, []) == ""


def test_w_prints_each_object_as_json_yaml_or_name():
    as_json = printed("json", [pod("web")], [pod("web", ready="False")])
    decoder, at, objects = json.JSONDecoder(), 0, []
    while at < len(as_json.strip()):
        obj, at = decoder.raw_decode(as_json, at)
        objects.append(obj)
        at += 1
    assert [(o["kind"], o["status"]["conditions"][0]["status"]) for o in objects] == [("Pod", "True"), ("Pod", "False")]
    as_yaml = printed("yaml", [pod("web"), pod("db")], [pod("web")])
    assert as_yaml.count("---\n") == 2 and not as_yaml.startswith("---")
    assert printed("name", [pod("web")], [pod("db")]) == "pod/web\npod/db\n"
