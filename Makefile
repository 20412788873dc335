# podspawn developer entry points. See README.md.
CARGO ?= cargo

.PHONY: build test try clean-test packages helper

build:
	$(CARGO) build --release --locked

# The whole test suite, as root: scripts/test-deps.sh checks (and as root installs, with apt-get)
# what the tests need, then the packages the package tests install, the locally built test image,
# every cargo test group (unit tests; end to end through a private sshd on a loopback port, real
# accounts and Docker; the package tests, among them package_systemd.rs, which boots systemd as
# PID 1 in a container on a debootstrap rootfs cached in target/package-tests/) and the NixOS
# module tests. .ci/run runs the same target.
test:
	@bash scripts/test-deps.sh
	@echo "==> make test: building podspawn (release) and its .deb and .rpm for the package tests"
	@$(MAKE) --no-print-directory packages
	@echo "==> make test: test image podspawn-test:latest (built from this host's binaries; no registry)"
	@sh tests/support/build-test-image.sh podspawn-test:latest
	@echo "==> make test: cargo test: unit tests, then each tests/*.rs group (Running tests/NAME.rs)"
	$(CARGO) test --locked --no-fail-fast -- --test-threads=4
	@echo "==> make test: NixOS module and flake tests (nixos-module/tests/run.sh)"
	bash nixos-module/tests/run.sh
	@echo "==> make test: everything passed"

# The in-container helper, statically linked (target/x86_64-unknown-linux-gnu/helper/podspawn-helper);
# scripts/build-helper.sh checks that it is static and free of NSS.
helper:
	CARGO=$(CARGO) bash scripts/build-helper.sh

# The .deb and .rpm (one release build) in target/packages/; see scripts/build-packages.sh.
packages:
	CARGO=$(CARGO) bash scripts/build-packages.sh

# One-command try-out: builds podspawn, starts a private sshd on a loopback port wired to this build
# (the system sshd is untouched), registers a throwaway user with a fresh key and logs in.
try:
	@sh scripts/try.sh

# Removes what an interrupted test run may have left behind.
clean-test:
	-docker ps -aq --filter label=managed-by=podspawn --format '{{.ID}} {{.Names}}' | awk '$$2 ~ /^podspawn-pst/ {print $$1}' | xargs -r docker rm -f
	-docker network ls --format '{{.Name}}' | grep '^podspawn-pst' | xargs -r docker network rm
	-for u in $$(getent passwd | cut -d: -f1 | grep '^pst'); do userdel -r -f $$u; done
	-docker ps -aq --filter label=podspawn-test=1 | xargs -r docker rm -f
	-docker images --format '{{.Repository}}:{{.Tag}}' | grep '^podspawn-test-slowstart-' | xargs -r docker rmi -f
	-rm -f /etc/pam.d/sshd-pst*
	-rm -rf /var/tmp/podspawn-test-* /usr/local/libexec/podspawn-test-* /var/tmp/podspawn-try-pst* /usr/local/libexec/podspawn-try-pst*
