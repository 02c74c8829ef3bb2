"""pods/exec, attach, portforward and log (podnet.apiserver.streams) driven by the real kubectl.

A small aiohttp server stands in for the API server: it serves the discovery and the pod kubectl
reads first, and routes the subresources to the handlers under test, which run local processes
(exec), follow a local file (attach, logs) and forward to local TCP servers (portforward). The
network-namespace part of port-forwarding is the root test at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pty
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import kubernetes.client
import kubernetes.stream
import pytest
from aiohttp import WSMsgType, ClientSession, web

from podnet.apiserver import streams
from podnet.host.netns import create_netns, delete_netns, socket_in_netns

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="needs kubectl")
DEADLINE = 60.0


def pod_body(namespace: str, name: str) -> dict:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"}}


API_RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
    {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]},
    {"name": "pods/attach", "singularName": "", "namespaced": True, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
    {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
     "verbs": ["create", "get"]},
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
]}


class StubServer:
    """The API server's routes kubectl needs, in a thread of its own (its own event loop)."""

    def __init__(self, tmp_path: Path):
        self.log_path = tmp_path / "c.log"
        self.log_path.write_bytes(b"")
        self.alive = True
        self.targets: dict[int, int] = {}  # a pod port -> the local port it is forwarded to
        self.netns: str | None = None  # or connect inside this network namespace
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(DEADLINE)
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "stub", "user": {}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": "default"}}],
        }))

    async def _start(self) -> int:
        app = web.Application()
        for path, body in (("/api", {"kind": "APIVersions", "versions": ["v1"]}),
                           ("/apis", {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
                           ("/api/v1", API_RESOURCES)):
            app.router.add_get(path, self.constant(body))
        base = "/api/v1/namespaces/{ns}/pods/{name}"
        app.router.add_get(base, self.pod)
        for method in ("GET", "POST"):
            app.router.add_route(method, base + "/exec", self.exec)
            app.router.add_route(method, base + "/attach", self.attach)
            app.router.add_route(method, base + "/portforward", self.portforward)
        app.router.add_get(base + "/log", self.log)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    @staticmethod
    def constant(body: dict):
        async def answer(request):
            return web.json_response(body)
        return answer

    async def pod(self, request):
        return web.json_response(pod_body(request.match_info["ns"], request.match_info["name"]))

    async def exec(self, request):
        try:
            options = streams.exec_options(request)
        except streams.StreamRequestError as exc:
            return exc.response()
        return await streams.exec_websocket(request, list(options.command), stdin=options.stdin, tty=options.tty,
                                            stdout=options.stdout, stderr=options.stderr)

    async def attach(self, request):
        options = streams.exec_options(request, attach=True)
        return await streams.attach_websocket(request, self.log_path, alive=lambda: self.alive, stdin=options.stdin,
                                              tty=options.tty, stdout=options.stdout, stderr=options.stderr)

    async def portforward(self, request):
        async def connect(port):
            return await streams.connect_in_netns(self.netns, self.targets.get(port, port))
        return await streams.portforward_websocket(request, connect, pod=request.match_info["name"])

    async def log(self, request):
        try:
            o = streams.log_options(request)
        except streams.StreamRequestError as exc:
            return exc.response()
        return await streams.log_response(request, self.log_path, follow=o.follow, tail_lines=o.tail_lines,
                                          since_seconds=o.since_seconds, since_time=o.since_time,
                                          timestamps=o.timestamps, limit_bytes=o.limit_bytes, alive=lambda: self.alive)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(DEADLINE)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE)

    def kubectl(self, *args: str, input: bytes | None = None, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, "--kubeconfig", str(self.kubeconfig), *args], input=input,
                              capture_output=True, timeout=timeout)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([KUBECTL, "--kubeconfig", str(self.kubeconfig), *args], **kwargs)


@pytest.fixture
def server(tmp_path):
    stub = StubServer(tmp_path)
    yield stub
    stub.stop()


def wait_for(check, what: str):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {DEADLINE} s")


# ---- exec ----------------------------------------------------------------------------------------

def test_exec_separates_stdout_and_stderr_and_exits_with_the_commands_code(server):
    done = server.kubectl("exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done.stdout == b"out\n"
    assert done.returncode == 3
    assert done.stderr.startswith(b"err\n") and b"command terminated with exit code 3" in done.stderr


def test_exec_success_is_exit_code_zero(server):
    done = server.kubectl("exec", "web", "-c", "c", "--", "echo", "hello world")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hello world\n", b"")


def test_a_process_killed_by_a_signal_exits_128_plus_the_signal(server):
    done = server.kubectl("exec", "web", "--", "sh", "-c", "kill -KILL $$")
    assert done.returncode == 137


def test_exec_stdin_of_a_megabyte_comes_back_intact_and_eof_ends_the_command(server):
    payload = os.urandom(1 << 20)
    done = server.kubectl("exec", "-i", "web", "--", "cat", input=payload)
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(done.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_a_command_that_stops_reading_its_stdin_still_ends_the_exec(server):
    done = server.kubectl("exec", "-i", "web", "--", "head", "-c", "5", input=b"abcdefgh" * (1 << 17))
    assert (done.returncode, done.stdout) == (0, b"abcde")


def test_exec_large_output_arrives_whole(server):
    done = server.kubectl("exec", "web", "--", "sh", "-c", "head -c 8000000 /dev/zero | tr '\\0' x; echo; echo end >&2")
    assert done.returncode == 0
    assert done.stdout == b"x" * 8_000_000 + b"\n" and done.stderr == b"end\n"


def test_a_client_that_does_not_read_holds_the_command_back(server, tmp_path):
    """Back-pressure: kubectl's stdout is a pipe nobody reads; once it and the buffers on the
    way are full, the command waits in its write. Without back-pressure all 256 MB would be
    written at once and held in memory on the way."""
    count = tmp_path / "count"
    client = server.popen("exec", "web", "--", "sh", "-c",
                          f"i=0; while [ $i -lt 4096 ]; do head -c 65536 /dev/zero; i=$((i+1)); echo $i > {count}; done",
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        def settled():  # the count stopped moving: the command is held in its write
            before = count.read_text() if count.exists() else ""
            time.sleep(1)
            return before and count.read_text() == before and before
        written = int(wait_for(settled, "the command held back")) * 65536
        assert written < 64 << 20
    finally:
        client.kill()
        client.wait(DEADLINE)


def test_a_slow_reader_gets_all_the_output_of_a_command_that_already_ended(server):
    """The command wrote 40 MB (more than every buffer on the way holds) and ended; the client
    reads only later, beyond the grace for children's output: nothing is cut (kubectl's stdout
    is a pipe read after a pause)."""
    client = server.popen("exec", "web", "--", "head", "-c", "40000000", "/dev/zero",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3 * streams.DRAIN_GRACE)  # not a measurement: a pause longer than the grace
    out, err = client.communicate(timeout=DEADLINE)
    assert (client.returncode, len(out)) == (0, 40_000_000), err


def test_a_background_child_holding_the_output_does_not_hold_the_exec(server, tmp_path):
    pidfile = tmp_path / "child"
    done = server.kubectl("exec", "web", "--", "sh", "-c", f"sleep 1000 & echo $! > {pidfile}; echo done")
    try:
        assert (done.returncode, done.stdout) == (0, b"done\n")
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_exec_of_a_missing_program_fails_as_the_runtime_says(server):
    done = server.kubectl("exec", "web", "--", "/no/such/program")
    assert done.returncode != 0
    assert b"/no/such/program" in done.stderr


def test_the_process_is_killed_when_the_client_goes_away(server, tmp_path):
    pidfile = tmp_path / "pid"
    client = server.popen("exec", "web", "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 1000",
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "the command started"))
    client.kill()
    client.wait(DEADLINE)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie of ours counts as gone; so does one reaped while its stat is read (ESRCH)
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
        except OSError:
            return True
    wait_for(gone, "the command killed")


class Terminal:
    """A program run with a terminal as its stdin and stdout, as a user runs kubectl -it."""

    def __init__(self, argv: list[str], rows: int, cols: int):
        self.pid, self.master = pty.fork()
        if self.pid == 0:
            os.execv(argv[0], argv)
        self.resize(rows, cols)
        self.output = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)  # what the kernel tells a terminal's foreground program

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def read_until(self, pattern: bytes) -> None:
        deadline = time.monotonic() + DEADLINE
        while not re.search(pattern, self.output):
            assert time.monotonic() < deadline, f"{pattern!r} not shown: {self.output!r}"
            if select.select([self.master], [], [], 0.5)[0]:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # EIO: the program ended
                    assert re.search(pattern, self.output), f"{pattern!r} not shown: {self.output!r}"

    def wait(self) -> int:
        with contextlib.suppress(OSError):
            while select.select([self.master], [], [], DEADLINE)[0]:
                chunk = os.read(self.master, 65536)
                if not chunk:
                    break
                self.output += chunk
        _, status = os.waitpid(self.pid, 0)
        os.close(self.master)
        return os.waitstatus_to_exitcode(status)


def test_exec_with_a_tty_gets_a_terminal_of_the_clients_size_and_its_keys(server):
    terminal = Terminal([KUBECTL, "--kubeconfig", str(server.kubeconfig), "exec", "-it", "web", "--", "sh"], 33, 101)
    terminal.read_until(rb"[#$] ")
    terminal.type(b"tty; stty size; echo typed-$((40+2))\r")
    terminal.read_until(rb"typed-42")
    assert re.search(rb"/dev/pts/\d+", terminal.output) and b"33 101" in terminal.output, terminal.output
    terminal.resize(40, 120)  # kubectl sends the new size on the resize channel
    terminal.type(b"while [ \"$(stty size)\" != '40 120' ]; do sleep 0.1; done; echo \"re\"sized; exit 4\r")
    terminal.read_until(rb"resized")  # the shell's output, not the echo of what was typed
    assert terminal.wait() == 4, terminal.output


def test_kubectl_cp_copies_both_ways(server, tmp_path):
    """kubectl cp is exec with tar on both ends (stdin one way, stdout the other)."""
    original = tmp_path / "original"
    original.write_bytes(os.urandom(300_000))
    assert server.kubectl("cp", str(original), f"web:{tmp_path}/in-the-pod").returncode == 0
    assert (tmp_path / "in-the-pod").read_bytes() == original.read_bytes()
    assert server.kubectl("cp", f"web:{tmp_path}/in-the-pod", str(tmp_path / "back")).returncode == 0
    assert (tmp_path / "back").read_bytes() == original.read_bytes()


# ---- attach --------------------------------------------------------------------------------------

def test_attach_follows_the_containers_output_from_now_until_it_ends(server):
    """Output written before the attach is not shown (no history, as containerd), what comes
    after is; input is taken and dropped (the container's stdin is /dev/null); the attach ends
    with the container, exit code 0."""
    server.log_path.write_bytes(b"before attach\n")
    client = server.popen("attach", "-i", "web", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[bytes] = []
    reading = threading.Thread(target=lambda: seen.extend(iter(client.stdout.readline, b"")), daemon=True)
    reading.start()
    client.stdin.write(b"typed input goes nowhere\n")
    client.stdin.flush()
    written = 0

    def shown() -> bool:  # lines keep coming until the client shows one: then the attach has begun
        nonlocal written
        with server.log_path.open("ab") as log:
            log.write(b"line %d\n" % written)
        written += 1
        return bool(seen)
    wait_for(shown, "attached output shown")
    server.alive = False
    client.stdin.close()
    assert client.wait(DEADLINE) == 0, client.stderr.read()
    reading.join(DEADLINE)
    lines = b"".join(seen).splitlines()
    first = int(lines[0].split()[1])
    assert lines == [b"line %d" % n for n in range(first, written)]


# ---- logs ----------------------------------------------------------------------------------------

def test_logs_whole_tail_and_limit(server):
    server.alive = False
    server.log_path.write_bytes(b"one\ntwo\nthree\nfour")
    assert server.kubectl("logs", "web").stdout == b"one\ntwo\nthree\nfour"
    assert server.kubectl("logs", "web", "--tail=2").stdout == b"three\nfour"
    assert server.kubectl("logs", "web", "--tail=0").stdout == b""
    assert server.kubectl("logs", "web", "--tail=10").stdout == b"one\ntwo\nthree\nfour"
    assert server.kubectl("logs", "web", "--limit-bytes=6").stdout == b"one\ntw"


def test_logs_timestamps_prefix_every_line_with_an_rfc3339_time(server):
    server.alive = False
    server.log_path.write_bytes(b"a\nb\n")
    out = server.kubectl("logs", "web", "--timestamps").stdout.decode()
    assert re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z [ab]\n){2}", out), out


def test_logs_since_gives_nothing_of_a_file_last_written_before_the_cutoff(server):
    server.alive = False
    server.log_path.write_bytes(b"old\n")
    an_hour_ago = time.time() - 3600
    os.utime(server.log_path, (an_hour_ago, an_hour_ago))
    assert server.kubectl("logs", "web", "--since=10m").stdout == b""
    assert server.kubectl("logs", "web", "--since=2h").stdout == b"old\n"


def test_logs_follow_sees_lines_appended_and_ends_with_the_container(server):
    server.log_path.write_bytes(b"first\n")
    client = server.popen("logs", "-f", "web", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert client.stdout.readline() == b"first\n"
    with server.log_path.open("ab") as log:
        log.write(b"second\n")
    assert client.stdout.readline() == b"second\n"
    with server.log_path.open("ab") as log:
        log.write(b"last\n")
    server.alive = False
    rest, err = client.communicate(timeout=DEADLINE)
    assert client.returncode == 0, err
    assert rest == b"last\n"


def test_bad_log_options_are_refused_as_the_api_server_does(server):
    async def get(query):
        async with ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{server.port}/api/v1/namespaces/default/pods/web/log{query}") as r:
                return r.status, await r.json()
    status, body = asyncio.run(get("?tailLines=-1"))
    assert status == 422 and body["reason"] == "Invalid" and "tailLines" in body["message"]
    status, body = asyncio.run(get("?sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z"))
    assert status == 422 and "at most one of `sinceTime` or `sinceSeconds`" in body["message"]


# ---- portforward ---------------------------------------------------------------------------------

class EchoServer:
    """A local TCP server answering every line with 'echo: line' (then closing on 'bye')."""

    def __init__(self, listening: socket.socket | None = None):
        self.sock = listening or socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    @staticmethod
    def _talk(conn):
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                if line.strip() == b"bye":
                    return
                conn.sendall(b"echo: " + line)

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept; closing alone would not
        self.sock.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def start_port_forward(server, *ports: str) -> tuple[subprocess.Popen, list[int]]:
    client = server.popen("port-forward", "pod/web", *ports, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    local = []
    for _ in ports:
        line = client.stdout.readline().decode()
        found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
        assert found, line + client.stderr.read1(4096).decode() if client.poll() is not None else line
        local.append(int(found.group(1)))
    return client, local


def talk(port: int, lines: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as conn:
        for line in lines:
            conn.sendall(line)
        with contextlib.suppress(OSError):  # the far side may have closed already
            conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


def test_port_forward_carries_connections_to_the_pods_port(server, echo):
    server.targets[8080] = echo.port
    client, [local] = start_port_forward(server, "0:8080")
    try:
        assert talk(local, [b"hello\n", b"world\n"]) == b"echo: hello\necho: world\n"
        # a second connection through the same session, and one with much data
        big = [b"%06d\n" % i for i in range(50_000)]
        assert talk(local, big) == b"".join(b"echo: " + line for line in big)
        # the pod's side closing first ends the connection here too
        assert talk(local, [b"x\n", b"bye\n"]) == b"echo: x\n"
    finally:
        client.terminate()
        client.wait(DEADLINE)


def test_port_forward_to_a_closed_port_reports_the_error_as_kubelet_does(server):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    server.targets[9090] = port
    client, [local] = start_port_forward(server, "0:9090")
    try:
        assert talk(local, [b"hello\n"]) == b""
        client.wait(DEADLINE)  # kubectl 1.31+ ends on a forwarding error
        err = client.stderr.read().decode()
        assert "an error occurred forwarding" in err and "error forwarding port 9090 to pod web" in err, err
        assert "connection refused" in err
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(DEADLINE)


def test_the_channel_protocol_forwards_each_port_with_its_prefix(server, echo):
    """What the Python client speaks: v4.channel.k8s.io, ?ports=, channels 2i data and 2i+1 errors."""
    server.targets[80] = echo.port
    url = f"http://127.0.0.1:{server.port}/api/v1/namespaces/default/pods/web/portforward?ports=80"

    async def session():
        async with ClientSession() as http, http.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws:
            assert ws.protocol == "v4.channel.k8s.io"
            first = [await ws.receive_bytes(), await ws.receive_bytes()]
            await ws.send_bytes(b"\x00ping\n")
            reply = await ws.receive_bytes()
            await ws.send_bytes(b"\x00bye\n")
            rest = []
            async for message in ws:
                if message.type != WSMsgType.BINARY:
                    break
                rest.append(message.data)
            return first, reply, rest
    first, reply, rest = asyncio.run(session())
    assert first == [b"\x00" + struct.pack("<H", 80), b"\x01" + struct.pack("<H", 80)]
    assert reply == b"\x00echo: ping\n"
    assert rest == []  # the pod closed the connection: the WebSocket ends


def test_a_non_websocket_request_is_refused_with_a_status(server):
    async def post():
        async with ClientSession() as http:
            url = f"http://127.0.0.1:{server.port}/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true"
            async with http.post(url, headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}) as r:
                return r.status, await r.json()
    status, body = asyncio.run(post())
    assert status == 400 and body["kind"] == "Status" and "WebSocket" in body["message"]


def test_the_python_client_execs_and_forwards_ports_too(server, echo):
    """The official Python client (v5 for exec, the v4 channel protocol for port-forward)."""
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.port}"
    api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
    session = kubernetes.stream.stream(api.connect_get_namespaced_pod_exec, "web", "default",
                                       command=["sh", "-c", "echo hi; echo err >&2; exit 5"], stdin=False,
                                       stdout=True, stderr=True, tty=False, _preload_content=False)
    session.run_forever(timeout=DEADLINE)
    assert (session.returncode, session.read_stdout(), session.read_stderr()) == (5, "hi\n", "err\n")
    server.targets[80] = echo.port
    forward = kubernetes.stream.portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="80")
    try:
        conn = forward.socket(80)
        conn.setblocking(True)
        conn.sendall(b"through the client\n")
        received = b""
        while not received.endswith(b"\n"):
            received += conn.recv(4096)
        assert received == b"echo: through the client\n"
        conn.close()
    finally:
        forward.close()


@pytest.mark.root
def test_port_forward_connects_to_localhost_inside_the_pods_network_namespace(server):
    name = f"podnet-t{secrets.token_hex(3)}.pod-default-web"
    create_netns(name)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        listening = socket_in_netns(name, socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 8080))
        listening.listen()
        echo = EchoServer(listening)
        server.netns = name
        client, [local] = start_port_forward(server, "0:8080")
        try:
            assert talk(local, [b"inside\n"]) == b"echo: inside\n"
        finally:
            client.terminate()
            client.wait(DEADLINE)
            echo.close()
        with pytest.raises(OSError, match=f'failed to connect to localhost:8080 inside namespace "{re.escape(name)}", '
                                          r"IPv4: dial tcp4 127.0.0.1:8080: connect: connection refused"):
            asyncio.run(streams.connect_in_netns(name, 8080))
    finally:
        delete_netns(name)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


# ---- the pieces, on their own --------------------------------------------------------------------

def test_the_exit_status_is_what_kubelet_writes_on_the_error_channel():
    assert streams.exit_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    assert streams.exit_status(["sh", "-c", "exit 3"], 3) == {
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
        "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert streams.exit_status(["sleep", "9"], -signal.SIGTERM)["details"]["causes"][0]["message"] == "143"


def test_the_v4_protocol_carries_the_same_channels_without_the_close_signal(server):
    url = (f"http://127.0.0.1:{server.port}/api/v1/namespaces/default/pods/web/exec"
           "?command=sh&command=-c&command=echo+hi%3B+exit+2&stdout=true&stderr=true")

    async def session():
        async with ClientSession() as http, http.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws:
            messages = [message.data async for message in ws if message.type == WSMsgType.BINARY]
            return ws.protocol, messages, ws.close_code
    protocol, messages, code = asyncio.run(session())
    assert protocol == "v4.channel.k8s.io" and code == 1000
    assert messages[0] == b"\x01" and b"".join(m[1:] for m in messages if m[0] == 1) == b"hi\n"
    status = json.loads(messages[-1][1:])
    assert messages[-1][0] == 3 and status["reason"] == "NonZeroExitCode"


def test_the_base64_protocol_carries_channels_as_a_digit_and_base64_text(server):
    url = (f"http://127.0.0.1:{server.port}/api/v1/namespaces/default/pods/web/exec"
           "?command=head&command=-c&command=5&stdin=true&stdout=true&stderr=true")

    async def session():
        async with ClientSession() as http, http.ws_connect(url, protocols=("v4.base64.channel.k8s.io",)) as ws:
            await ws.send_str("0" + base64.b64encode(b"hello, world").decode())
            return ws.protocol, [message.data async for message in ws if message.type == WSMsgType.TEXT]
    protocol, messages = asyncio.run(session())
    assert protocol == "v4.base64.channel.k8s.io"
    assert messages[0] == "1" and base64.b64decode("".join(m[1:] for m in messages if m[0] == "1")) == b"hello"
    assert messages[-1][0] == "3" and json.loads(base64.b64decode(messages[-1][1:]))["status"] == "Success"


def test_an_unsupported_subprotocol_is_refused(server):
    url = f"http://127.0.0.1:{server.port}/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true"

    async def session():
        async with ClientSession() as http:
            async with http.get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                              "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                              "Sec-WebSocket-Protocol": "channel.k8s.io"}) as r:
                return r.status, await r.json()
    status, body = asyncio.run(session())
    assert status == 403 and "requested protocol(s) are not supported" in body["message"]


@pytest.mark.parametrize("starts, restarts, previous, span", [
    ([0], 0, False, (0, None)),                # the only run
    ([0, 40, 90], 2, False, (90, None)),       # `kubectl logs` after restarts: the current run
    ([0, 40, 90], 2, True, (40, 90)),          # --previous: the run before
    ([], 0, False, (0, None)),                 # adopted: the whole file
    ([70], 3, True, (0, 70)),                  # adopted after restarts: all earlier runs
    ([], 3, True, (0, None)),
])
def test_the_log_span_of_a_run(starts, restarts, previous, span):
    assert streams.log_span(starts, restarts, previous, pod="web", container="c") == span


def test_previous_without_a_restart_is_kubelets_error():
    with pytest.raises(streams.StreamRequestError, match='previous terminated container "c" in pod "web" not found'):
        streams.log_span([0], 0, True, pod="web", container="c")


@pytest.mark.parametrize("content, lines, expected", [
    (b"a\nb\nc\n", 2, b"b\nc\n"),
    (b"a\nb\nc", 2, b"b\nc"),                   # an unfinished last line is a line
    (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
    (b"a\nb\nc\n", 0, b""),
    (b"", 3, b""),
    (b"\n\n\n", 2, b"\n\n"),                   # empty lines count
])
def test_tail_lines(tmp_path, content, lines, expected):
    path = tmp_path / "log"
    path.write_bytes(content)
    assert content[streams._tail_offset(path, 0, len(content), lines):] == expected


def test_tail_lines_across_read_blocks_and_from_a_run_start(tmp_path):
    path = tmp_path / "log"
    content = b"".join(b"%d\n" % i for i in range(30_000))  # several CHUNKs
    path.write_bytes(content)
    assert content[streams._tail_offset(path, 0, len(content), 20_000):] == b"".join(b"%d\n" % i for i in range(10_000, 30_000))
    start = content.index(b"29990\n")
    assert content[streams._tail_offset(path, start, len(content), 100):] == content[start:]


def test_resize_messages_may_hold_several_or_part_of_a_size():
    resizes = streams._Resizes()
    assert resizes.feed(b'{"Width":80,"Height":24}\n{"Width":100,') == [(80, 24)]
    assert resizes.feed(b'"Height":30}\n') == [(100, 30)]
    assert resizes.feed(b'not json') == [] and resizes.pending == ""
    assert resizes.feed(b'{"Width":70000,"Height":-1}') == [(65535, 0)]
