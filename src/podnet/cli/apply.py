"""podnet apply (see podnet.cli.running)."""

from podnet.cli import running


def add_parser(sub) -> None:
    running.add_change(sub, "apply")


def run(args) -> int:
    return running.run_change(args, delete=False)
