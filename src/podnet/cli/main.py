"""Entry point: argument parsing and the one place errors become messages and exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import yaml

from podnet import __version__
from podnet.config import load_config
from podnet.errors import PodnetError

TOP_EXAMPLES = """examples:
  podnet get all -A -o wide -f examples/shop      # the computed cluster of the bundled example
  podnet describe svc backend -n shop -f examples/shop
  podnet config view                              # the effective cluster config

Run `podnet COMMAND --help` for a command's options and examples.
"""

# What needs root: building or entering a real cluster, and reading one that runs (every command
# that takes -f computes offline without it). Told in the help of a user who is not root.
NEEDS_ROOT = ("up", "down", "exec", "logs", "apply", "delete", "wait", "probe", "node")
RUNNING_CLUSTER = ("get", "describe", "trace", "dig", "matrix")
ROOT_NOTE = (f"You are not root: {', '.join(NEEDS_ROOT)} need root (they build, change or enter a real "
             f"cluster), and so do {', '.join(RUNNING_CLUSTER)} and `get clusters` without -f (they read the "
             "running cluster). With -f FILE|DIR they compute the cluster offline, as everything else does.\n")

CONFIG_EXAMPLES = """examples:
  podnet config view                               # the defaults
  podnet config view --config examples/cluster-hostgw.yaml -o json
"""


# Each command is a module of podnet.cli with add_parser(subparsers) and run(args), imported
# only when that command runs (or for the top-level help): a command's module imports what it
# needs at module level, and `podnet get` must not pay for the data plane's imports (pyroute2,
# the supervisor, the DNS server: about 150 ms).
COMMANDS = {name: name for name in ("up", "down", "get", "describe", "wait", "logs", "apply", "delete", "trace",
                                     "dig", "matrix", "probe", "node", "check", "explain", "completion", "version",
                                     "kubeconfig", "mesh")}
COMMANDS["exec"] = "exec_"  # the module name avoids shadowing the builtin exec


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` (a command's name) just that command's part."""
    parser = argparse.ArgumentParser(
        prog="podnet",
        description="Kubernetes cluster networking, for real: reads ordinary Kubernetes YAML and "
                    "computes (and, with `up`, builds) the network the cluster would have.",
        epilog=TOP_EXAMPLES + ("\n" + ROOT_NOTE if os.geteuid() != 0 else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"podnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name in [only] if only in COMMANDS else COMMANDS:
        importlib.import_module(f"podnet.cli.{COMMANDS[name]}").add_parser(sub)

    config = sub.add_parser("config", help="cluster config", epilog=CONFIG_EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    view = config_sub.add_parser("view", help="print the effective cluster config (defaults filled in)",
                                 epilog=CONFIG_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    view.add_argument("--config", metavar="CLUSTER.yaml")
    view.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    return parser


def _config_view(args) -> int:
    document = load_config(args.config).to_dict()
    if args.output == "json":
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))
    return 0


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Flags may come before or after positionals, as with kubectl (`get po -n x NAME`)."""
    args, _ = parser.parse_known_args(argv)
    sub = _subparser(parser, args.command)
    if sub is None or args.command in ("config", "mesh"):  # (commands of their own: argparse parses them)
        return parser.parse_args(argv)
    rest = argv[argv.index(args.command) + 1:]
    command: list[str] | None = None
    if "--" in rest:  # as kubectl: everything after -- is the command (podnet exec POD -- CMD…)
        cut = rest.index("--")
        rest, command = rest[:cut], rest[cut + 1:]
    sub_args = sub.parse_intermixed_args(rest)
    if command is not None:
        sub_args.cmd = command
    sub_args.command = args.command
    return sub_args


def _subparser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser | None:
    for action in parser._subparsers._group_actions if parser._subparsers else []:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:  # noqa: SLF001
            return action.choices[name]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:2] == ["get", "clusters"]:  # kind's, not a kind of object: before `get` parses types
            return importlib.import_module("podnet.cli.clusters").run_get_clusters(argv[2:])
        parser = build_parser(only=argv[0] if argv else None)
        args = _parse(parser, argv)
        if args.command in COMMANDS:
            args.whole_parser = build_parser  # `completion` describes every command
            return importlib.import_module(f"podnet.cli.{COMMANDS[args.command]}").run(args)
        if args.command == "config":
            if args.config_command != "view":
                parser.parse_args(["config", "--help"])
            return _config_view(args)
        parser.print_help()
        return 2
    except PodnetError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still one line for the user, the traceback on request
        if os.environ.get("PODNET_DEBUG"):
            raise
        print(f"podnet: internal error: {type(exc).__name__}: {exc} "
              "(this is a bug in podnet; run with PODNET_DEBUG=1 for the traceback)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    raise SystemExit(main())
