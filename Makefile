# The two commands a newcomer needs: `make demo` and `make test`.
# Everything else here is a step of those two.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help venv constraints binaries node-deps ssh-deps browser-deps lint typecheck unit test demo e2e-kind devcluster clean

help:
	@echo "make demo   - start a local control plane, run the operator and a sample workflow"
	@echo "make test   - install everything, then lint, type-check and run the whole test suite"

# Every Python package at the version pinned in hack/constraints.txt, the versions the
# suite last passed with: a fresh clone tests the same code whatever PyPI released since.
$(VENV)/.installed: pyproject.toml hack/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip -c hack/constraints.txt
	$(BIN)/pip install --quiet -e '.[dev]' -c hack/constraints.txt \
		--build-constraint hack/constraints.txt
	touch $@

venv: $(VENV)/.installed

# Re-pin hack/constraints.txt to the newest releases (then `make test`, and commit it).
constraints:
	PYTHON=$(PYTHON) bash hack/pin-python.sh

# etcd, kube-apiserver, kubectl and helm at their pinned versions, and on Linux the node's
# kubelet, kube-controller-manager, kube-scheduler and kube-proxy (built once, then cached).
binaries: venv
	$(BIN)/python -m cerebelum.devcluster ensure

# Debian packages of the local node (containerd, runc, CNI plugins, iptables, buildah,
# debootstrap). Without root they cannot be installed and the node e2e tests are skipped.
node-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then bash hack/node-deps.sh; \
	else echo "node-deps: not root on Debian; tests/e2e (the real node) will be skipped"; fi

# OpenSSH's sshd and ssh-keygen, for `make demo` (the droplet's "server" is a local sshd).
ssh-deps:
	@if command -v sshd >/dev/null || [ -x /usr/sbin/sshd ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		bash hack/debian-packages.sh openssh-server openssh-client; \
	else echo "make demo needs OpenSSH's sshd (Debian: apt-get install openssh-server)"; exit 1; fi

# Debian's Chromium and its driver, for the UI's browser tests (skipped without them, except
# in CI, where CEREBELUM_REQUIRE_NODE makes a skip a failure).
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		bash hack/debian-packages.sh chromium chromium-driver fonts-dejavu-core; \
	else echo "browser-deps: not root on Debian; the UI's browser tests will be skipped"; fi

lint: venv
	$(BIN)/ruff check operator tests bench hack examples
	$(BIN)/ruff format --check operator tests bench hack examples
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

typecheck: venv
	$(BIN)/mypy
	$(BIN)/mypy bench
	$(BIN)/mypy tests

unit: venv
	$(BIN)/pytest tests/unit

test: binaries node-deps browser-deps lint typecheck
	$(BIN)/pytest

demo: binaries ssh-deps
	$(BIN)/python -m cerebelum.devcluster run -- $(BIN)/python hack/demo.py

# For users with Docker and kind: the image in a kind cluster, then the same suite against it.
e2e-kind: binaries
	bash hack/e2e-kind.sh

# A control plane to poke at by hand: prints the KUBECONFIG to export; Ctrl-C stops it.
devcluster: binaries
	$(BIN)/python -m cerebelum.devcluster run --kubeconfig-out .devcluster/kubeconfig

clean:
	rm -rf $(VENV) .devcluster .pytest_cache .mypy_cache .ruff_cache
