"""Running the rule loaders (`nft -f -`, `iptables-restore`) inside a node's namespace.

Every proxier takes a `Runner`, so unprivileged tests record the transactions instead of
loading them (kube-proxy's knftables.Fake plays the same part).
"""

from __future__ import annotations

import subprocess
from typing import Protocol


class LoadError(RuntimeError):
    """A rule loader refused a transaction: nothing of it was applied."""


class Runner(Protocol):
    def __call__(self, argv: list[str], stdin: str | None = None) -> str: ...


def run_command(argv: list[str], stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, text=True, capture_output=True)
    if result.returncode != 0:
        raise LoadError(f"{' '.join(argv)}: {result.stderr.strip() or f'exit status {result.returncode}'}")
    return result.stdout


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    """argv run inside the named network namespace (None: here)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


class RecordingRunner:
    """A fake loader: remembers every command and its input, answers "" (or a canned reply)."""

    def __init__(self, replies: dict[str, str] | None = None, fail: set[str] | None = None):
        self.calls: list[tuple[list[str], str | None]] = []
        self.replies = replies or {}
        self.fail = fail or set()

    def __call__(self, argv: list[str], stdin: str | None = None) -> str:
        self.calls.append((list(argv), stdin))
        tool = next((a for a in argv if a in self.fail), None)
        if tool:
            raise LoadError(f"{tool}: refused (fake)")
        return next((reply for tool, reply in self.replies.items() if tool in argv), "")

    def inputs(self, tool: str) -> list[str]:
        return [stdin or "" for argv, stdin in self.calls if tool in argv]
