"""A cluster's credentials: its CA and certificates, ServiceAccount tokens, kubeconfigs.

Below every other layer (it needs only `cryptography`), so the supervisor can give pods their
tokens and the API server can check them with the same code.
"""
