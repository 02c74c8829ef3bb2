"""agnhost's command line: cobra subcommands and pflag flags, with their messages and exit codes.

Upstream's main is `cli.Run(rootCmd)` (k8s.io/component-base/cli): flags parse the pflag way
(--flag=value, --flag value, --bool, --bool=false; a value may start with '-'; '_' in a flag name
reads as '-'), errors print as "Error: …" on stderr with exit status 1 (flag errors print the
usage first), -h/--help prints help on stdout. Go's own flag-package form, -flag / -flag=value,
is accepted too: pflag would reject it, but manifests written for older images use it.

This module is pure (no I/O at import), so the simulator can read a manifest's args with the
very parser the container runs (see podnet.agnhost.ports).
"""

from __future__ import annotations

from podnet.agnhost.golang import GoError, format_duration, parse_duration, stderr, stdout

TYPE_CHECKING = False  # typing itself costs ~12 ms to import
if TYPE_CHECKING:
    from typing import Any

VERSION = "2.53"

# No dataclasses or typing at run time: they cost ~25 ms of start-up, and every pod pays it.


class Flag:
    __slots__ = ("name", "kind", "default", "usage", "shorthand", "hidden")

    def __init__(self, name: str, kind: str, default: Any, usage: str, shorthand: str = "",
                 hidden: bool = False) -> None:
        self.name = name
        self.kind = kind  # int, string, bool, duration, level
        self.default = default
        self.usage = usage
        self.shorthand = shorthand
        self.hidden = hidden


class Command:
    __slots__ = ("name", "module", "short", "long", "use", "args", "flags")

    def __init__(self, name: str, module: str, short: str, long: str = "", use: str = "",
                 args: str = "max0", flags: tuple[Flag, ...] = ()) -> None:
        self.name = name
        self.module = module
        self.short = short
        self.long = long
        self.use = use
        self.args = args  # max0: cobra.MaximumNArgs(0); exact1: cobra.ExactArgs(1)
        self.flags = flags


_N = 1_000_000_000

GLOBAL_FLAGS = (
    Flag("log-flush-frequency", "duration", 5 * _N, "Maximum number of seconds between log flushes"),
    Flag("v", "level", 0, "number for the log level verbosity", shorthand="v"),
    Flag("vmodule", "string", "", "comma-separated list of pattern=N settings for file-filtered logging "
                                  "(only works for text log format)"),
    # klog's flags, which older agnhost versions accepted (AddGoFlagSet); kept so old manifests run
    *(Flag(name, "bool", False, "", hidden=True) for name in (
        "add-dir-header", "alsologtostderr", "logtostderr", "one-output", "skip-headers", "skip-log-headers")),
    *(Flag(name, "string", "", "", hidden=True) for name in (
        "log-backtrace-at", "log-dir", "log-file", "log-file-max-size", "stderrthreshold", "logging-format")),
)

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("netexec", "netexec", "Creates HTTP(S), UDP, and (optionally) SCTP servers with various endpoints",
            "Starts a HTTP(S) server on given port with the endpoints /, /clientip, /header, /dial, /echo,\n"
            "/exit, /healthz, /readyz, /hostname, /hostName, /redirect, /shell, /shutdown and /upload,\n"
            "and a UDP server (and, if --sctp-port is given, an SCTP server) answering \"hostname\",\n"
            "\"echo <msg>\" and \"clientip\".",
            flags=(
                Flag("delay-shutdown", "int", 0, "Number of seconds to delay shutdown when receiving SIGTERM."),
                Flag("http-override", "string", "",
                     "Override the HTTP handler to always respond as if it were a GET with this path & params"),
                Flag("http-port", "int", 8080, "HTTP Listen Port"),
                Flag("sctp-port", "int", -1, "SCTP Listen Port"),
                Flag("tls-cert-file", "string", "",
                     "File containing an x509 certificate for HTTPS. (CA cert, if any, concatenated after server cert)"),
                Flag("tls-private-key-file", "string", "",
                     "File containing an x509 private key matching --tls-cert-file"),
                Flag("udp-listen-addresses", "string", "",
                     "A comma separated list of ip addresses the udp servers listen from"),
                Flag("udp-port", "int", 8081, "UDP Listen Port"),
            )),
    Command("serve-hostname", "serve_hostname", "Serves the hostname",
            "Serves the hostname through HTTP / TCP / UDP on the given port.",
            flags=(
                Flag("close", "bool", False, "Close connection per each HTTP request."),
                Flag("http", "bool", True, "Serve HTTP."),
                Flag("port", "int", 9376, "Port number."),
                Flag("tcp", "bool", False, "Serve raw over TCP."),
                Flag("udp", "bool", False, "Serve raw over UDP."),
            )),
    Command("connect", "connect", "Attempts a TCP, UDP or SCTP connection and returns useful errors",
            "Tries to open a TCP, UDP or SCTP connection to the given host and port. On error it prints an "
            "error message prefixed with a specific fixed string that test cases can check for:\n\n"
            "* UNKNOWN - Generic/unknown (non-network) error (eg, bad arguments)\n"
            "* TIMEOUT - The connection attempt timed out\n"
            "* DNS - An error in DNS resolution\n"
            "* REFUSED - Connection refused\n"
            "* OTHER - Other networking error (eg, \"no route to host\")",
            use="connect [host:port]", args="exact1",
            flags=(
                Flag("protocol", "string", "tcp",
                     "The protocol to use to perform the connection, can be tcp, udp or sctp"),
                Flag("sctp-data", "string", "hostname", "The SCTP payload send to the server"),
                Flag("timeout", "duration", 0, "Maximum time before returning an error"),
                Flag("udp-data", "string", "hostname", "The UDP payload send to the server"),
            )),
    Command("porter", "porter", "Serves requested data on ports specified in ENV variables",
            "Serves requested data on ports specified in environment variables of the form "
            "SERVE_{PORT,TCP_PORT,UDP_PORT,TLS_PORT,SCTP_PORT}_[NNNN].",
            flags=(Flag("json-response", "bool", False, "Responds to requests with a json response that "
                                                        "includes the default value with the http.Request Method"),)),
    Command("pause", "pause", "Pauses the execution",
            "Pauses the execution. Useful for keeping the containers running, so other commands can be executed."),
    Command("liveness", "liveness", "Starts a server that is alive for 10 seconds",
            "A simple server that is alive for 10 seconds, then reports unhealthy for the rest of its "
            "(hopefully) short existence. Failures can be emulated by passing parameters to specific URLs."),
    Command("test-webserver", "test_webserver", "Starts a simple HTTP fileserver",
            "Starts a simple HTTP fileserver on the given --port, which serves any file specified in the URL "
            "path, if it exists.",
            flags=(Flag("port", "int", 80, "Port number."),)),
    Command("dns-suffix", "dns", "Prints the host's DNS suffix list", "Prints the DNS suffixes of this host."),
    Command("dns-server-list", "dns", "Prints the host's DNS Server list", "Prints the DNS Server list of this host."),
    Command("etc-hosts", "dns", "Prints the host's /etc/hosts file", "Prints the \"hosts\" file of this host.\""),
)}

# Upstream subcommands podnet does not implement: named so the error says so rather than "unknown".
NOT_IMPLEMENTED = (
    "audit-proxy", "crd-conversion-webhook", "entrypoint-tester", "fake-gitserver", "fake-registry-server",
    "grpc-health-checking", "guestbook", "inclusterclient", "logs-generator", "mounttest", "net", "nettest",
    "no-snat-test", "no-snat-test-proxy", "port-forward-tester", "resource-consumer-controller", "stress",
    "tcp-reset", "test-service-account-issuer-discovery", "webhook", "mtlsclient", "mtlsserver",
    "h2c-server", "http-echo", "podcertificatesigner", "fake-metrics-server", "external-metrics",
    "registry",
)


class FlagError(Exception):
    """A flag parse error: cobra prints the usage, then "Error: …"."""


class UsageError(Exception):
    """Any other command-line error: "Error: …" only."""


# ---------------------------------------------------------------------------------------------
# values, as strconv and time parse them

def parse_go_int(s: str, bits: int = 64, base: int = 0) -> int:
    """strconv.ParseInt(s, base, bits); raises ValueError with strconv's message."""
    def syntax() -> ValueError:
        return ValueError(f'strconv.ParseInt: parsing "{s}": invalid syntax')

    t = s
    neg = False
    if t[:1] in ("+", "-"):
        neg, t = t[0] == "-", t[1:]
    b = base
    if base == 0:
        b = 10
        if t[:2] in ("0x", "0X"):
            b, t = 16, t[2:]
        elif t[:2] in ("0b", "0B"):
            b, t = 2, t[2:]
        elif t[:2] in ("0o", "0O"):
            b, t = 8, t[2:]
        elif len(t) > 1 and t[0] == "0":
            b, t = 8, t[1:]
        elif "_" in t:
            raise syntax()
    elif "_" in t:
        raise syntax()
    if not t or t[0] == "_" or t[-1] == "_" or not t.replace("_", "").isascii():
        raise syntax()
    try:
        value = int(t, b)
    except ValueError:
        raise syntax() from None
    value = -value if neg else value
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(f'strconv.ParseInt: parsing "{s}": value out of range')
    return value


def parse_go_bool(s: str) -> bool:
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{s}": invalid syntax')


def _convert(flag: Flag, value: str) -> Any:
    if flag.kind == "int":
        return parse_go_int(value)
    if flag.kind == "level":
        return parse_go_int(value, 32, 10)
    if flag.kind == "bool":
        return parse_go_bool(value)
    if flag.kind == "duration":
        try:
            return parse_duration(value)
        except GoError as err:
            raise ValueError(str(err)) from None
    return value


def _flag_display(flag: Flag) -> str:
    return f"-{flag.shorthand}, --{flag.name}" if flag.shorthand else f"--{flag.name}"


def parse_flags(flags: tuple[Flag, ...], args: list[str]) -> tuple[dict[str, Any], list[str], bool]:
    """pflag's FlagSet.Parse with interspersed positionals. Returns (values, positionals, help)."""
    by_name = {f.name: f for f in flags}
    by_short = {f.shorthand: f for f in flags if f.shorthand}
    values: dict[str, Any] = {f.name: f.default for f in flags}
    positionals: list[str] = []
    want_help = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positionals += args[i:]
            break
        if len(arg) < 2 or arg[0] != "-":
            positionals.append(arg)
            continue
        if arg[1] == "-":
            body = arg[2:]
            if not body or body[0] in "-=":
                raise FlagError(f"bad flag syntax: {arg}")
        else:
            body = arg[1:]
            head = body.partition("=")[0].replace("_", "-")
            if not (len(head) > 1 and (head in by_name or head == "help")):
                # shorthand flags: -h, -v 2, -v=2, -v2
                c = body[0]
                if c == "h":
                    want_help = True
                    continue
                flag = by_short.get(c)
                if flag is None:
                    raise FlagError(f"unknown shorthand flag: '{c}' in {arg}")
                rest = body[1:]
                if rest.startswith("="):
                    value = rest[1:]
                elif rest:
                    value = rest
                elif flag.kind == "bool":
                    value = "true"
                elif i < len(args):
                    value, i = args[i], i + 1
                else:
                    raise FlagError(f"flag needs an argument: '{c}' in -{c}")
                values[flag.name] = _set(flag, value)
                continue
        name, eq, value = body.partition("=")
        name = name.replace("_", "-")  # cliflag.WordSepNormalizeFunc
        if name == "help":
            want_help = True
            continue
        flag = by_name.get(name)
        if flag is None:
            raise FlagError(f"unknown flag: --{name}")
        if not eq:
            if flag.kind == "bool":
                value = "true"
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        values[flag.name] = _set(flag, value)
    return values, positionals, want_help


def _set(flag: Flag, value: str) -> Any:
    try:
        return _convert(flag, value)
    except ValueError as err:
        raise FlagError(f'invalid argument "{value}" for "{_flag_display(flag)}" flag: {err}') from None


# ---------------------------------------------------------------------------------------------
# help and usage, as cobra prints them

def _flag_usages(flags: tuple[Flag, ...], help_for: str | None) -> str:
    items = [f for f in flags if not f.hidden]
    rows = []
    entries = sorted(items + ([Flag("help", "bool", False, f"help for {help_for}", shorthand="h")]
                              if help_for else []), key=lambda f: f.name)
    for f in entries:
        left = (f"  -{f.shorthand}, --{f.name}" if f.shorthand else f"      --{f.name}")
        kind = {"int": "int", "string": "string", "duration": "duration", "level": "Level"}.get(f.kind, "")
        if f.name == "vmodule":
            kind = "pattern"
        if kind:
            left += " " + kind
        usage = f.usage
        if f.kind == "string" and f.default:
            usage += f' (default "{f.default}")'
        elif f.kind == "bool" and f.default:
            usage += " (default true)"
        elif f.kind in ("int",) and f.default:
            usage += f" (default {f.default})"
        elif f.kind == "duration" and f.default:
            usage += f" (default {format_duration(f.default)})"
        rows.append((left, usage))
    width = max((len(left) for left, _ in rows), default=0)
    return "".join(f"{left.ljust(width)}   {usage}\n" for left, usage in rows)


def usage(cmd: Command | None) -> str:
    if cmd is None:
        names = sorted(COMMANDS)
        width = max(len(n) for n in names + ["help"])
        lines = ["Usage:", "  app [command]", "", "Available Commands:"]
        for name in sorted(names + ["help"]):
            short = COMMANDS[name].short if name in COMMANDS else "Help about any command"
            lines.append(f"  {name.ljust(width)} {short}")
        lines += ["", "Flags:"]
        text = "\n".join(lines) + "\n"
        text += _flag_usages(GLOBAL_FLAGS + (Flag("version", "bool", False, "version for app"),), "app")
        return text + '\nUse "app [command] --help" for more information about a command.\n'
    text = f"Usage:\n  app {cmd.use or cmd.name} [flags]\n\n"
    text += "Flags:\n" + _flag_usages(cmd.flags, cmd.name)
    text += "\nGlobal Flags:\n" + _flag_usages(GLOBAL_FLAGS, None)
    return text


def help_text(cmd: Command | None) -> str:
    if cmd is None:
        return usage(None)
    return (cmd.long or cmd.short) + "\n\n" + usage(cmd)


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca.lower() != cb.lower())))
        prev = cur
    return prev[-1]


def _suggestions(word: str) -> str:
    names = sorted(set(COMMANDS) | set(NOT_IMPLEMENTED))
    found = [n for n in names if _levenshtein(word, n) <= 2 or n.startswith(word.lower())]
    if not found:
        return ""
    return "\n\nDid you mean this?\n" + "".join(f"\t{n}\n" for n in found)


# ---------------------------------------------------------------------------------------------
# resolving argv to (command, flags, positionals)

class Invocation:
    def __init__(self, command: Command | None, values: dict[str, Any], args: list[str], help: bool = False,
                 version: bool = False) -> None:
        self.command = command  # None: the root command
        self.values = values
        self.args = args
        self.help = help
        self.version = version


def _find_command(argv: list[str]) -> tuple[str | None, list[str]]:
    """cobra's Find/stripFlags: the first word that is not a flag or a flag's value."""
    by_name = {f.name: f for f in GLOBAL_FLAGS}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if arg.startswith("--") and "=" not in arg:
            flag = by_name.get(arg[2:].replace("_", "-"))
            if arg[2:] not in ("help", "version") and (flag is None or flag.kind != "bool"):
                i += 2
                continue
        elif arg.startswith("-") and len(arg) == 2 and arg[1] == "v":
            i += 2
            continue
        elif arg != "" and not arg.startswith("-"):
            return arg, argv[:i] + argv[i + 1:]
        i += 1
    return None, argv


def resolve(argv: list[str]) -> Invocation:
    """Raises UsageError (unknown command, wrong argument count) or FlagError."""
    name, rest = _find_command(argv)
    if name == "help":
        target, _ = _find_command(rest)
        cmd = COMMANDS.get(target or "")
        return Invocation(cmd, {}, [], help=True)
    if name is None:
        values, positionals, want_help = parse_flags(
            GLOBAL_FLAGS + (Flag("version", "bool", False, "version for app"),), rest)
        return Invocation(None, values, positionals, help=want_help, version=bool(values.get("version")))
    cmd = COMMANDS.get(name)
    if cmd is None:
        if name in NOT_IMPLEMENTED:
            raise UsageError(f"agnhost subcommand {name!r} is not implemented by podnet's built-in agnhost "
                             f"(implemented: {', '.join(sorted(COMMANDS))})")
        raise UsageError(f'unknown command "{name}" for "app"{_suggestions(name)}')
    values, positionals, want_help = parse_flags(cmd.flags + GLOBAL_FLAGS, rest)
    if want_help:
        return Invocation(cmd, values, positionals, help=True)
    if cmd.args == "max0" and positionals:
        raise UsageError(f"accepts at most 0 arg(s), received {len(positionals)}")
    if cmd.args == "exact1" and len(positionals) != 1:
        raise UsageError(f"accepts 1 arg(s), received {len(positionals)}")
    return Invocation(cmd, values, positionals)


def main(argv: list[str]) -> int:
    try:
        inv = resolve(argv)
    except FlagError as err:
        name, _ = _find_command(argv)
        stderr(usage(COMMANDS.get(name or "")) + "\n")
        stderr(f"Error: {err}\n")
        return 1
    except UsageError as err:
        stderr(f"Error: {err}\n")
        return 1
    if inv.version:
        stdout(f"app version {VERSION}\n")
        return 0
    if inv.help or inv.command is None:
        stdout(help_text(inv.command))
        return 0
    module = __import__(f"podnet.agnhost.{inv.command.module}", fromlist=["run"])
    return int(module.run(inv.command.name, inv.values, inv.args) or 0)
