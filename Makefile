# Two entry points: `make run` serves the cache, `make test` runs everything CI runs.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
VENV := .venv
DEBIAN_TEST_PACKAGES := docker-registry skopeo containerd podman nginx memcached swift swift-proxy swift-account swift-container swift-object debootstrap chromium rpm

.PHONY: run test lint typecheck unit contract integration e2e deps runtime-deps debian-deps clean

# `make run` needs the runtime dependencies only; the tests add the development group.
# --inexact keeps what the other target installed, so the two don't undo each other.
$(VENV)/.runtime-synced: pyproject.toml uv.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet 'uv>=0.5,<1'
	uv sync --locked --quiet --no-dev --inexact --compile-bytecode
	@touch $@

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet 'uv>=0.5,<1'
	uv sync --locked --quiet --compile-bytecode
	@touch $@ $(VENV)/.runtime-synced

# The project's own modules compiled ahead (only what changed): every command and server a test
# starts would otherwise compile them again where PYTHONDONTWRITEBYTECODE is set.
runtime-deps: $(VENV)/.runtime-synced
	@$(VENV)/bin/python -m compileall -q -j 0 src >/dev/null

deps: $(VENV)/.synced
	@$(VENV)/bin/python -m compileall -q -j 0 src >/dev/null

run: runtime-deps
	$(VENV)/bin/pullthrough serve

debian-deps:
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Besides style: the import-linter contracts in pyproject.toml (the layers of DESIGN.md §2, no
# package cycles).
lint: deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/lint-imports --no-cache

typecheck: deps
	$(VENV)/bin/mypy

test: deps debian-deps lint typecheck
	$(VENV)/bin/pytest

# One tier of the suite at a time (`make test` runs them all); times measured on a 2-core machine.
# unit (about 40 s): fakes at small seams, SQLite in a temp dir; no service, no server process.
unit: deps
	$(VENV)/bin/pytest -m "not integration and not postgres and not s3" tests/unit

# contract (about 40 s): the metadata tests over each backend, SQLite and PostgreSQL (the server on
# 127.0.0.1:5432, database `test`, each test in a throwaway schema), and the blob storage tests
# over the filesystem and S3 (a Swift s3api server the tests start in a temp directory).
contract: deps
	$(VENV)/bin/pytest -m contract tests/unit

# integration (about 18 min): a real upstream registry, pullthrough servers and real clients,
# Swift's s3api, nginx in front of replicas, and the container image built with podman.
integration: deps debian-deps
	$(VENV)/bin/pytest -m integration tests/integration

# e2e (about 1 min): the dashboard in Debian's chromium driven by Playwright (never a downloaded
# browser), against a real server filled by pulls from a real upstream registry; screenshots go
# to test-artifacts/screenshots/.
e2e: deps debian-deps
	$(VENV)/bin/pytest -m e2e tests/e2e

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Side-by-side benchmarks (bench/README.md): installs nginx, wrk, ab and docker-registry when
# missing, then writes bench/RESULTS.md. `make bench BENCH_ARGS=--quick` for a short run.
.PHONY: bench
bench: deps
	@missing=""; for p in docker-registry nginx wrk apache2-utils curl; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)
