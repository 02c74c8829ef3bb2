# podnet — every target is idempotent and works on a fresh Debian 12 machine as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the data plane and its tests use (later issues build on them; redis-server runs
# the redis image, zsh checks `podnet completion zsh`, libnginx-mod-http-lua is the ingress controller's balancer).
APT_PACKAGES := iproute2 nftables iptables conntrack nginx dnsutils dnsmasq-base containernetworking-plugins iperf3 procps iputils-ping iputils-arping curl util-linux dnsperf knot-dnsutils openssl redis-server redis-tools zsh libnginx-mod-http-lua
# kubectl (v1.32 from apt on these machines) drives the cluster's API server in the tests; where
# no apt source offers it the kubectl tests say so and skip.
OPTIONAL_APT_PACKAGES := kubectl
# Only for `make bench` (not `make test`): wrk for bench/ingress_http.py.
BENCH_APT_PACKAGES := wrk
STAMP := $(VENV)/.installed
# IBM's network-config-analyzer, a second NetworkPolicy implementation the tests compare
# against; its own venv because it pins its own dependencies.
NCA_VENV := .venv-nca

.PHONY: install demo test bench clean

install: $(STAMP) $(NCA_VENV)/bin/nca

$(NCA_VENV)/bin/nca:
	@test -x $(NCA_VENV)/bin/python || $(PYTHON) -m venv $(NCA_VENV)
	$(NCA_VENV)/bin/python -m pip install -q --disable-pip-version-check network-config-analyzer==2.1.0

$(STAMP): pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "warning: not root, skipping Debian packages: $$missing" >&2; fi; \
	fi
	@for p in $(OPTIONAL_APT_PACKAGES); do \
	  command -v $$p >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$p >/dev/null 2>&1; } \
	    || echo "warning: $$p is not installed and no apt source offers it: the tests that need it skip" >&2; \
	done
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# As root on Linux: the bundled example as a real 3-node cluster, real requests, then down.
# Otherwise: the same cluster computed offline, and why.
demo: install
	bash scripts/demo.sh

# Test modules side by side (pytest-xdist), each module on one worker, so a module's cluster
# serves all of its tests: the suite mostly waits on real clusters, not on the CPU.
test: install
	$(BIN)/python -m pytest -q -n 4 --dist loadfile

bench: install
	@missing=$$(for p in $(BENCH_APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "warning: not root, skipping Debian packages: $$missing" >&2; fi; \
	fi
	$(BIN)/python bench/foundation.py
	$(BIN)/python bench/trace.py
	$(BIN)/python bench/cluster_dns.py
	$(BIN)/python bench/matrix.py
	$(BIN)/python bench/ingress_render.py
	$(BIN)/python bench/mesh_ca.py
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/python bench/apiserver.py; \
	else echo "warning: not root, skipping bench/apiserver.py (podnet get finds clusters under /run/podnet)" >&2; fi
	@if [ "$$(id -u)" = 0 ]; then $(BIN)/python bench/mesh_latency.py && $(BIN)/python bench/mesh_latency.py --protocol tcp \
	  && $(BIN)/python bench/mesh_push.py --as-podnet; \
	else echo "warning: not root, skipping bench/mesh_latency.py and bench/mesh_push.py (network namespaces)" >&2; fi

clean:
	rm -rf $(VENV) $(NCA_VENV) build src/*.egg-info .pytest_cache .hypothesis
