"""podnet delete (see podnet.cli.running)."""

from podnet.cli import running


def add_parser(sub) -> None:
    running.add_change(sub, "delete")


def run(args) -> int:
    return running.run_change(args, delete=True)
