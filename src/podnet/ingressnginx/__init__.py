"""ingress-nginx for real: the nginx.conf the controller renders from the simulator's route table.

`podnet.semantics.ingress.IngressController` decides everything (servers, locations and their
order, rewrites, redirects, upstreams); this package only spells those decisions in nginx's
configuration language (`nginxconf`), materialises the certificates nginx needs
(`certificates`) and asks nginx whether it accepts the result (`nginxconf.validate`). So
`podnet trace http://…` and the nginx serving a cluster cannot disagree, and the differential
test (tests/test_ingress_nginx.py) checks that they do not, request by request.

A controller's sync, in the pod or anywhere:

    controller = IngressController(cluster)
    default = certificates.default_certificate(run_dir / "certs")          # once
    secrets = certificates.secret_certificates(controller, run_dir / "certs")  # .problems → events
    options = nginxconf.NginxOptions(runtime_dir=run_dir, default_certificate=default,
                                     certificates=secrets.files, resolver="10.96.0.10")
    upstreams = nginxconf.endpoint_upstreams(controller)
    text = nginxconf.render(controller, upstreams, options)
    error = nginxconf.validate(text)   # None, or nginx -t's complaint: keep the running config
    # else write run_dir/nginx.conf and SIGHUP the master started with
    # nginxconf.command(options, run_dir / "nginx.conf", "-g", "daemon off;"), then
    balancer.post(options.configuration_listen, balancer.document(upstreams))

Endpoints are not in nginx.conf: as ingress-nginx, nginx balances in Lua (Debian's
lua-nginx-module) over the document the controller posts, so a pod coming or going is one POST,
not a reload (`balancer`).
"""
