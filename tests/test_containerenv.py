"""A container's environment from ConfigMaps and Secrets, as kubelet's makeEnvironmentVariables
resolves it (podnet.semantics.containerenv): envFrom, configMapKeyRef, secretKeyRef,
resourceFieldRef, and the references that keep a container from being created."""

from __future__ import annotations

import base64

import pytest

from podnet import images
from podnet.api import fields
from podnet.semantics.containerenv import (CREATE_CONFIG_ERROR, RUN_CONTAINER_ERROR, ContainerConfigError, expand, service_environment,
                                           container_environment, host_allocatable, quantity, resolve_environment)
from podnet.sim.trace import Tracer
from tests.conftest import cluster_of


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


SOURCES = f"""
apiVersion: v1
kind: Service
metadata: {{name: backend}}
spec: {{selector: {{app: backend}}, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: app}}
data: {{BACKEND_HOST: backend.default.svc, MODE: from-configmap, LEVEL: info, app.properties: "a=1", 1st: one,
        BACKEND_SERVICE_HOST: overridden}}
binaryData: {{BLOB: {b64("binary")}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: later}}
data: {{MODE: from-later, REF: "$(LEVEL)"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
data: {{PASSWORD: {b64("s3cret")}, TOKEN: {b64("from-data")}}}
stringData: {{TOKEN: from-stringData, USER: admin}}
"""


def env_of(containers: str, extra: str = "", **kwargs) -> dict[str, str]:
    c = cluster_of(SOURCES + extra + f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: p}}
spec:
  containers:
{containers}
""")
    pod = c.get("Pod", "default", "p")
    return container_environment(pod, pod.spec["containers"][0], c, **kwargs)


def resolved(containers: str, extra: str = ""):
    c = cluster_of(SOURCES + extra + f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: p}}
spec:
  containers:
{containers}
""")
    pod = c.get("Pod", "default", "p")
    return resolve_environment(pod, pod.spec["containers"][0], c)


def config_error(containers: str) -> ContainerConfigError:
    with pytest.raises(ContainerConfigError) as caught:
        env_of(containers)
    return caught.value


# -- envFrom ------------------------------------------------------------------------------------

def test_env_from_a_config_map_gives_every_data_key_not_binary_data():
    env = env_of("  - {name: c, image: busybox, envFrom: [{configMapRef: {name: app}}]}")
    assert env["BACKEND_HOST"] == "backend.default.svc" and env["LEVEL"] == "info"
    assert "BLOB" not in env, "binaryData is not read for the environment (kubelet reads ConfigMap.Data)"


def test_env_from_keys_that_are_not_c_identifiers_are_taken_since_relaxed_validation():
    """kubelet 1.34+ (RelaxedEnvironmentVariableValidation GA) takes `app.properties` and `1st`
    as they are, with no InvalidEnvironmentVariableNames event."""
    result = resolved("  - {name: c, image: busybox, envFrom: [{configMapRef: {name: app}}]}")
    assert result.env["app.properties"] == "a=1" and result.env["1st"] == "one"
    assert result.skipped == ()


def test_env_from_a_secret_decodes_data_and_string_data_wins():
    env = env_of("  - {name: c, image: busybox, envFrom: [{secretRef: {name: creds}}]}")
    assert env["PASSWORD"] == "s3cret", "Secret data is base64"
    assert env["TOKEN"] == "from-stringData", "the API server writes stringData over data"
    assert env["USER"] == "admin"


def test_env_from_prefix_is_put_before_every_key():
    env = env_of("  - {name: c, image: busybox, envFrom: [{prefix: CFG_, configMapRef: {name: app}},"
                 " {prefix: DB_, secretRef: {name: creds}}]}")
    assert env["CFG_LEVEL"] == "info" and env["DB_PASSWORD"] == "s3cret"
    assert "LEVEL" not in env and "PASSWORD" not in env


@pytest.mark.parametrize("containers, expected", [
    # a later envFrom source overrides an earlier one
    ("  - {name: c, image: busybox, envFrom: [{configMapRef: {name: app}}, {configMapRef: {name: later}}]}",
     "from-later"),
    ("  - {name: c, image: busybox, envFrom: [{configMapRef: {name: later}}, {configMapRef: {name: app}}]}",
     "from-configmap"),
    # env overrides every envFrom source, wherever it stands
    ("  - {name: c, image: busybox, env: [{name: MODE, value: from-env}],"
     " envFrom: [{configMapRef: {name: app}}, {configMapRef: {name: later}}]}", "from-env"),
])
def test_env_from_order_and_env_overrides(containers, expected):
    assert env_of(containers)["MODE"] == expected


def test_env_from_overrides_service_links_and_env_expands_against_it():
    env = env_of("""  - name: c
    image: busybox
    envFrom: [{configMapRef: {name: app}}, {configMapRef: {name: later}}]
    env:
    - {name: URL, value: "http://$(BACKEND_HOST):$(BACKEND_SERVICE_PORT)/$(MISSING)"}
    - {name: FROM_KEY, valueFrom: {configMapKeyRef: {name: later, key: REF}}}""")
    assert env["BACKEND_SERVICE_HOST"] == "overridden", "an envFrom key wins over a Service link variable"
    assert env["URL"] == "http://backend.default.svc:80/$(MISSING)"
    assert env["REF"] == "$(LEVEL)", "an envFrom value is not expanded"
    assert env["FROM_KEY"] == "$(LEVEL)", "a valueFrom value is not expanded"


def test_env_from_optional_source_that_is_missing_is_left_out():
    env = env_of("  - {name: c, image: busybox, envFrom: [{configMapRef: {name: nope, optional: true}},"
                 " {secretRef: {name: nope, optional: true}}, {configMapRef: {name: later}}]}")
    assert env["MODE"] == "from-later"


def test_a_name_no_process_environment_can_hold_is_skipped_with_kubelets_event_message():
    """A prefix with `=` makes names execve cannot pass: left out, and said as kubelet's
    InvalidEnvironmentVariableNames event says it."""
    result = resolved("  - {name: c, image: busybox, envFrom: [{prefix: 'BAD=', configMapRef: {name: later}},"
                      " {configMapRef: {name: app}}]}")
    assert not [name for name in result.env if "=" in name]
    assert result.env["LEVEL"] == "info", "the other sources still count"
    [skipped] = result.skipped
    assert (skipped.kind, skipped.namespace, skipped.name, skipped.keys) == ("configMap", "default", "later",
                                                                             ("BAD=MODE", "BAD=REF"))
    assert skipped.message == ("Keys [BAD=MODE, BAD=REF] from the EnvFrom configMap default/later were skipped "
                               "since they are considered invalid environment variable names.")


# -- configMapKeyRef / secretKeyRef -------------------------------------------------------------

def test_key_refs_take_one_key_each():
    env = env_of("""  - name: c
    image: busybox
    env:
    - {name: BACKEND, valueFrom: {configMapKeyRef: {name: app, key: BACKEND_HOST}}}
    - {name: PASS, valueFrom: {secretKeyRef: {name: creds, key: PASSWORD}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: TOKEN}}}""")
    assert (env["BACKEND"], env["PASS"], env["TOKEN"]) == ("backend.default.svc", "s3cret", "from-stringData")


def test_optional_key_refs_to_what_is_missing_leave_the_variable_out():
    env = env_of("""  - name: c
    image: busybox
    envFrom: [{configMapRef: {name: app}}]
    env:
    - {name: A, valueFrom: {configMapKeyRef: {name: nope, key: x, optional: true}}}
    - {name: B, valueFrom: {configMapKeyRef: {name: app, key: nope, optional: true}}}
    - {name: C, valueFrom: {secretKeyRef: {name: nope, key: x, optional: true}}}
    - {name: D, valueFrom: {secretKeyRef: {name: creds, key: nope, optional: true}}}
    - {name: LEVEL, valueFrom: {configMapKeyRef: {name: app, key: nope, optional: true}}}""")
    assert not {"A", "B", "C", "D"} & set(env), "left out, not set empty"
    assert env["LEVEL"] == "info", "the envFrom value of the same name stays"


@pytest.mark.parametrize("reference, message", [
    ("envFrom: [{configMapRef: {name: nope}}]", 'configmap "nope" not found'),
    ("envFrom: [{secretRef: {name: nope}}]", 'secret "nope" not found'),
    ("env: [{name: X, valueFrom: {configMapKeyRef: {name: nope, key: k}}}]", 'configmap "nope" not found'),
    ("env: [{name: X, valueFrom: {secretKeyRef: {name: nope, key: k}}}]", 'secret "nope" not found'),
    ("env: [{name: X, valueFrom: {configMapKeyRef: {name: app, key: k}}}]", "couldn't find key k in ConfigMap default/app"),
    ("env: [{name: X, valueFrom: {secretKeyRef: {name: creds, key: k}}}]", "couldn't find key k in Secret default/creds"),
    ("env: [{name: X, valueFrom: {resourceFieldRef: {resource: limits.gpu}}}]", "unsupported container resource : limits.gpu"),
    ("env: [{name: X, valueFrom: {resourceFieldRef: {resource: limits.cpu, containerName: nope}}}]", "container nope not found"),
])
def test_a_missing_reference_keeps_the_container_from_being_created(reference, message):
    error = config_error(f"  - {{name: c, image: busybox, {reference}}}")
    assert (error.reason, error.message) == (CREATE_CONFIG_ERROR, message)


def test_a_config_map_of_another_namespace_is_not_seen():
    other = """---
apiVersion: v1
kind: ConfigMap
metadata: {name: elsewhere, namespace: other}
data: {X: "1"}
"""
    with pytest.raises(ContainerConfigError, match='configmap "elsewhere" not found'):
        env_of("  - {name: c, image: busybox, envFrom: [{configMapRef: {name: elsewhere}}]}", other)


NUL_VALUE, LATIN1_VALUE = b"a\x00b", b"caf\xe9"


def test_a_value_with_a_nul_byte_cannot_reach_the_process():
    extra = f"""---
apiVersion: v1
kind: Secret
metadata: {{name: binary}}
data: {{RAW: {b64(NUL_VALUE)}}}
"""
    c = cluster_of(SOURCES + extra + """---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, image: busybox, envFrom: [{secretRef: {name: binary}}]}]}
""")
    pod = c.get("Pod", "default", "p")
    with pytest.raises(ContainerConfigError) as caught:
        container_environment(pod, pod.spec["containers"][0], c)
    assert caught.value.reason == RUN_CONTAINER_ERROR and "setenv: invalid argument" in caught.value.message


def test_an_env_name_no_process_can_hold_is_a_run_container_error_not_a_crash():
    """env[].name "A=B" passes admission; execve cannot hold it (Python's Popen raises): kubelet's
    runtime refuses the container, which waits, and nothing else is held up."""
    c = cluster_of("""
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, image: busybox, env: [{name: "A=B", value: x}]}]}
""")
    pod = c.get("Pod", "default", "p")
    with pytest.raises(ContainerConfigError) as caught:
        container_environment(pod, pod.spec["containers"][0], c)
    assert caught.value.reason == RUN_CONTAINER_ERROR and "'A=B'" in caught.value.message


def test_secret_bytes_that_are_not_utf8_reach_the_process_unchanged():
    extra = f"""---
apiVersion: v1
kind: Secret
metadata: {{name: latin}}
data: {{RAW: {b64(LATIN1_VALUE)}}}
"""
    env = env_of("  - {name: c, image: busybox, envFrom: [{secretRef: {name: latin}}]}", extra)
    assert env["RAW"].encode("utf-8", "surrogateescape") == b"caf\xe9"


# -- resourceFieldRef ---------------------------------------------------------------------------

NODE = {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "100Gi"}


@pytest.mark.parametrize("resources, ref, expected", [
    # rounded up to whole cores unless the divisor says millicores
    ("{limits: {cpu: 500m}}", "{resource: limits.cpu}", "1"),
    ("{limits: {cpu: 250m}}", "{resource: limits.cpu, divisor: 1m}", "250"),
    ("{limits: {cpu: '1.5'}}", "{resource: limits.cpu}", "2"),
    ("{limits: {cpu: 1}}", "{resource: limits.cpu, divisor: 1m}", "1000"),
    ("{limits: {cpu: 100m}}", "{resource: limits.cpu, divisor: '0'}", "1"),  # a zero divisor is 1
    # memory in bytes, or in the divisor's unit, rounded up
    ("{limits: {memory: 64Mi}}", "{resource: limits.memory, divisor: 1Mi}", "64"),
    ("{limits: {memory: 100M}}", "{resource: limits.memory, divisor: 1Mi}", "96"),  # 95.37 Mi
    ("{limits: {memory: 1Gi}}", "{resource: limits.memory}", "1073741824"),
    ("{limits: {memory: 1e3}}", "{resource: limits.memory}", "1000"),
    ("{limits: {memory: 1500}}", "{resource: limits.memory, divisor: 1k}", "2"),
    ("{limits: {ephemeral-storage: 1Gi}}", "{resource: limits.ephemeral-storage, divisor: 1Mi}", "1024"),
    # a request left out is the limit (API defaulting); neither set: 0
    ("{limits: {cpu: '2', memory: 1Gi}}", "{resource: requests.cpu}", "2"),
    ("{limits: {cpu: '2'}, requests: {cpu: 300m}}", "{resource: requests.cpu, divisor: 1m}", "300"),
    ("{}", "{resource: requests.memory}", "0"),
    # a limit left out is the node's allocatable
    ("{}", "{resource: limits.cpu}", "2"),
    ("{requests: {cpu: 100m}}", "{resource: limits.cpu, divisor: 1m}", "2000"),
    ("{limits: {cpu: '0'}}", "{resource: limits.cpu}", "2"),  # a zero limit too
    ("{}", "{resource: limits.memory, divisor: 1Gi}", "8"),
    ("{}", "{resource: limits.ephemeral-storage, divisor: 1Gi}", "100"),
    # hugepages are never defaulted
    ("{limits: {hugepages-2Mi: 4Mi}}", "{resource: limits.hugepages-2Mi, divisor: 1Mi}", "4"),
    ("{}", "{resource: limits.hugepages-2Mi}", "0"),
])
def test_resource_field_ref_divides_and_rounds_up(resources, ref, expected):
    env = env_of(f"""  - name: c
    image: busybox
    resources: {resources}
    env: [{{name: V, valueFrom: {{resourceFieldRef: {ref}}}}}]""", allocatable=NODE)
    assert env["V"] == expected


def test_resource_field_ref_of_another_container():
    env = env_of("""  - name: c
    image: busybox
    env:
    - {name: SIDE_MEM, valueFrom: {resourceFieldRef: {containerName: side, resource: limits.memory, divisor: 1Mi}}}
    - {name: SIDE_CPU, valueFrom: {resourceFieldRef: {containerName: side, resource: limits.cpu}}}
  - name: side
    image: busybox
    resources: {limits: {memory: 32Mi}}""", allocatable=NODE)
    assert env["SIDE_MEM"] == "32" and env["SIDE_CPU"] == "2", "the other container's limits, defaulted alike"


@pytest.mark.parametrize("text, value", [("250m", "1/4"), ("1Ki", "1024"), ("0.5Gi", "536870912"),
                                         ("1E", "1000000000000000000"), ("1e-3", "1/1000"), ("12", "12"),
                                         (".5", "1/2"), ("100n", "1/10000000")])
def test_quantities(text, value):
    assert str(quantity(text)) == value


def test_an_invalid_quantity_is_a_config_error():
    error = config_error("""  - name: c
    image: busybox
    resources: {limits: {cpu: lots}}
    env: [{name: V, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}]""")
    assert error.reason == CREATE_CONFIG_ERROR and "quantities must match" in error.message


def test_the_hosts_allocatable_is_what_a_container_without_limits_may_use():
    node = host_allocatable()
    assert int(node["cpu"]) >= 1 and int(node["memory"]) > 0 and int(node["ephemeral-storage"]) > 0
    env = env_of("  - {name: c, image: busybox, env: [{name: V, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}]}")
    assert env["V"] == node["cpu"]


# ---------------------------------------------------------------- what the simulator believes a pod serves

PORT_FROM_CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: ports}
data: {PORT: "9090"}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node1
  containers:
  - name: app
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, "--http-port=$(PORT)"]
    env: [{name: PORT, valueFrom: {configMapKeyRef: {name: ports, key: PORT}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node1
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"""


def test_trace_reads_the_port_kubelet_expands_from_a_configmap():
    cluster = cluster_of(PORT_FROM_CONFIGMAP)
    web = cluster.get("Pod", "default", "web")
    assert images.pod_serving(web, cluster, 9090, "TCP").serving is True  # netexec --http-port=9090
    assert images.pod_serving(web, cluster, 8080, "TCP").serving is False  # not its default port
    delivered = Tracer(cluster).trace("default/client", fields.pod_ip(web), 9090)
    assert delivered.verdict == "delivered"


def test_a_container_kubelet_does_not_create_serves_nothing():
    cluster = cluster_of(PORT_FROM_CONFIGMAP.replace("name: ports, key: PORT", "name: absent, key: PORT"))
    web = cluster.get("Pod", "default", "web")
    answer = images.pod_serving(web, cluster, 9090, "TCP")
    assert answer.serving is False and "CreateContainerConfigError" in answer.detail
    assert 'configmap "absent" not found' in answer.detail
    refused = Tracer(cluster).trace("default/client", fields.pod_ip(web), 9090)
    assert refused.verdict != "delivered" and "CreateContainerConfigError" in refused.reason


def test_a_callers_cache_makes_the_service_links_once_per_namespace():
    """The simulator asks for every pod of one cluster: the Service link variables depend only on
    the pod's namespace and enableServiceLinks, so a caller's cache makes them once for each."""
    cluster = cluster_of(SOURCES + "\n---\n" + PORT_FROM_CONFIGMAP)
    pods = [p for p in cluster.of_kind("Pod") if p.namespace == "default"]
    cache: dict = {}
    for pod in pods:
        assert service_environment(pod, cluster, cache) == service_environment(pod, cluster)
    assert list(cache) == [("default", True)]
    first = service_environment(pods[0], cluster, cache)
    first["BACKEND_SERVICE_HOST"] = "changed by a caller"
    assert service_environment(pods[0], cluster, cache)["BACKEND_SERVICE_HOST"] != "changed by a caller"


def test_a_quantity_with_a_huge_exponent_is_refused_at_once():
    with pytest.raises(ContainerConfigError, match="out of range"):
        quantity("1e999999999")
    assert quantity("1e3") == 1000 and quantity("5e-3") * 1000 == 5


def test_any_name_up_to_the_closing_parenthesis_is_expanded_as_kubelet_does():
    env = {"1st": "one", "my key": "two", "A": "a"}
    assert expand("$(1st)-$(my key)-$(A)-$(missing)-$$(A)-$(unclosed", env) == "one-two-a-$(missing)-$(A)-$(unclosed"
