"""What runs for each image (no root): podnet.images' word, the argv kubelet gives, the stand-in
serving exactly what images.serving says (on 127.0.0.1), images: strict as kubelet's pull errors."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from podnet import images
from podnet.config import parse_config
from podnet.errors import InvalidInput
from podnet.kubelet import container_argv, redis_argv
from podnet.linux.supervisor.status import live_readiness, object_bodies, pods_status
from podnet.output.columns import pod_row
from podnet.output.describe import describe_pod
from tests.conftest import cluster_of, run_cli
from tests.conftest import free_port as shared_free_port
from tests.supervisor_fakes import sandbox_of

STRICT = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nimages: strict\n"


def free_ports(count: int, kind: int) -> list[int]:
    """Ports free on 127.0.0.1 for TCP and UDP both (tests/conftest.py's, distinct)."""
    return [shared_free_port(udp=True) for _ in range(count)]


# -- what each image is ------------------------------------------------------------------------

@pytest.mark.parametrize("container, runs, listens", [
    ({"image": "redis:7.2", "args": ["--port", "6380", "--save", ""]}, images.SERVER, {(6380, "TCP")}),
    ({"image": "redis"}, images.SERVER, {(6379, "TCP")}),
    ({"image": "redis:7", "command": ["redis-server", "--port", "7000"]}, images.SERVER, {(7000, "TCP")}),
    ({"image": "redis:7", "command": ["redis-cli", "ping"]}, images.HOST, set()),
    ({"image": "python:3.12", "command": ["python", "app.py"]}, images.HOST, set()),
    ({"image": "busybox", "command": ["sleep", "3600"]}, images.HOST, set()),
    ({"image": "docker.io/envoyproxy/envoy:v1.30",
      "ports": [{"name": "admin", "containerPort": 9901}, {"containerPort": 5353, "protocol": "UDP"}],
      "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin"}},
      "livenessProbe": {"tcpSocket": {"port": 15000}},
      "startupProbe": {"exec": {"command": ["true"]}}},
     images.STANDIN, {(9901, "TCP"), (5353, "UDP"), (15000, "TCP")}),
    ({"image": "memcached:1.6", "command": ["memcached", "-p", "11211"]}, images.STANDIN, set()),
])
def test_each_image_runs_as_images_says(container, runs, listens):
    behaviour = images.behaviour_of(container)
    assert behaviour.runs == runs
    assert behaviour.listens == frozenset(listens)
    assert behaviour.known == (runs != images.HOST)


def test_argv_per_image():
    assert container_argv({"image": "python:3.12", "command": ["python3", "-m", "http.server", "8000"]}, {}) == \
        [sys.executable, "-m", "http.server", "8000"]
    assert container_argv({"image": "python:3.12"}, {}) == [sys.executable]  # the image's CMD
    assert container_argv({"image": "busybox"}, {}) == ["sh"]
    assert container_argv({"image": "redis:7.2", "args": ["--port", "6379"]}, {}) is None  # the runtime's redis_argv
    envoy = {"image": "envoy", "ports": [{"containerPort": 81}], "readinessProbe": {"tcpSocket": {"port": 9000}}}
    assert container_argv(envoy, {}) == [sys.executable, "-m", "podnet.agnhost.standin", "envoy",
                                         "--tcp", "81", "--tcp", "9000"]
    assert container_argv(envoy, {}, standins=False) is None


def test_redis_runs_with_the_images_defaults_its_args_and_the_pods_directory():
    argv = redis_argv({"image": "redis:7.2", "args": ["--port", "$(PORT)", "--appendonly", "yes"]},
                      {"PORT": "6380"}, "/run/podnet/x/redis/data_redis-0_redis")
    assert argv[0] == "redis-server"
    assert argv[argv.index("--protected-mode") + 1] == "no"
    assert argv[-4:] == ["--dir", "/run/podnet/x/redis/data_redis-0_redis", "--daemonize", "no"]
    assert argv.index("--appendonly", argv.index("--port")) > argv.index("--save")  # the container's args win
    assert "6380" in argv
    with_file = redis_argv({"image": "redis", "command": ["redis-server", "/etc/redis/redis.conf"], "args": ["--port", "7000"]},
                           {}, "/d")
    assert with_file[:3] == ["redis-server", "/etc/redis/redis.conf", "--protected-mode"]  # the file comes first
    assert with_file[-6:] == ["--port", "7000", "--dir", "/d", "--daemonize", "no"]


def test_simulator_sees_stand_in_ports_and_only_those():
    spec = {"containers": [{"name": "proxy", "image": "envoy", "ports": [{"containerPort": 81}],
                            "livenessProbe": {"tcpSocket": {"port": 9000}}}]}
    assert images.serving(spec, 81, "TCP") == images.ServingAnswer(
        True, "the stand-in for image envoy in container proxy listens on 81/TCP")
    assert images.serving(spec, 9000, "TCP").serving is True
    refused = images.serving(spec, 82, "TCP")
    assert refused.serving is False and "envoy (stand-in)" in refused.detail
    strict = images.serving(spec, 81, "TCP", standins=False)
    assert strict.serving is False and "cannot be pulled" in strict.detail


# -- the stand-in serves what the simulator believes, port by port ------------------------------

def test_running_stand_in_agrees_with_images_serving_port_by_port():
    http, tcp, spare_tcp = free_ports(3, socket.SOCK_STREAM)
    udp, spare_udp = free_ports(2, socket.SOCK_DGRAM)
    container = {"name": "app", "image": "example.com/team/app:1",
                 "ports": [{"name": "web", "containerPort": http}, {"containerPort": udp, "protocol": "UDP"}],
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": "web"}},
                 "livenessProbe": {"tcpSocket": {"port": tcp}}}
    spec = {"containers": [container]}
    argv = container_argv(container, {})
    env = {**os.environ, "PODNET_AGNHOST_BIND_ADDRESS": "127.0.0.1",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not tcp_answers(tcp) and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
        checked = [(http, "TCP"), (tcp, "TCP"), (spare_tcp, "TCP"), (udp, "UDP"), (spare_udp, "UDP")]
        for port, protocol in checked:
            believed = images.serving(spec, port, protocol).serving
            answered = tcp_answers(port) if protocol == "TCP" else udp_echoes(port)
            assert believed is answered, f"{port}/{protocol}: images.serving says {believed}, the stand-in {answered}"
        for path in ("/ready", "/healthz", "/readyz"):  # httpGet probes pass
            with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=5) as response:
                assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{tcp}/echo?msg=hi", timeout=5) as response:
            assert response.read() == b"hi"
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0


def tcp_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def udp_echoes(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        for _ in range(3):
            s.sendto(b"echo ping", ("127.0.0.1", port))
            try:
                return s.recv(100) == b"ping"
            except ConnectionRefusedError:
                return False
            except TimeoutError:
                continue
    return False


# -- images: strict ---------------------------------------------------------------------------

def test_images_mode_is_validated_with_one_clear_error():
    assert parse_config(STRICT).standins is False
    assert parse_config(STRICT.replace("strict", "standin")).standins is True
    with pytest.raises(InvalidInput, match=r"cluster.yaml:3: .*images: 'lax' is not an images mode: standin .* or strict"):
        parse_config(STRICT.replace("strict", "lax"), "cluster.yaml")


def test_pull_reference_is_dockers_normalisation():
    assert images.pull_reference("envoy") == "docker.io/library/envoy:latest"
    assert images.pull_reference("me/app:1") == "docker.io/me/app:1"
    assert images.pull_reference("example.com:5000/app") == "example.com:5000/app:latest"
    assert images.pull_reference("quay.io/x/y@sha256:ab") == "quay.io/x/y@sha256:ab"


POD = """
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers: [{name: app, image: "example.com/team/app:1", ports: [{containerPort: 8080}]}]
"""


def test_an_image_that_cannot_be_pulled_waits_as_kubelet_says():
    cluster = cluster_of(POD, STRICT)
    pod = cluster.get("Pod", "default", "app")
    sandbox = sandbox_of(pod)
    container = sandbox.containers[0]  # what Runtime.start_pod leaves for it: no process, kubelet's waiting state
    container.process, container.image = None, "example.com/team/app:1"
    container.waiting = ("ErrImagePull", images.pull_error(container.image))
    [body] = [b for b in object_bodies(cluster, {pod.ref: sandbox}, {}) if b["metadata"]["name"] == "app"]
    waiting = body["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ErrImagePull" and body["status"]["phase"] == "Pending"
    assert live_readiness({}, pod, standins=False) is False, "never an endpoint: nothing runs"
    assert live_readiness({}, pod, standins=True) is None
    assert waiting["message"].startswith('rpc error: code = NotFound desc = failed to pull and unpack image '
                                         '"example.com/team/app:1"')
    shown = type(pod)("Pod", pod.namespace, pod.name, body)
    assert pod_row(shown, False)[1:3] == ["0/1", "ErrImagePull"]
    text = "\n".join(describe_pod(shown, standins=False))
    assert "cannot be pulled (images: strict)" in text
    assert re.search(r"State: +Waiting\n +Reason: +ErrImagePull\n +Message: +rpc error: code = NotFound", text)
    [entry] = [p for p in pods_status("t", cluster, {pod.ref: sandbox})["pods"] if p["pod"] == pod.ref]
    assert entry["running"], "up does not wait for an image that cannot come"
    container.waiting = ("ImagePullBackOff", images.pull_backoff(container.image))
    [body] = [b for b in object_bodies(cluster, {pod.ref: sandbox}, {}) if b["metadata"]["name"] == "app"]
    assert pod_row(type(pod)("Pod", pod.namespace, pod.name, body), False)[2] == "ImagePullBackOff"
    assert body["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == \
        'Back-off pulling image "example.com/team/app:1"'


def test_describe_says_a_container_is_a_stand_in():
    pod = cluster_of(POD).get("Pod", "default", "app")
    text = "\n".join(describe_pod(pod))
    assert "Runs:           stand-in for image example.com/team/app:1 (podnet does not have it): serves 8080/TCP" in text


def test_explain_says_an_image_cannot_be_pulled_with_images_strict(capsys, tmp_path):
    (tmp_path / "pod.yaml").write_text(POD)
    (tmp_path / "cluster.yaml").write_text(STRICT)
    code, out, _ = run_cli(capsys, "explain", "-f", str(tmp_path / "pod.yaml"), "--config", str(tmp_path / "cluster.yaml"))
    assert "container app: image example.com/team/app:1 cannot be pulled (images: strict): ErrImagePull" in out
    _, out, _ = run_cli(capsys, "explain", "-f", str(tmp_path / "pod.yaml"))
    assert "cannot be pulled" not in out
