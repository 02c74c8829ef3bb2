"""podnet-cni: a CNI plugin (spec 1.0.0: ADD, DEL, CHECK, VERSION; spec 1.1.0: GC, STATUS) for a
`bridge` network with `host-local` IPAM, behaving like containernetworking/plugins' bridge +
host-local, usable as an executable and in-process.

Modules
    addr       IP addresses, interfaces and networks (what the plugin needs of ipaddress, whose
               import costs a run ~2.5 ms)
    record     frozen value records (what named tuples did, without collections' import)
    spec       the protocol: CNI_* environment, versions, error codes, result/error JSON
    config     NetConf: stdin config parsed once into frozen dataclasses, loud validation
    store      host-local's on-disk store (files, last_reserved_ip.N, flock) and a fake
    hostlocal  host-local's allocation on podnet.ipam.RangeAllocator, release, GC
    netlink    the kernel Protocol, a pyroute2 implementation and an in-memory fake
    rtnl       the same Protocol on a bare rtnetlink socket (the executable's, for start-up)
    nsenter    setns on the calling thread, sysctls inside a namespace
    bridge     ADD/DEL/CHECK/GC/STATUS with rollback: the in-process API
    jsonio     JSON through the stdlib's C half `_json` (the json package's import costs a run ~5 ms)
    main       the executable (`podnet-cni`, or `python -m podnet.cni`)
    install    writes the `podnet-cni` launcher (python -IS) into a CNI bin directory

In-process API (podnet.cni.bridge; same code path as the executable):

    conf = podnet.cni.config.parse(conflist_plugin_json)         # or config.from_dict(obj)
    result = bridge.add(conf, container_id, "/run/netns/<pod>", "eth0", node_netns="<node-netns>",
                        args={"K8S_POD_NAMESPACE": ns, "K8S_POD_NAME": pod})   # -> spec.Result
    bridge.check(conf, container_id, netns, "eth0", node_netns=..., prev_result=result)
    bridge.delete(conf, container_id, netns, "eth0", node_netns=...)
    bridge.gc(conf, valid_attachments=(("<containerID>", "eth0"), ...))
    bridge.status(conf, node_netns=...)

Failures raise spec.CniError(code, msg, details). The node side is the node's network
namespace (podnet's "host"), entered with setns on the calling thread only.

Install the executable with `python -m podnet.cni.install /opt/cni/bin`. It runs inside the
node's namespace, like any CNI plugin in its runtime's:

    ip netns exec <node-netns> podnet-cni      (env CNI_COMMAND=ADD CNI_CONTAINERID=... CNI_NETNS=...
                                                CNI_IFNAME=eth0; config on stdin)

It refuses the host's own namespace unless PODNET_CNI_ALLOW_HOST_NETNS=1;
PODNET_CNI_NETLINK=pyroute2 switches it from the raw rtnetlink backend to pyroute2.

Example /etc/cni/net.d/10-podnet.conflist (the node's podCIDR as the subnet; `type` names
the executable in CNI_PATH; "bridge" is accepted as well, so the reference's files run as is):

    {
      "cniVersion": "1.0.0",
      "name": "podnet",
      "plugins": [
        {
          "type": "podnet-cni",
          "bridge": "cni0",
          "isGateway": true,
          "ipMasq": false,
          "hairpinMode": true,
          "mtu": 1450,
          "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "/run/podnet/<cluster>/ipam/<node>"
          },
          "dns": {"nameservers": ["10.96.0.10"],
                  "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
                  "options": ["ndots:5"]}
        },
        {"type": "portmap", "capabilities": {"portMappings": true}}
      ]
    }

(mtu 1450 leaves room for the VXLAN overlay's 50 bytes; masquerading is podnet's nftables
ruleset's job, so ipMasq stays false, and true is refused with code 2.)
"""
