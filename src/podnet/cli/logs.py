"""podnet logs (see podnet.cli.running)."""

from podnet.cli import running


def add_parser(sub) -> None:
    running.add_logs(sub)


def run(args) -> int:
    return running.run_logs(args)
