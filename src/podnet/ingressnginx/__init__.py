"""ingress-nginx for real: the nginx.conf the controller renders from the simulator's route table.

`podnet.semantics.ingress.IngressController` decides everything (servers, locations and their
order, rewrites, redirects, upstreams); this package only spells those decisions in nginx's
configuration language (`nginxconf`), materialises the certificates nginx needs
(`certificates`) and asks nginx whether it accepts the result (`nginxconf.validate`). So
`podnet trace http://…` and the nginx serving a cluster cannot disagree, and the differential
test (tests/test_ingress_nginx.py) checks that they do not, request by request.
"""
