"""What runs for each image, in a real pod namespace (root only): redis answers PING and its
exec probe's redis-cli works, a stand-in serves exactly what images.serving believes, and with
images: strict nothing starts and the container waits as kubelet's ErrImagePull."""

import subprocess

import pytest

from podnet import images
from podnet.host.layout import ClusterLayout
from podnet.linux.runtime import Runtime

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

from tests.conftest import cluster_of  # noqa: E402
from tests.test_linux_runtime import netns, wait_for  # noqa: E402,F401  (netns: the fixture)

REDIS = """
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: team}
spec:
  containers:
  - name: redis
    image: redis:7.2
    args: ["--port", "6380", "--save", "", "--appendonly", "no"]
    ports: [{name: redis, containerPort: 6380}]
    readinessProbe: {exec: {command: [redis-cli, -p, "6380", ping]}}
"""

STANDIN = """
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: team}
spec:
  containers:
  - name: app
    image: example.com/team/app:1
    ports: [{name: web, containerPort: 8080}, {containerPort: 5353, protocol: UDP}]
    livenessProbe: {tcpSocket: {port: 9000}}
"""

STRICT = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nimages: strict\n"


def runtime_for(text, tmp_path, config=None):
    cluster = cluster_of(text, config)
    runtime = Runtime(ClusterLayout("t"), cluster)
    runtime.logs = tmp_path / "logs"
    return runtime, cluster.get("Pod", "team", "probe")


def in_pod(runtime, sandbox, argv, **kwargs):
    return subprocess.run(runtime.enter_argv(sandbox, argv), capture_output=True, text=True, timeout=20, **kwargs)


def test_redis_runs_the_hosts_redis_server_and_answers_ping_in_the_pod(netns, tmp_path):
    runtime, pod = runtime_for(REDIS, tmp_path)
    sandbox = runtime.start_pod(pod, netns)
    try:
        container = sandbox.containers[0]
        assert container.argv[0] == "redis-server" and "--dir" in container.argv
        probe = pod.spec["containers"][0]["readinessProbe"]["exec"]["command"]
        assert wait_for(lambda: in_pod(runtime, sandbox, probe).stdout.strip() == "PONG", timeout=30), \
            container.log.read_text()
        assert in_pod(runtime, sandbox, ["redis-cli", "-p", "6380", "set", "k", "v"]).stdout.strip() == "OK"
        assert in_pod(runtime, sandbox, ["redis-cli", "-p", "6380", "get", "k"]).stdout.strip() == "v"
        assert images.serving(pod.spec, 6380, "TCP").serving is True
        # the pod's own network only: the host's loopback has no redis on that port
        host = subprocess.run(["redis-cli", "-p", "6380", "ping"], capture_output=True, text=True, timeout=20)
        assert "PONG" not in host.stdout
    finally:
        runtime.stop_all()


def test_a_stand_in_in_a_pod_serves_what_images_serving_believes(netns, tmp_path):
    runtime, pod = runtime_for(STANDIN, tmp_path)
    sandbox = runtime.start_pod(pod, netns)
    try:
        container = sandbox.containers[0]
        assert "stand-in for image example.com/team/app:1" in container.note
        assert wait_for(lambda: in_pod(runtime, sandbox, ["curl", "-sf", "http://127.0.0.1:9000/healthz"]).returncode == 0,
                        timeout=30), container.log.read_text()
        for port in (8080, 9000, 8081, 80):
            curl = in_pod(runtime, sandbox, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                             f"http://127.0.0.1:{port}/hostname"])
            answered = curl.stdout == "200"
            assert answered is images.serving(pod.spec, port, "TCP").serving, f"{port}/TCP: {curl.stdout!r}"
        echo = ["python3", "-c", "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.settimeout(2); s.sendto(b'echo hi', ('127.0.0.1', int(sys.argv[1]))); print(s.recv(10).decode())"]
        for port in (5353, 5354):
            answered = in_pod(runtime, sandbox, [*echo, str(port)]).stdout.strip() == "hi"
            assert answered is images.serving(pod.spec, port, "UDP").serving, f"{port}/UDP"
        assert "podnet: stand-in for image example.com/team/app:1" in container.log.read_text()
    finally:
        runtime.stop_all()


def test_strict_images_start_nothing_and_wait_as_kubelet_says(netns, tmp_path):
    runtime, pod = runtime_for(STANDIN, tmp_path, STRICT)
    sandbox = runtime.start_pod(pod, netns)
    try:
        container = sandbox.containers[0]
        assert container.process is None
        assert container.waiting[0] == "ErrImagePull" and 'image "example.com/team/app:1"' in container.waiting[1]

        def backing_off():
            runtime.reap()
            return container.waiting[0] == "ImagePullBackOff"

        assert wait_for(backing_off, timeout=30)
        assert container.waiting[1] == 'Back-off pulling image "example.com/team/app:1"'
        assert container.process is None and container.restarts == 0
        assert images.serving(pod.spec, 8080, "TCP", runtime.cluster.config.standins).serving is False
    finally:
        runtime.stop_all()


PYTHON = """
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: team}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: python:3.12-slim
    command: [python3, -c, "import socket, sys; print('python', sys.version_info[0], socket.gethostname())"]
"""


def test_a_python_image_runs_its_command_with_the_hosts_python_in_the_pod(netns, tmp_path):
    runtime, pod = runtime_for(PYTHON, tmp_path)
    sandbox = runtime.start_pod(pod, netns)
    try:
        container = sandbox.containers[0]
        assert wait_for(lambda: container.process.poll() is not None, timeout=30)
        assert container.process.returncode == 0
        assert "python 3 probe" in container.log.read_text()
    finally:
        runtime.stop_all()
