#!/usr/bin/env bash
# make demo: the bundled example as a real cluster when root on Linux, else computed offline.
set -euo pipefail
cd "$(dirname "$0")/.."
PODNET="${PODNET:-.venv/bin/podnet}"
NAME=demo
if [ "$(id -u)" != 0 ] || [ "$(uname -s)" != Linux ]; then
  echo "# not root on Linux: a real cluster needs network namespaces, so here is the computed one"
  $PODNET get nodes -o wide -f examples/shop
  echo
  $PODNET get all -A -o wide -f examples/shop
  echo
  $PODNET trace external http://shop.example.com/api/orders -f examples/shop
  exit 0
fi
$PODNET down --name "$NAME" >/dev/null 2>&1 || true
trap '$PODNET down --name "$NAME"' EXIT
$PODNET up -f examples/shop --name "$NAME"
echo
$PODNET get nodes -o wide --name "$NAME"
echo
$PODNET get pods -A -o wide --name "$NAME"
echo
# real requests between pods on different nodes (the frontend may call the backend)
FRONTEND=$($PODNET get pods -n shop -l app.kubernetes.io/name=frontend -o name --name "$NAME" | head -1 | cut -d/ -f2)
BACKEND_IP=$($PODNET get pods -n shop -l app.kubernetes.io/name=backend -o json --name "$NAME" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["status"]["podIP"])')
echo "# shop/$FRONTEND → backend pod $BACKEND_IP:8080 (another node, through the overlay)"
$PODNET exec "shop/$FRONTEND" --name "$NAME" -- curl -s --max-time 3 "http://$BACKEND_IP:8080/hostname"; echo
echo "# shop/$FRONTEND → backend pod: /clientip shows the frontend's own pod IP (no NAT between pods)"
$PODNET exec "shop/$FRONTEND" --name "$NAME" -- curl -s --max-time 3 "http://$BACKEND_IP:8080/clientip"; echo
echo "# NetworkPolicy in the kernel: data/redis-0 → the same backend pod is dropped (shop/default-deny-ingress)"
$PODNET exec data/redis-0 --name "$NAME" -- curl -s --max-time 2 "http://$BACKEND_IP:8080/hostname" \
  || echo "(no answer within 2 s: dropped)"
$PODNET trace data/redis-0 "$BACKEND_IP:8080" --name "$NAME" | tail -1
echo "# node1's routes and the VXLAN forwarding entries"
$PODNET exec node/node1 --name "$NAME" -- ip route
$PODNET exec node/node1 --name "$NAME" -- bridge fdb show dev flannel.1
echo
echo "# Services: kube-proxy's rules on every node, the cluster DNS behind 10.96.0.10"
$PODNET get svc -A --name "$NAME"
echo "# shop/$FRONTEND → http://backend/hostname: the pod's search list, CoreDNS, then kube-proxy picks a backend"
echo "# (the first try: up returned once CoreDNS answered and every node had its Services)"
for _ in 1 2 3 4; do
  $PODNET exec "shop/$FRONTEND" --name "$NAME" -- curl -s --max-time 3 http://backend/hostname; echo
done
$PODNET dig backend --from "shop/$FRONTEND" --name "$NAME"
LB=$($PODNET get svc shop-public -n shop -o json --name "$NAME" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["loadBalancer"]["ingress"][0]["ip"])')
echo "# from outside: the LoadBalancer IP $LB (a node answers ARP for it), sessionAffinity ClientIP"
for _ in 1 2 3; do
  $PODNET exec external --name "$NAME" -- curl -s --max-time 3 "http://$LB/hostname"; echo
done
echo "# what podnet trace predicts for that request, from the live state"
$PODNET trace external "$LB" -p 80 --name "$NAME" | tail -8
INGRESS_IP=$($PODNET get ing shop -n shop -o json --name "$NAME" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["loadBalancer"]["ingress"][0]["ip"])')
echo "# the Ingress through the ingress-nginx controller's nginx ($INGRESS_IP): /api → backend, / → frontend"
$PODNET exec external --name "$NAME" -- curl -s --max-time 3 --resolve "shop.example.com:80:$INGRESS_IP" \
  http://shop.example.com/api; echo
$PODNET exec external --name "$NAME" -- curl -s --max-time 3 --resolve "shop.example.com:80:$INGRESS_IP" \
  http://shop.example.com/hostname; echo
$PODNET trace external http://shop.example.com/api --resolve "shop.example.com:80:$INGRESS_IP" \
  --name "$NAME" | tail -4
echo "# node1's kube-proxy table (nftables mode), first lines"
$PODNET exec node/node1 --name "$NAME" -- nft list table ip kube-proxy | head -25
echo
if command -v kubectl >/dev/null; then
  echo "# the same cluster through its Kubernetes API: up set kubectl's context podnet-$NAME"
  kubectl --context "podnet-$NAME" get pods -n shop -o wide
  kubectl --context "podnet-$NAME" -n shop exec "$FRONTEND" -- hostname
  kubectl --context "podnet-$NAME" auth can-i list secrets -n shop --as system:serviceaccount:shop:default || true
fi
echo
echo "# next: examples/shop/README.md lists what to try on a cluster of your own"
echo "#   (sudo $PODNET up -f examples/shop, then get -w, wait, trace, probe --compare …)"
