"""The per-cluster supervisor: owns a running cluster from `podnet up` to `podnet down`.

    python -m podnet.linux.supervisor --name NAME     (started by `podnet up`)

Nothing is imported here, so the CLI can read and write a cluster's state (`state`) without
loading the data plane.
"""
