"""What a second `podnet up` says of a cluster that is already there (no root): by the state it
is in — running, still being built by an interrupted `up`'s supervisor, or left with nothing
running it — and always with the command that gets a working cluster back."""

from __future__ import annotations

import argparse
import os

from podnet.cli.lifecycle import _exists, asks_restart
from podnet.host import layout as layout_module
from podnet.host.layout import ClusterLayout
from podnet.linux.adopted import start_time
from podnet.linux.supervisor.record import RECORD
from podnet.linux.supervisor.watchdog import PIDFILE


def test_each_state_of_an_existing_cluster_is_named_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(layout_module, "STATE_ROOT", tmp_path)
    layout = ClusterLayout("demo")
    layout.state_dir.mkdir()
    said = _exists("demo", layout, running=True)
    assert "already exists and runs" in said and "`podnet down --name demo`" in said
    # an interrupted `up`: its watchdog (here: this process, with its start time) builds on
    (layout.state_dir / PIDFILE).write_text(f"{os.getpid()} {start_time(os.getpid())}\n")
    said = _exists("demo", layout, running=False)
    assert f"is being built (its watchdog is pid {os.getpid()}" in said and "`podnet down --name demo`" in said
    # nothing runs it (the watchdog's pid file outlived it): remove, then up again
    (layout.state_dir / PIDFILE).write_text(f"{os.getpid()} {start_time(os.getpid()) + 1}\n")
    said = _exists("demo", layout, running=False)
    assert "already exists but nothing runs it" in said
    assert "remove it with `podnet down --name demo`, then run `podnet up` again" in said


def test_up_by_name_alone_is_the_restart_and_a_running_cluster_needs_none(tmp_path, monkeypatch):
    monkeypatch.setattr(layout_module, "STATE_ROOT", tmp_path)
    layout = ClusterLayout("demo")
    layout.state_dir.mkdir()
    by_name = argparse.Namespace(filename=None, config=None)
    assert not asks_restart(by_name, layout)  # no record: a new cluster
    (layout.state_dir / RECORD).write_text("{}")
    assert asks_restart(by_name, layout)
    assert not asks_restart(argparse.Namespace(filename=["app.yaml"], config=None), layout)
    assert not asks_restart(argparse.Namespace(filename=None, config="cluster.yaml"), layout)
