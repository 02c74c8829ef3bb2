"""What every process of a running cluster shares on the host, below the servers that use it:
where a cluster lives (layout: namespace names, the state directory), network namespaces
(netns: create, enter, a socket inside one) and the supervisor's control socket (control).
The supervisor (podnet.linux), kube-proxy (podnet.proxy), the DNS server (podnet.dns) and the
command line all use it; it imports none of them."""
