# kvbackup: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= .demo

.PHONY: help venv shells control-plane helm promtool kstatus argocd-health emulators lint image image-check audit lock unit integration test bench demo demo-down clean

help:
	@echo "make demo       local control plane + operator + example KeyBackup/KeyRestore"
	@echo "make demo-down  stop everything 'make demo' started"
	@echo "make test       install what the tests need; run ruff, mypy, the image check, the audit, unit and integration tests"
	@echo "make image      build the operator image (docker, or buildah on a Debian base) and its SBOM"
	@echo "make bench      the operator against a sequential SDK loop (BENCH_KEYS, BENCH_LATENCY_MS, BENCH_RATE)"

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "installing the operator and its test tools into $(VENV) (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# kube-apiserver, kubectl and etcd, built from the Go module proxy and cached in
# ~/.cache/kvbackup (the first build takes about ten minutes, and says what it builds on
# stderr; stdout, the binaries' directory, is not needed here).
control-plane:
	bash hack/build-control-plane.sh >/dev/null

# helm, built from the Go module proxy into the same cache.
helm:
	bash hack/build-helm.sh >/dev/null

# promtool (the chart test checks the alert rules with it), built the same way.
promtool:
	bash hack/build-promtool.sh >/dev/null

# What Flux (kstatus) and Argo CD (its Lua health runner) make of KeyBackups and
# KeyRestores: two small Go programs of hack/, built the same way, that the GitOps tests
# read the objects through.
kstatus:
	bash hack/build-kstatus.sh >/dev/null

argocd-health:
	bash hack/build-argocd-health.sh >/dev/null

# bash and zsh, which the command line's completion test runs its scripts in (Debian's
# packages, installed where missing).
shells:
	bash hack/test-shells.sh

# Lowkey Vault's jar, Azurite and mitmproxy (the TLS-inspecting proxy of the proxy tests),
# found or installed before pytest starts, so that its workers never build them at once.
emulators: venv
	bash hack/lowkey-vault.sh >/dev/null
	$(BIN)/python -m tests.harness.azurite >/dev/null
	$(BIN)/python -m tests.harness.mitm >/dev/null

# The tests run in PYTEST_WORKERS processes, each with a control plane, emulators and
# operator of its own; a test module stays in one process, as its fixtures are shared.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile

# The operator image, kvbackup-operator:<version>: with docker where its engine answers,
# otherwise with buildah on minimal Debian bases (both installed from Debian's packages);
# also writes the SBOM of its Python packages to dist/. Prints the reference and the size.
image:
	bash hack/image.sh

# Lints the Dockerfile (hadolint) and replays its install steps without a container engine.
image-check:
	bash hack/image.sh check

# pip-audit on the locks: fails on a known vulnerability that a release fixes.
audit:
	bash hack/image.sh audit

# Regenerates requirements.lock and requirements-build.lock (pip-compile, with hashes)
# after a change of [project].dependencies or [build-system].requires.
lock:
	bash hack/image.sh lock

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/python -m pytest tests/unit -q

integration: venv shells control-plane helm promtool kstatus argocd-health emulators
	$(PYTEST) tests/integration

test: venv shells control-plane helm promtool kstatus argocd-health emulators lint image-check audit
	$(PYTEST) tests

# Figures, not pass/fail: prints a table and writes bench-results.json.
bench: venv control-plane
	$(BIN)/python -m bench.run

demo: venv control-plane
	VENV=$(VENV) bash hack/demo.sh up $(DEMO_DIR)

demo-down:
	VENV=$(VENV) bash hack/demo.sh down $(DEMO_DIR)

clean: demo-down
	rm -rf $(VENV) $(DEMO_DIR)
