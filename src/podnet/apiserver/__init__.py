"""The cluster's Kubernetes API server: what kubectl, client-go and the Python client talk to.

One process per running cluster (started and kept running by the supervisor), HTTPS on
127.0.0.1:<port> on the host, as kind maps it, and on the control-plane node's 6443 behind the
`default/kubernetes` Service. It serves the supervisor's computed cluster from a watch cache and
sends writes through the supervisor's admission, as `podnet apply` does.
"""
