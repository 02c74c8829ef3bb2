"""pods/exec, pods/attach and pods/portforward over WebSocket, and pods/log, as kubectl meets them.

The protocols are the ones kube-apiserver and kubelet serve (client-go tools/remotecommand and
tools/portforward, apimachinery httpstream/wsstream, kubelet's cri/streaming):

- **exec / attach**: subprotocol `v5.channel.k8s.io` (the only one kubectl offers, 1.30 on,
  where exec goes over WebSocket by default: it falls back to SPDY, never to older channel
  versions; v1.32 too), also `v4.channel.k8s.io`
  and `v4.base64.channel.k8s.io` (the Python client offers v5 then v4). Every binary message
  starts with its channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the error channel (one
  metav1.Status JSON: Success, or Failure with reason NonZeroExitCode and a cause
  {reason: ExitCode, message: "N"}, from which kubectl takes its own exit code), 4 resize
  ({"Width", "Height"} JSON), and in v5 only, [255, N]: the client closed channel N (stdin at
  EOF). The server first sends an empty message on the lowest writable channel (the client
  waits for nothing, but kube-apiserver does it), ends with the Status and then a normal
  closure (1000), which is what ends the client's reads of every channel. The v1-v3 protocols
  (`channel.k8s.io`, plain-text errors, no exit code) matter to no current client and are not
  served. Output is copied as it comes with back-pressure: a message is sent only when the last
  one is on its way, so a slow client slows the process, nothing is buffered without bound.
  The process runs in its own session; when the client goes away its whole process group is
  killed (containerd kills an exec whose stream ends). The exec ends when its process does:
  children that keep the output open get DRAIN_GRACE of silence, a slow client all the time it
  needs to read what was written. `-t` gives the process a pty as its controlling terminal,
  sized by the resize channel.
- **attach**: podnet's containers write stdout and stderr into one log file and get
  stdin=/dev/null (kubelet's runtime would give them a pipe only with `stdin: true` in the spec).
  Attach therefore follows that file from its end (containerd's attach shows no history either)
  on the stdout channel until the container ends, then answers Success as kubelet does. Input
  sent with `-i` is read and dropped, as containerd does for a container started without stdin
  (kubelet itself refuses nothing there).
- **portforward**: kubectl 1.31+ (KUBECTL_PORT_FORWARD_WEBSOCKETS, on by default) tunnels a
  SPDY/3.1 session through a WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io`: every
  connection is a pair of SPDY streams (headers streamtype error|data, port, requestid), the
  server answers each SYN_STREAM with a SYN_REPLY, copies the data stream to a TCP connection to
  the pod's port and back, half-closes with FIN, and writes a failure to the error stream (kubectl
  1.31+ then ends the whole port-forward, as it does against kubelet). Other clients (the Python
  client) use the plain channel protocol (`v4.channel.k8s.io`; `?ports=` names the ports; for
  the i-th port channel 2i is data, 2i+1 errors, each first carrying the port as 2 bytes little
  endian); one TCP connection per port for the life of the WebSocket, as kubelet does.
- **logs**: see `log_response`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import fcntl
import inspect
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from podnet.apiserver import spdy
from podnet.host.netns import socket_in_netns

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: [255, channel] is the client closing that channel

V5, V4, V4_BASE64 = "v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"
EXEC_PROTOCOLS = (V5, V4, V4_BASE64)  # in the order the server prefers them
PORTFORWARD_CHANNEL_PROTOCOLS = (V4, V4_BASE64, "channel.k8s.io", "base64.channel.k8s.io")
SPDY_TUNNEL_PREFIX = "SPDY/3.1+"
PORTFORWARD_PROTOCOL = "portforward.k8s.io"

CHUNK = 32 * 1024  # bytes read from a process, a file or a pod connection at a time
LOG_POLL = 0.2  # seconds between looks at a followed log file that did not grow
DRAIN_GRACE = 1.0  # seconds an exited process's children may keep its output open before it is cut
MAX_MESSAGE = 4 * 1024 * 1024  # the largest WebSocket message taken from a client


class StreamRequestError(Exception):
    """A request the API server answers with a Status before any upgrade (400 unless said)."""

    def __init__(self, message: str, code: int = 400, reason: str = "BadRequest"):
        super().__init__(message)
        self.message, self.code, self.reason = message, code, reason

    def response(self) -> web.Response:
        return web.json_response(status_body("Failure", self.message, self.reason, code=self.code), status=self.code)


def status_body(status: str, message: str = "", reason: str = "", *, code: int | None = None,
                causes: list[dict] | None = None, kind: bool = True) -> dict[str, Any]:
    """A metav1.Status as Go marshals it (empty fields left out)."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1"} if kind else {}
    body.update({"metadata": {}, "status": status})
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if causes:
        body["details"] = {"causes": causes}
    if code is not None:
        body["code"] = code
    return body


def exit_status(argv: list[str], returncode: int) -> dict[str, Any]:
    """The error channel's Status for an ended process: what kubelet writes, so that kubectl
    exits with the same code ("command terminated with exit code N"). A process killed by a
    signal exits 128+signal, as runc reports it."""
    if returncode == 0:
        return status_body("Success", kind=False)
    code = 128 - returncode if returncode < 0 else returncode
    return status_body("Failure", f"command terminated with non-zero exit code: error executing command "
                                  f"[{' '.join(argv)}], exit code {code}", "NonZeroExitCode",
                       causes=[{"reason": "ExitCode", "message": str(code)}], kind=False)


def internal_error(message: str) -> dict[str, Any]:
    """apierrors.NewInternalError as the error channel carries it."""
    return status_body("Failure", f"Internal error occurred: {message}", "InternalError", code=500,
                       causes=[{"message": message}], kind=False)


# ---- the query -----------------------------------------------------------------------------------

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # Go's strconv.ParseBool
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _flag(query, name: str) -> bool:
    value = query.get(name)
    if value is None:
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise StreamRequestError(f'{name}: Invalid value: "{value}": must be a boolean')


@dataclass(frozen=True)
class ExecOptions:
    """PodExecOptions / PodAttachOptions from the query (kubelet's remotecommand.NewOptions)."""
    command: tuple[str, ...]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def exec_options(request: web.Request, *, attach: bool = False) -> ExecOptions:
    query = request.query
    command = tuple(query.getall("command", ()))
    stdin, stdout, stderr, tty = (_flag(query, n) for n in ("stdin", "stdout", "stderr", "tty"))
    if tty and stderr:
        stderr = False  # kubelet: "exec with tty and stderr is not supported, bypassing stderr"
    if not (stdin or stdout or stderr):
        raise StreamRequestError("you must specify at least 1 of stdin, stdout, stderr")
    if not attach and not command:
        raise StreamRequestError("you must specify at least 1 command")  # apiserver's PodExecOptions check
    return ExecOptions(command, query.get("container", ""), stdin, stdout, stderr, tty)


def _negotiate(request: web.Request, supported: tuple[str, ...]) -> str | None:
    """The subprotocol to answer (the first the client asks for that is supported, as wsstream's
    handshake picks), "" when the client asks for none; None when none of its fit."""
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    asked = [p.strip() for p in header.split(",") if p.strip()]
    if not asked:
        return "" if "" in supported else None
    return next((p for p in asked if p in supported), None)


def _upgrade_refusal(request: web.Request, supported: tuple[str, ...]) -> web.Response | None:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        if request.headers.get("Upgrade", "").upper().startswith("SPDY"):
            message = "podnet serves this over WebSocket only (kubectl 1.30 or later); SPDY is not supported"
        else:
            message = "Upgrade request required"
        return StreamRequestError(message).response()
    if _negotiate(request, supported) is None:
        asked = request.headers.get("Sec-WebSocket-Protocol", "")
        return StreamRequestError(f"requested protocol(s) are not supported: [{asked}]; "
                                  f"supports [{' '.join(p for p in supported if p)}]", 403, "Forbidden").response()
    return None


async def _accept(request: web.Request, supported: tuple[str, ...]) -> tuple[web.WebSocketResponse, str]:
    protocol = _negotiate(request, supported) or ""
    ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), autoping=True, compress=False,
                               max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    return ws, protocol


# ---- the channel protocol ------------------------------------------------------------------------

class Channels:
    """One WebSocket carrying numbered channels (wsstream's raw or base64 codec)."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str):
        self.ws, self.protocol = ws, protocol
        self.base64 = "base64" in protocol
        self.close_signal = protocol == V5
        self.open = True

    async def send(self, channel: int, data: bytes) -> None:
        if not self.open:
            return
        try:
            if self.base64:
                await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
            else:
                await self.ws.send_bytes(bytes((channel,)) + data)
        except (ConnectionError, RuntimeError):
            self.open = False  # the client went; the reader sees it too

    async def messages(self) -> AsyncIterator[tuple[int, bytes]]:
        """(channel, data) as the client sends them, until it closes; (CLOSE, bytes([n])) for v5's
        close signal."""
        while True:
            message = await self.ws.receive()
            if message.type == WSMsgType.BINARY and not self.base64:
                data = message.data
            elif message.type == WSMsgType.TEXT and self.base64:
                text = message.data
                if not text:
                    continue
                try:  # the channel as a digit, the data in base64 (no v5 close signal here)
                    data = bytes((ord(text[0]) - ord("0"),)) + base64.b64decode(text[1:])
                except ValueError:
                    continue
            elif message.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue  # the wrong kind for the protocol: wsstream drops it too
            else:
                self.open = False
                return
            if not data:
                continue
            if self.close_signal and data[0] == CLOSE:
                if len(data) == 2:
                    yield CLOSE, data[1:]
                continue
            yield data[0], data[1:]

    async def finish(self, status: dict[str, Any]) -> None:
        """The Status on the error channel, then the normal closure that ends the client's reads."""
        await self.send(ERROR, json.dumps(status, separators=(",", ":")).encode())
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await self.ws.close()
        self.open = False


async def _hello(channels: Channels, stdout: bool, stderr: bool) -> None:
    """kube-apiserver's empty message on the lowest writable channel once the upgrade is done."""
    await channels.send(STDOUT if stdout else STDERR if stderr else ERROR, b"")


def _set_window(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


class _Resizes:
    """The resize channel: JSON objects {"Width", "Height"}, one or more per message."""

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self.pending += data.decode(errors="replace")
        sizes, decoder = [], json.JSONDecoder()
        while True:
            text = self.pending.lstrip()
            if not text:
                self.pending = ""
                return sizes
            try:
                value, end = decoder.raw_decode(text)
            except ValueError:
                # the rest of an object still to come; anything else is no size: dropped
                self.pending = text if text.startswith("{") and len(text) < 4096 else ""
                return sizes
            self.pending = text[end:]
            if isinstance(value, dict):
                with contextlib.suppress(TypeError, ValueError):
                    width, height = (min(max(int(value.get(k, 0)), 0), 0xFFFF) for k in ("Width", "Height"))
                    sizes.append((width, height))


async def _read_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        try:
            chunk = await reader.read(CHUNK)
        except OSError:  # EIO: a pty whose other side every process closed
            return
        if not chunk:
            return
        yield chunk


class _Output:
    """One output stream copied to its channel; `waiting_since` is when it last began waiting
    for the process to write (None while it sends), so an exited command's output is cut only
    where nothing more comes (a child that kept the pipe open), never while a slow client reads."""

    def __init__(self, reader: asyncio.StreamReader, channels: Channels, channel: int):
        self.reader, self.channels, self.channel = reader, channels, channel
        self.waiting_since: float | None = None
        self.task = asyncio.create_task(self.copy())

    async def copy(self) -> None:
        while True:
            self.waiting_since = time.monotonic()
            try:
                chunk = await self.reader.read(CHUNK)
            except OSError:  # EIO: a pty whose other side every process closed
                return
            self.waiting_since = None
            if not chunk:
                return
            await self.channels.send(self.channel, chunk)
            if not self.channels.open:
                return

    def idle_for(self, now: float) -> float:
        return 0.0 if self.waiting_since is None else now - self.waiting_since


async def _drain(outputs: list[_Output]) -> None:
    """Once the command ended: everything it wrote, and then no more than DRAIN_GRACE of waiting
    for what its children might still write into the same pipes."""
    pending = {output.task for output in outputs}
    while pending:
        _, pending = await asyncio.wait(pending, timeout=DRAIN_GRACE / 4)
        now = time.monotonic()
        for output in outputs:
            if output.task in pending and output.idle_for(now) >= DRAIN_GRACE:
                output.task.cancel()


async def _reader_of(pipe) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    reader = asyncio.StreamReader(limit=CHUNK * 4)
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader, transport


async def _writer_of(pipe) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
    return asyncio.StreamWriter(transport, protocol, None, loop)


class _Command:
    """The exec'd process and its ends of the standard streams.

    Its end is watched with a pidfd, apart from its pipes: asyncio's Process.wait() also waits
    for every pipe to be read to its end, which a client that stopped reading holds up forever.
    Without `-t` it runs in a session of its own (its process group is what is killed); with
    `-t` util-linux `setsid --ctty` makes the session and takes the pty's slave as its
    controlling terminal (this process is no group leader, so setsid does not fork: the pid
    stays the session's and the group's)."""

    def __init__(self, popen: subprocess.Popen, master: int | None):
        self.popen, self.master = popen, master
        self.outputs: list[tuple[asyncio.StreamReader, int]] = []
        self.stdin: asyncio.StreamWriter | None = None
        self.transports: list[asyncio.BaseTransport] = []

    @classmethod
    async def start(cls, argv: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> _Command:
        if tty:
            master, slave = pty.openpty()
            try:
                popen = subprocess.Popen(["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave)
            except OSError:
                os.close(master)
                raise
            finally:
                os.close(slave)
            command = cls(popen, master)
            reader, transport = await _reader_of(os.fdopen(os.dup(master), "rb", buffering=0))
            command.outputs.append((reader, STDOUT))
            command.transports.append(transport)
            if stdin:
                command.stdin = await _writer_of(os.fdopen(os.dup(master), "wb", buffering=0))
            return command
        pipe, null = subprocess.PIPE, subprocess.DEVNULL
        popen = subprocess.Popen(argv, stdin=pipe if stdin else null, stdout=pipe if stdout else null,
                                 stderr=pipe if stderr else null, start_new_session=True)
        command = cls(popen, None)
        for stream, channel in ((popen.stdout, STDOUT), (popen.stderr, STDERR)):
            if stream is not None:
                reader, transport = await _reader_of(stream)
                command.outputs.append((reader, channel))
                command.transports.append(transport)
        if popen.stdin is not None:
            command.stdin = await _writer_of(popen.stdin)
        return command

    async def wait(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.popen.pid)
        except OSError:  # a kernel without pidfds (before 5.3)
            return await asyncio.to_thread(self.popen.wait)
        ended = loop.create_future()
        loop.add_reader(pidfd, lambda: ended.done() or ended.set_result(None))
        try:
            await ended
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self.popen.wait()

    def kill(self) -> None:
        """SIGKILL to its whole process group (what it started too)."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        if self.stdin is not None:
            self.stdin.close()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None


async def _open_session(request: web.Request, stdout: bool, stderr: bool) -> web.StreamResponse | Channels:
    """An exec's or an attach's WebSocket, its channels greeted (kube-apiserver's first empty
    message), or the Status refusing the upgrade."""
    refusal = _upgrade_refusal(request, EXEC_PROTOCOLS)
    if refusal is not None:
        return refusal
    ws, protocol = await _accept(request, EXEC_PROTOCOLS)
    channels = Channels(ws, protocol)
    await _hello(channels, stdout, stderr)
    return channels


async def exec_websocket(request: web.Request, argv: list[str], *, stdin: bool, tty: bool, stdout: bool = True,
                         stderr: bool = True) -> web.StreamResponse:
    """Run argv (the whole command line: the supervisor's `exec` argv for the pod and container,
    then the request's `command`s) and carry its standard streams over the WebSocket."""
    stderr = stderr and not tty
    opened = await _open_session(request, stdout, stderr)
    if not isinstance(opened, Channels):
        return opened
    channels, ws = opened, opened.ws
    try:
        command = await _Command.start(argv, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)
    except OSError as exc:
        await channels.finish(internal_error(f"error executing command in container: {exc}"))
        return ws
    outputs = [_Output(reader, channels, channel) for reader, channel in command.outputs]
    copies = [output.task for output in outputs]
    receiving = asyncio.create_task(_receive_input(channels, command))
    ended = asyncio.create_task(command.wait())
    try:
        await asyncio.wait({ended, receiving}, return_when=asyncio.FIRST_COMPLETED)
        if not ended.done():  # the client went away: kill what it ran
            command.kill()
        returncode = await ended
        await _drain(outputs)
        receiving.cancel()
        await asyncio.gather(receiving, *copies, return_exceptions=True)
        # kubelet names the request's command (not what enters the pod around it)
        await channels.finish(exit_status(list(request.query.getall("command", ())) or argv, returncode))
    finally:
        command.kill()
        for task in (*copies, receiving, ended):
            task.cancel()
        command.close()
    return ws


async def _receive_input(channels: Channels, command: _Command) -> None:
    """Stdin and resizes from the client until it goes away (then this returns)."""
    resizes, stdin = _Resizes(), command.stdin
    async for channel, data in channels.messages():
        if channel == STDIN and stdin is not None:
            try:
                stdin.write(data)
                await stdin.drain()  # back-pressure: no more is read from the client meanwhile
            except (ConnectionError, OSError):
                stdin = None  # the process closed its stdin: what follows is dropped
        elif channel == CLOSE and data[0] == STDIN and stdin is not None:
            if command.master is not None:
                with contextlib.suppress(ConnectionError, OSError):
                    stdin.write(b"\x04")  # end of input for a terminal's reader
            else:
                stdin.close()
            stdin = None
        elif channel == RESIZE and command.master is not None:
            for width, height in resizes.feed(data):
                with contextlib.suppress(OSError):
                    _set_window(command.master, width, height)


# ---- attach --------------------------------------------------------------------------------------

async def _is_alive(alive: Callable[[], bool | Awaitable[bool]]) -> bool:
    answer = alive()
    if inspect.isawaitable(answer):
        answer = await answer
    return bool(answer)


async def attach_websocket(request: web.Request, log_path: Path, *, alive: Callable[[], bool | Awaitable[bool]],
                           stdin: bool, tty: bool, stdout: bool = True, stderr: bool = True) -> web.StreamResponse:
    """The container's output from now on (its log file, followed) until the container ends."""
    opened = await _open_session(request, stdout, stderr and not tty)
    if not isinstance(opened, Channels):
        return opened
    channels, ws = opened, opened.ws
    if not await _is_alive(alive):
        await channels.finish(internal_error("error attaching to container: container is in CONTAINER_EXITED state"))
        return ws
    start = log_path.stat().st_size if log_path.exists() else 0
    receiving = asyncio.create_task(_drain_input(channels))
    try:
        async for chunk in _follow(log_path, start, alive, gone=receiving.done):
            if stdout:
                await channels.send(STDOUT, chunk)
            if not channels.open:
                break
        if not receiving.done():
            await channels.finish(status_body("Success", kind=False))
    finally:
        receiving.cancel()
    return ws


async def _drain_input(channels: Channels) -> None:
    """What the client sends to an attached container: nowhere to go (stdin is /dev/null)."""
    async for _ in channels.messages():
        pass


# ---- logs ----------------------------------------------------------------------------------------

async def _follow(path: Path, offset: int, alive: Callable[[], bool | Awaitable[bool]], *,
                  gone: Callable[[], bool] = lambda: False, end: int | None = None) -> AsyncIterator[bytes]:
    """The file's bytes from offset on as they are written, until the container has ended and
    all of it is read (or the reader is gone). A file that shrank was started again: from 0."""
    while not gone():
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < offset:
            offset = 0
        if end is not None:
            size = min(size, end)
        if size > offset:
            with path.open("rb") as file:
                file.seek(offset)
                while offset < size and not gone():
                    chunk = file.read(min(CHUNK, size - offset))
                    if not chunk:
                        break
                    offset += len(chunk)
                    yield chunk
            continue
        if end is not None and offset >= end:
            return
        if not await _is_alive(alive):
            # one more look: what it wrote just before it ended
            if path.exists() and path.stat().st_size > offset:
                continue
            return
        await asyncio.sleep(LOG_POLL)


def _tail_offset(path: Path, start: int, end: int, lines: int) -> int:
    """Where the last `lines` lines of path[start:end] begin (a last line without its newline counts)."""
    if lines <= 0:
        return end
    with path.open("rb") as file:
        position, found = end, -1
        file.seek(max(end - 1, start))
        if end > start and file.read(1) != b"\n":
            found = 0  # the unfinished last line is one of them
        while position > start:
            block = min(CHUNK, position - start)
            position -= block
            file.seek(position)
            data = file.read(block)
            index = len(data)
            while True:
                index = data.rfind(b"\n", 0, index)
                if index < 0:
                    break
                found += 1
                if found == lines:
                    return position + index + 1
    return start


def _rfc3339(moment: float) -> str:
    stamp = datetime.fromtimestamp(moment, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(moment * 1e9) % 1_000_000_000:09d}Z"


@dataclass(frozen=True)
class LogOptions:
    """PodLogOptions from the query, checked as the API server's validation does."""
    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: float | None = None  # seconds since the epoch
    limit_bytes: int | None = None


def _integer(query, name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise StreamRequestError(f'{name}: Invalid value: "{value}": must be an integer') from None


def log_options(request: web.Request) -> LogOptions:
    query = request.query
    tail, since, limit = _integer(query, "tailLines"), _integer(query, "sinceSeconds"), _integer(query, "limitBytes")
    since_time = None
    if query.get("sinceTime"):
        try:
            since_time = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise StreamRequestError(f'sinceTime: Invalid value: "{query["sinceTime"]}": '
                                     "must be an RFC3339 time") from None
    problems = []
    if tail is not None and tail < 0:
        problems.append("tailLines: Invalid value: %d: must be greater than or equal to 0" % tail)
    if limit is not None and limit < 1:
        problems.append("limitBytes: Invalid value: %d: must be greater than 0" % limit)
    if since is not None and since < 1:
        problems.append("sinceSeconds: Invalid value: %d: must be greater than 0" % since)
    if since is not None and since_time is not None:
        problems.append("sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified")
    if problems:
        raise StreamRequestError(f"PodLogOptions \"\" is invalid: [{', '.join(problems)}]" if len(problems) > 1
                                 else f"PodLogOptions \"\" is invalid: {problems[0]}", 422, "Invalid")
    return LogOptions(query.get("container", ""), _flag(query, "follow"), _flag(query, "previous"),
                      _flag(query, "timestamps"), tail, since, since_time, limit)


def log_span(starts: list[int], restarts: int, previous: bool, *, pod: str, container: str) -> tuple[int, int | None]:
    """The byte range of the log file `kubectl logs` shows: the current run's output, or with
    `--previous` the run before it. `starts` is where each run's output begins (the supervisor's
    `logFile` answer); a container adopted from an earlier supervisor has fewer of them, and the
    range then covers all the earlier runs it cannot tell apart."""
    if not previous:
        return (starts[-1] if starts else 0), None
    if restarts == 0:
        raise StreamRequestError(f'previous terminated container "{container}" in pod "{pod}" not found')
    if len(starts) >= 2:
        return starts[-2], starts[-1]
    return 0, (starts[0] if starts else None)


async def log_response(request: web.Request, path: Path, *, follow: bool, tail_lines: int | None,
                       since_seconds: int | None, timestamps: bool, limit_bytes: int | None,
                       alive: Callable[[], bool | Awaitable[bool]], since_time: float | None = None,
                       start: int = 0, end: int | None = None) -> web.StreamResponse:
    """pods/log: the container's log file, as kubelet serves a container log.

    podnet's log lines carry no time (the process writes the file itself), so:
    - `sinceSeconds`/`sinceTime`: the file's last write is the newest line's time; a file last
      written before the cut-off gives nothing of what it holds (exact), one written after it
      gives all of it (no line can be told apart), and with `follow` what comes later is all new;
    - `timestamps`: lines already written carry the file's last write time (exact for the last
      line, an upper bound for the others), lines that come while following the time they were read;
    - `previous`: the caller passes the byte range of the previous run (`start`, `end`) when it
      knows one; podnet keeps one file per container across restarts.
    `limitBytes` counts what is sent, timestamps included, and may cut a line, as kubelet's does.
    With `follow` the response is written as the file grows and ends when the container has
    ended and everything is sent, or when the client goes away; written with back-pressure.
    """
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    size = path.stat().st_size if path.exists() else 0
    stop = size if end is None else min(end, size)
    offset = min(start, stop)
    cutoff = since_time if since_time is not None else (time.time() - since_seconds if since_seconds else None)
    written_at = path.stat().st_mtime if path.exists() else time.time()
    if cutoff is not None and written_at < cutoff:
        offset = stop
    elif tail_lines is not None:
        offset = _tail_offset(path, offset, stop, tail_lines)
    budget = limit_bytes if limit_bytes is not None else -1

    def client_gone() -> bool:
        return request.transport is None or request.transport.is_closing()

    def stamped(chunk: bytes, moment: float, state: dict) -> bytes:
        out, pending = [], state.get("pending", b"") + chunk
        lines = pending.split(b"\n")
        state["pending"] = lines.pop()
        for line in lines:
            out.append(_rfc3339(moment).encode() + b" " + line + b"\n")
        return b"".join(out)

    async def send(data: bytes) -> bool:
        nonlocal budget
        if budget == 0:
            return False
        if budget > 0:
            data = data[:budget]
            budget -= len(data)
        if data:
            await response.write(data)
        return budget != 0

    state: dict = {}
    try:
        old = _follow(path, offset, lambda: False, gone=client_gone, end=stop)
        async for chunk in old:
            if not await send(stamped(chunk, written_at, state) if timestamps else chunk):
                break
        else:
            if follow and budget != 0:
                async for chunk in _follow(path, stop, alive, gone=client_gone, end=end):
                    if not await send(stamped(chunk, time.time(), state) if timestamps else chunk):
                        break
            if timestamps and state.get("pending") and budget != 0:
                await send(_rfc3339(time.time() if follow else written_at).encode() + b" " + state["pending"])
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away
    return response


# ---- portforward ---------------------------------------------------------------------------------

Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def connect_in_netns(netns: str | None, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to localhost:port inside the named network namespace (the pod's, or a
    hostNetwork pod's node's; None: this process's own), IPv4 then IPv6 as kubelet's runtime
    tries. OSError says why not, in the words containerd uses."""
    errors = []
    for family, address, name in ((socket.AF_INET, "127.0.0.1", "IPv4: dial tcp4 127.0.0.1"),
                                  (socket.AF_INET6, "::1", "IPv6 dial tcp6 [::1]")):
        if netns is None:
            sock = socket.socket(family, socket.SOCK_STREAM)
        else:
            sock = await asyncio.to_thread(socket_in_netns, netns, family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
        except OSError as exc:
            sock.close()
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            errors.append(f"{name}:{port}: connect: {reason}")
            continue
        return await asyncio.open_connection(sock=sock, limit=CHUNK * 4)
    where = f' inside namespace "{netns}"' if netns else ""
    raise OSError(errno.ECONNREFUSED, f"failed to connect to localhost:{port}{where}, " + " ".join(errors))


def _ports(request: web.Request) -> list[int]:
    """kubelet's V4Options: `ports` (repeated or comma-separated), each 1-65535."""
    values = request.query.getall("ports", ())
    if not values:
        raise StreamRequestError('query parameter "ports" is required')
    ports = []
    for value in values:
        if not value:
            raise StreamRequestError('query parameter "ports" cannot be empty')
        for item in value.split(","):
            try:
                port = int(item)
            except ValueError:
                raise StreamRequestError(f'unable to parse "{value}" as a port') from None
            if not 0 < port < 65536:
                raise StreamRequestError(f'port "{value}" must be > 0' if port < 1 else
                                         f'unable to parse "{value}" as a port: value out of range')
            ports.append(port)
    return ports


def _tunnel_protocol(request: web.Request) -> str | None:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    for protocol in (p.strip() for p in header.split(",")):
        if protocol.startswith(SPDY_TUNNEL_PREFIX) and protocol[len(SPDY_TUNNEL_PREFIX):] == PORTFORWARD_PROTOCOL:
            return protocol
    return None


async def portforward_websocket(request: web.Request, connect: Connect, *, pod: str = "") -> web.StreamResponse:
    """Forward connections to the pod's ports: `connect(port)` opens one (connect_in_netns)."""
    tunnel = _tunnel_protocol(request)
    if tunnel is not None and request.headers.get("Upgrade", "").lower() == "websocket":
        ws = web.WebSocketResponse(protocols=(tunnel,), autoping=True, compress=False, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        await _SpdyPortForward(ws, connect, pod).run()
        return ws
    refusal = _upgrade_refusal(request, (*PORTFORWARD_CHANNEL_PROTOCOLS, ""))
    if refusal is not None:
        return refusal
    try:
        ports = _ports(request)
    except StreamRequestError as exc:
        return exc.response()
    ws, protocol = await _accept(request, (*PORTFORWARD_CHANNEL_PROTOCOLS, ""))
    await _channel_port_forward(Channels(ws, protocol), ports, connect, pod)
    return ws


def _forward_error(port: int, pod: str, exc: BaseException) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return f"error forwarding port {port} to pod {pod}, uid : {reason}"


async def _pump(reader: asyncio.StreamReader, send: Callable[[bytes], Awaitable[None]]) -> None:
    async for chunk in _read_chunks(reader):
        await send(chunk)


async def _channel_port_forward(channels: Channels, ports: list[int], connect: Connect, pod: str) -> None:
    writers: dict[int, asyncio.StreamWriter | None] = {}
    connected = {2 * index: asyncio.Event() for index in range(len(ports))}

    async def forward(index: int, port: int) -> None:
        data, errors = 2 * index, 2 * index + 1
        try:
            try:
                reader, writer = await connect(port)
            except Exception as exc:  # refused, or the caller's own error (the pod is gone): the client is told
                await channels.send(errors, _forward_error(port, pod, exc).encode())
                return
            writers[data] = writer
            connected[data].set()
            await _pump(reader, lambda chunk: channels.send(data, chunk))
        finally:
            connected[data].set()
            writer = writers.pop(data, None)
            if writer is not None:
                writer.close()

    async def receive() -> None:
        async for channel, data in channels.messages():
            if channel not in connected:
                continue  # an error channel, or none of ours: nothing to do with what it carries
            await connected[channel].wait()  # what the client sends before the connection is made waits
            writer = writers.get(channel)
            if writer is None:
                continue
            try:
                writer.write(data)
                await writer.drain()
            except ConnectionError:
                writers.pop(channel, None)

    for index, port in enumerate(ports):
        prefix = struct.pack("<H", port)
        await channels.send(2 * index, prefix)
        await channels.send(2 * index + 1, prefix)
    tasks = [asyncio.create_task(forward(index, port)) for index, port in enumerate(ports)]
    receiving = asyncio.create_task(receive())
    forwards = asyncio.gather(*tasks)
    try:
        await asyncio.wait({receiving, forwards}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        receiving.cancel()
        forwards.cancel()
        await asyncio.gather(receiving, forwards, return_exceptions=True)
        for writer in list(writers.values()):
            if writer is not None:
                writer.close()
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await channels.ws.close()


class _Forward:
    """One forwarded connection: its SPDY error and data streams and its TCP connection."""

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.error_stream = self.data_stream = 0
        self.port = 0
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.client_done = False


class _SpdyPortForward:
    """kubelet's SPDY port-forward server (cri/streaming/portforward/httpstream.go), over the
    WebSocket tunnel: the messages in either direction are one byte stream of SPDY frames."""

    def __init__(self, ws: web.WebSocketResponse, connect: Connect, pod: str):
        self.ws, self.connect, self.pod = ws, connect, pod
        self.reader, self.writer = spdy.FrameReader(), spdy.FrameWriter()
        self.send_lock = asyncio.Lock()
        self.forwards: dict[str, _Forward] = {}
        self.by_stream: dict[int, _Forward] = {}
        self.last_stream = 0
        self.open = True

    async def send(self, make: Callable[[], bytes]) -> None:
        """Frames are made under the lock: header compression must see them in the order sent."""
        async with self.send_lock:
            if not self.open:
                return
            try:
                await self.ws.send_bytes(make())
            except (ConnectionError, RuntimeError):
                self.open = False

    async def run(self) -> None:
        try:
            while self.open:
                message = await self.ws.receive()
                if message.type != WSMsgType.BINARY:
                    if message.type in (WSMsgType.TEXT, WSMsgType.PING, WSMsgType.PONG):
                        continue
                    break
                try:
                    frames = self.reader.feed(message.data)
                except spdy.SpdyError:
                    await self.send(lambda: self.writer.goaway(self.last_stream, spdy.GOAWAY_PROTOCOL_ERROR))
                    break
                for frame in frames:
                    if not await self.handle(frame):
                        self.open = False
                        break
        finally:
            self.open = False
            for forward in list(self.forwards.values()):
                self._drop(forward)
            with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                await self.ws.close()

    async def handle(self, frame: spdy.Frame) -> bool:
        if isinstance(frame, spdy.SynStream):
            await self.new_stream(frame)
        elif isinstance(frame, spdy.Data):
            await self.data(frame)
        elif isinstance(frame, spdy.RstStream):
            forward = self.by_stream.get(frame.stream_id)
            if forward is not None:
                self._drop(forward)
        elif isinstance(frame, spdy.Ping):
            if frame.ping_id % 2 == 1:  # the client's (odd): answered; ours would be even
                await self.send(lambda: self.writer.ping(frame.ping_id))
        elif isinstance(frame, spdy.GoAway):
            return False
        return True  # SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do (no flow control, as spdystream)

    async def new_stream(self, frame: spdy.SynStream) -> None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self.last_stream:
            await self.send(lambda: self.writer.rst_stream(frame.stream_id, spdy.PROTOCOL_ERROR))
            return
        self.last_stream = frame.stream_id
        headers = {k: v[0] for k, v in frame.headers.items() if v}
        kind, port_text = headers.get("streamtype", ""), headers.get("port", "")
        # requestID: clients older than kubectl 1.6 sent none; kubelet pairs by stream id then
        request_id = headers.get("requestid") or str(frame.stream_id if kind == "error" else frame.stream_id - 2)
        problem = None
        if kind not in ("error", "data"):
            problem = f'invalid stream type "{kind}"'
        elif not port_text.isdigit() or not 0 < int(port_text) < 65536:
            problem = f'invalid port "{port_text}"' if port_text else '"port" header is required'
        if problem is not None:
            await self.send(lambda: self.writer.rst_stream(frame.stream_id, spdy.REFUSED_STREAM))
            return
        await self.send(lambda: self.writer.syn_reply(frame.stream_id))
        forward = self.forwards.setdefault(request_id, _Forward(request_id))
        self.by_stream[frame.stream_id] = forward
        forward.port = int(port_text)
        if kind == "error":
            forward.error_stream = frame.stream_id
        else:
            forward.data_stream = frame.stream_id
            forward.client_done = frame.fin
        if forward.error_stream and forward.data_stream and forward.task is None:
            forward.task = asyncio.create_task(self.forward(forward))

    async def data(self, frame: spdy.Data) -> None:
        forward = self.by_stream.get(frame.stream_id)
        if forward is None or frame.stream_id != forward.data_stream:
            return  # the error stream carries nothing from the client; a dropped stream's late data
        if forward.task is not None:
            await forward.connected.wait()
        writer = forward.writer
        if writer is None:
            return
        try:
            if frame.data:
                writer.write(frame.data)
                await writer.drain()  # back-pressure: the session reads no more meanwhile
            if frame.fin:
                forward.client_done = True
                if writer.can_write_eof():
                    writer.write_eof()
        except (ConnectionError, OSError):
            forward.writer = None

    async def forward(self, forward: _Forward) -> None:
        data, error = forward.data_stream, forward.error_stream
        try:
            try:
                reader, writer = await self.connect(forward.port)
            except Exception as exc:  # refused, or the caller's own error (the pod is gone): the client is told
                message = _forward_error(forward.port, self.pod, exc).encode()
                await self.send(lambda: self.writer.data(error, message))
                return
            forward.writer = writer
            forward.connected.set()
            if forward.client_done and writer.can_write_eof():
                writer.write_eof()
            await _pump(reader, lambda chunk: self.send(lambda: self.writer.data(data, chunk)))
        finally:
            forward.connected.set()
            if forward.request_id in self.forwards:
                await self.send(lambda: self.writer.data(data, fin=True))
                await self.send(lambda: self.writer.data(error, fin=True))
            if forward.writer is not None:
                forward.writer.close()
                forward.writer = None

    def _drop(self, forward: _Forward) -> None:
        """A reset stream ends its connection (kubectl resets the data stream when it is done)."""
        self.forwards.pop(forward.request_id, None)
        for stream in (forward.error_stream, forward.data_stream):
            self.by_stream.pop(stream, None)
        if forward.task is not None and not forward.task.done():
            forward.task.cancel()
        if forward.writer is not None:
            forward.writer.close()
            forward.writer = None
        forward.connected.set()
