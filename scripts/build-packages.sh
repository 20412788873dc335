#!/usr/bin/env bash
# Builds podspawn's .deb and .rpm from ONE release build into target/packages/ and prints their paths.
#
#   scripts/build-packages.sh            (or: make packages)
#
# Tools (Debian/Ubuntu packages): dpkg-dev (dpkg-deb, dpkg-shlibdeps), rpm (rpmbuild), gzip.
# The .deb is a dpkg-deb staging tree (no debhelper, no cargo-deb): control from debian/control.in,
# maintainer scripts debian/{postinst,prerm,postrm}, conffiles debian/conffiles. The .rpm is built by
# rpmbuild from rpm/podspawn.spec over the same staged tree. Both use:
#   - target/release/podspawn and target/release/libpam_podspawn.so (one cargo build --release
#     --locked -p podspawn -p pam_podspawn; the PAM session module needs libpam0g-dev / pam-devel),
#     the module installed as pam_podspawn.so in the distribution's PAM module directory:
#     /usr/lib/<multiarch>/security (Debian, enabled with the pam-auth-update profile
#     debian/pam-config -> /usr/share/pam-configs/podspawn) and %{_libdir}/security (RPM,
#     added to /etc/pam.d/sshd by %post),
#   - podspawn-helper, static (scripts/build-helper.sh), installed as
#     /usr/lib/podspawn/podspawn-helper (helper.path's default) and mounted into every container,
#   - `podspawn gen-assets` for man pages and shell completions,
#   - systemd/ for the units, sysusers.d, tmpfiles.d and the sshd drop-in,
#   - the default configuration: `podspawn config default` (also what `podspawn add-user`
#     writes), kept as a copy in debian/config.yaml.
# Environment: CARGO (default cargo), CARGO_TARGET_DIR, PACKAGE_REVISION (default 1: the deb's
# Debian revision and the rpm's Release), SKIP_CARGO_BUILD=1 (use the existing release binary).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
TARGET=${CARGO_TARGET_DIR:-$SRC/target}
case "$TARGET" in /*) ;; *) TARGET=$SRC/$TARGET ;; esac
OUT=$TARGET/packages
WORK=$TARGET/package-build
CARGO=${CARGO:-cargo}
REV=${PACKAGE_REVISION:-1}

need() {
	command -v "$1" >/dev/null 2>&1 || {
		echo "build-packages: $1 not found: apt-get install $2" >&2
		exit 1
	}
}
need dpkg-deb dpkg
need dpkg-shlibdeps dpkg-dev
need rpmbuild rpm
need gzip gzip
need nm binutils
need dpkg-architecture dpkg-dev

VERSION=$(awk -F'"' '/^\[/{sec=$0} sec=="[package]" && /^version *=/{print $2; exit}' Cargo.toml)
[ -n "$VERSION" ] || { echo "build-packages: no version in Cargo.toml" >&2; exit 1; }
DEB_VERSION=$VERSION-$REV
ARCH=$(dpkg --print-architecture)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

# 1. The one release build: podspawn and the PAM session module.
if [ "${SKIP_CARGO_BUILD:-}" != 1 ]; then
	if [ ! -e /usr/include/security/pam_modules.h ]; then
		echo "build-packages: warning: no /usr/include/security/pam_modules.h: the PAM module" \
			"(pam_podspawn) may need it: apt-get install libpam0g-dev (dnf install pam-devel)" >&2
	fi
	"$CARGO" build --release --locked -p podspawn -p pam_podspawn
fi
BIN=$TARGET/release/podspawn
[ -x "$BIN" ] || { echo "build-packages: $BIN missing" >&2; exit 1; }
PAM_MODULE=$TARGET/release/libpam_podspawn.so
[ -f "$PAM_MODULE" ] || { echo "build-packages: $PAM_MODULE missing" >&2; exit 1; }
for sym in pam_sm_open_session pam_sm_close_session; do
	nm -D --defined-only "$PAM_MODULE" | grep -qw "$sym" || {
		echo "build-packages: $PAM_MODULE does not export $sym" >&2
		exit 1
	}
done
# The static in-container helper (build-helper.sh checks it is static and NSS-free). With
# SKIP_CARGO_BUILD=1 an existing one is used as is.
HELPER=$TARGET/x86_64-unknown-linux-gnu/helper/podspawn-helper
if [ "${SKIP_CARGO_BUILD:-}" != 1 ] || [ ! -x "$HELPER" ]; then
	HELPER=$(CARGO="$CARGO" CARGO_TARGET_DIR="$TARGET" bash scripts/build-helper.sh | tail -n 1)
fi
[ -x "$HELPER" ] || { echo "build-packages: $HELPER missing" >&2; exit 1; }

rm -rf "$WORK" "$OUT"
mkdir -p "$WORK" "$OUT"

# 2. Generated files: man pages, completions, the default configuration.
"$BIN" gen-assets --out "$WORK/assets"
"$BIN" config default >"$WORK/config.yaml"
"$BIN" config validate "$WORK/config.yaml" >/dev/null
if ! cmp -s "$WORK/config.yaml" debian/config.yaml; then
	cp "$WORK/config.yaml" debian/config.yaml
	echo "build-packages: updated debian/config.yaml from podspawn config default"
fi

# 3. The tree both packages install (owner root everywhere).
T=$WORK/tree
install -D -m 0755 "$BIN" "$T/usr/bin/podspawn"
install -D -m 0755 "$HELPER" "$T/usr/lib/podspawn/podspawn-helper"
for u in systemd/*.service systemd/*.socket systemd/*.timer; do
	install -D -m 0644 "$u" "$T/usr/lib/systemd/system/$(basename "$u")"
done
install -D -m 0644 systemd/sysusers.d/podspawn.conf "$T/usr/lib/sysusers.d/podspawn.conf"
install -D -m 0644 systemd/tmpfiles.d/podspawn.conf "$T/usr/lib/tmpfiles.d/podspawn.conf"
install -d -m 0755 "$T/usr/share/man/man1"
for m in "$WORK"/assets/man/*.1; do
	gzip -9n -c "$m" >"$T/usr/share/man/man1/$(basename "$m").gz"
	chmod 0644 "$T/usr/share/man/man1/$(basename "$m").gz"
done
install -D -m 0644 "$WORK/assets/completions/podspawn" "$T/usr/share/bash-completion/completions/podspawn"
install -D -m 0644 "$WORK/assets/completions/_podspawn" "$T/usr/share/zsh/vendor-completions/_podspawn"
install -D -m 0644 "$WORK/assets/completions/podspawn.fish" "$T/usr/share/fish/vendor_completions.d/podspawn.fish"
# Group podspawn is set by postinst / %attr: it does not exist when the archive is built.
install -D -m 0640 "$WORK/config.yaml" "$T/etc/podspawn/config.yaml"
install -D -m 0644 systemd/sshd/10-podspawn.conf "$T/etc/ssh/sshd_config.d/10-podspawn.conf"
chmod 0755 "$T/etc/podspawn" "$T/etc/ssh" "$T/etc/ssh/sshd_config.d"

# 4. The .deb.
D=$WORK/deb
cp -a "$T" "$D"
# The PAM session module in Debian's multiarch PAM directory, and its pam-auth-update profile
# (postinst runs pam-auth-update --package; prerm removes it before the module goes away).
install -D -m 0644 "$PAM_MODULE" "$D/usr/lib/$MULTIARCH/security/pam_podspawn.so"
install -D -m 0644 debian/pam-config "$D/usr/share/pam-configs/podspawn"
DOC=$D/usr/share/doc/podspawn
install -D -m 0644 debian/copyright "$DOC/copyright"
install -m 0644 debian/README.Debian "$DOC/README.Debian"
# The changelog's newest entry must be this version; a version bump without a changelog entry
# gets a generated one (and a warning) rather than a broken build.
CHANGELOG_VERSION=$(sed -n '1s/^podspawn (\([^)]*\)).*/\1/p' debian/changelog)
{
	if [ "$CHANGELOG_VERSION" != "$DEB_VERSION" ]; then
		echo "build-packages: warning: debian/changelog starts with $CHANGELOG_VERSION, not $DEB_VERSION: add an entry" >&2
		printf 'podspawn (%s) unstable; urgency=medium\n\n  * Version %s (see the git history).\n\n -- %s  %s\n\n' \
			"$DEB_VERSION" "$VERSION" "$(sed -n 's/^ -- \(.*>\)  .*/\1/p' debian/changelog | head -1)" "$(date -R)"
	fi
	cat debian/changelog
} | gzip -9n >"$DOC/changelog.Debian.gz"
install -D -m 0644 debian/podspawn.lintian-overrides "$D/usr/share/lintian/overrides/podspawn"
install -d -m 0755 "$D/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "debian/$s" "$D/DEBIAN/$s"
done
install -m 0644 debian/conffiles "$D/DEBIAN/conffiles"
# ${shlibs:Depends} the way dpkg-shlibdeps computes it (it wants a debian/control to exist).
mkdir -p "$WORK/shlibs/debian"
printf 'Source: podspawn\n\nPackage: podspawn\nArchitecture: any\n' >"$WORK/shlibs/debian/control"
SHLIBS=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O "$D/usr/bin/podspawn" \
	"$D/usr/lib/$MULTIARCH/security/pam_podspawn.so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || { echo "build-packages: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# A PAM module may leave libpam's symbols to the loading process (no DT_NEEDED on libpam.so.0);
# it still needs libpam0g, and pam-auth-update (libpam-runtime, in control.in) to be enabled.
case ", $SHLIBS," in
*", libpam0g "* | *", libpam0g,"*) ;;
*) SHLIBS="$SHLIBS, libpam0g" ;;
esac
SIZE=$(du -sk --apparent-size --exclude=DEBIAN "$D" | cut -f1)
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_SIZE@/$SIZE/" \
	-e "s/@SHLIBS@/$SHLIBS/" debian/control.in >"$D/DEBIAN/control"
chmod 0644 "$D/DEBIAN/control"
(cd "$D" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort |
	grep -vxF -f <(sed 's|^/||' "$SRC/debian/conffiles") | xargs -d '\n' md5sum) >"$WORK/md5sums"
install -m 0644 "$WORK/md5sums" "$D/DEBIAN/md5sums"
DEB=$OUT/podspawn_${DEB_VERSION}_$ARCH.deb
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(stat -c %Y debian/changelog)} \
	dpkg-deb --root-owner-group -Zxz --build "$D" "$DEB" >/dev/null

# 5. The .rpm.
R=$WORK/rpm
mkdir -p "$R"
# --nodeps: the spec's BuildRequires (pam-devel) name Fedora packages; here the build's tools and
# headers come from dpkg's database (libpam0g-dev), which rpmbuild cannot see.
rpmbuild -bb --quiet --nodeps \
	--define "_topdir $R" \
	--define "_rpmdir $OUT" \
	--define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
	--define "pkg_version $VERSION" \
	--define "pkg_release $REV" \
	--define "stage $T" \
	--define "pam_module $PAM_MODULE" \
	--define "srcdir $SRC" \
	rpm/podspawn.spec >"$WORK/rpmbuild.log" 2>&1 || {
	cat "$WORK/rpmbuild.log" >&2
	exit 1
}
RPM=$(ls "$OUT"/podspawn-"$VERSION"-"$REV".*.rpm)

echo "$DEB"
echo "$RPM"
