"""The API server's defaults for the Service fields podnet reads: one copy.

They live in api, the lowest layer that needs them: validation judges a spec as the API
server would after defaulting; the control plane writes them into every Service
(controlplane/services.apply_service_defaults, SetDefaults_Service); the simulator, the
proxy renderers and the output read a field that is still missing as its default.
"""

from __future__ import annotations

SERVICE_TYPE = "ClusterIP"
SESSION_AFFINITY = "None"
SESSION_AFFINITY_TIMEOUT = 10800  # seconds (3 hours): sessionAffinityConfig.clientIP.timeoutSeconds
TRAFFIC_POLICY = "Cluster"  # externalTrafficPolicy (Services with node ports) and internalTrafficPolicy
IP_FAMILY_POLICY = "SingleStack"
IP_FAMILIES = ("IPv4",)  # podnet's clusters are IPv4 only
ALLOCATE_LOAD_BALANCER_NODE_PORTS = True
