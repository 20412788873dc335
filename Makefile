# podspawn developer entry points. See README.md.
CARGO ?= cargo

.PHONY: build test try clean-test packages

build:
	$(CARGO) build --release --locked

# The test suite: unit tests plus end-to-end tests through a private sshd, real accounts and Docker.
# Needs root, a running Docker engine and OpenSSH (see .ci/run for the packages).
# The package tests (tests/package_deb.rs, package_rpm.rs, package_systemd.rs) need the packages:
# built first. package_systemd.rs boots systemd as PID 1 in a container (DESIGN.md, "Testing against
# real systemd"); the package tests share one debootstrap rootfs, cached in target/package-tests/.
test: packages
	$(CARGO) test --locked -- --test-threads=4

# The .deb and .rpm (one release build) in target/packages/; see scripts/build-packages.sh.
packages:
	CARGO=$(CARGO) bash scripts/build-packages.sh

# One-command try-out: builds podspawn, starts a private sshd on a loopback port wired to this build
# (the system sshd is untouched), registers a throwaway user with a fresh key and logs in.
try:
	sh scripts/try.sh

# Removes what an interrupted test run may have left behind.
clean-test:
	-docker ps -aq --filter label=managed-by=podspawn --format '{{.ID}} {{.Names}}' | awk '$$2 ~ /^podspawn-pst/ {print $$1}' | xargs -r docker rm -f
	-docker network ls --format '{{.Name}}' | grep '^podspawn-pst' | xargs -r docker network rm
	-for u in $$(getent passwd | cut -d: -f1 | grep '^pst'); do userdel -r -f $$u; done
	-docker ps -aq --filter label=podspawn-test=1 | xargs -r docker rm -f
	-rm -rf /var/tmp/podspawn-test-* /usr/local/libexec/podspawn-test-*
