#!/usr/bin/env bash
# Packages a built nagare binary for this machine's architecture, with Debian's own tools:
#   OUT/nagare_<version>_<debarch>.deb       dpkg-deb --build
#   OUT/nagare-<version>-1.<rpmarch>.rpm     rpmbuild -bb (Debian's rpm package)
#
#   bash deploy/packages/build.sh BINARY OUT
#
# The unit, the config and the logrotate rule are the ones install.sh writes: it runs here into a scratch OS
# tree (under fakeroot when not root), so the packages and the curl installer cannot drift apart. Only the
# binary's path in the unit changes, to /usr/bin/nagare. Versions come from package.json.
# NAGARE_PACKAGE_COMPRESSION=fast (for tests) compresses with gzip -1 instead of xz: seconds instead of a minute.
set -euo pipefail
# Modes in the packages are set where they matter; everything else is 0755/0644 whatever the caller's umask.
umask 022
[ $# -eq 2 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }
binary=$(realpath "$1")
out=$(realpath -m "$2")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

die() { printf 'packages: %s\n' "$*" >&2; exit 1; }

for tool in dpkg-deb rpmbuild objdump; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: run scripts/setup.sh (packages dpkg, rpm, binutils)"
done
[ "$(id -u)" -eq 0 ] || command -v fakeroot >/dev/null 2>&1 || die "fakeroot is missing (install.sh runs under it when not root): run scripts/setup.sh"
[ -x "$binary" ] || die "$binary is not an executable file; build it first (scripts/build.sh)"

version=$(sed -n 's/^  "version": "\([^"]*\)",$/\1/p' "$root/package.json")
license=$(sed -n 's/^  "license": "\([^"]*\)",$/\1/p' "$root/package.json")
[ -n "$version" ] || die "no version in $root/package.json"
# Without a license field the packages say UNLICENSED (npm's word for none granted), and claim nothing more.
if [ -n "$license" ]; then
  license_text="nagare's package.json names the license $license."
else
  license=UNLICENSED
  license_text="nagare's package.json names no license."
fi
maintainer=${NAGARE_PACKAGE_MAINTAINER:-nagare developers <nagare-dev@users.noreply.github.com>}
deb_arch=$(dpkg --print-architecture)
rpm_arch=$(uname -m)
# The newest glibc symbol version the binary links against: its one run-time dependency.
glibc=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
[ -n "$glibc" ] || die "objdump -T finds no glibc symbol versions in $binary"
# Every file gets the time of the last commit, so the same commit gives the same packages.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}

if [ "${NAGARE_PACKAGE_COMPRESSION:-}" = fast ]; then
  deb_compress=(-Zgzip -z1)
  rpm_payload=w1.gzdio
else
  deb_compress=(-Zxz -z6)
  rpm_payload=w6T.xzdio
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# install.sh into a scratch tree that has the groups of a Debian host running systemd (systemd-journal, adm), so
# the unit reads the journal with SupplementaryGroups=systemd-journal as it does after a curl install.
os="$work/os"
mkdir -p "$os/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$os/etc/passwd"
printf 'root:x:0:\nadm:x:4:\nsystemd-journal:x:101:\n' > "$os/etc/group"
printf 'root:*:19000:0:99999:7:::\n' > "$os/etc/shadow"
printf 'root:*::\nadm:*::\nsystemd-journal:!::\n' > "$os/etc/gshadow"
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(fakeroot) # install.sh insists on root; in the scratch tree it needs none
"${as_root[@]}" sh "$root/install.sh" --root "$os" --binary "$binary" --no-start > "$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; die "install.sh could not install into a scratch tree"; }

unit="$work/nagare.service"
sed 's|/usr/local/bin/nagare|/usr/bin/nagare|g' "$os/etc/systemd/system/nagare.service" > "$unit"
grep -q '^ExecStart=/usr/bin/nagare run ' "$unit" || die "install.sh's unit has no ExecStart=/usr/local/bin/nagare run line to point at /usr/bin/nagare"
sed 's|^# Written by nagare.s install.sh:|# Installed by the nagare package:|' "$os/etc/logrotate.d/nagare" > "$work/logrotate"

# The tree both packages hold (the rpm moves the unit to /usr/lib/systemd/system).
stage="$work/stage"
install -D -m 0755 "$binary" "$stage/usr/bin/nagare"
install -D -m 0644 "$unit" "$stage/lib/systemd/system/nagare.service"
install -D -m 0640 "$os/etc/nagare/nagare.yaml" "$stage/etc/nagare/nagare.yaml"
chmod 0750 "$stage/etc/nagare"
install -D -m 0644 "$work/logrotate" "$stage/etc/logrotate.d/nagare"
fill() { sed -e "s|@VERSION@|$version|g" -e "s|@LICENSE@|$license|g" -e "s|@LICENSE_TEXT@|$license_text|g" \
  -e "s|@MAINTAINER@|$maintainer|g" -e "s|@GLIBC@|$glibc|g" -e "s|@STAGE@|$stage|g" \
  -e "s|@YEAR@|$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)|g" "$@"; }

mkdir -p "$out"

deb="$work/deb"
cp -a "$stage" "$deb"
doc="$deb/usr/share/doc/nagare"
mkdir -p "$doc"
fill "$here/copyright" > "$doc/copyright"
printf 'nagare (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' "$version" "$version" "$maintainer" \
  "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n > "$doc/changelog.gz"
install -D -m 0644 "$here/deb/lintian-overrides" "$deb/usr/share/lintian/overrides/nagare"
chmod 0644 "$doc/copyright" "$doc/changelog.gz"
mkdir -p "$deb/DEBIAN"
(cd "$deb" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$deb/DEBIAN/md5sums"
printf '/etc/logrotate.d/nagare\n/etc/nagare/nagare.yaml\n' > "$deb/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
fill -e "s|@ARCH@|$deb_arch|g" -e "s|@INSTALLED_SIZE@|$size|g" "$here/deb/control.in" > "$deb/DEBIAN/control"
install -m 0755 "$here/deb/postinst" "$here/deb/prerm" "$here/deb/postrm" "$deb/DEBIAN/"
chmod 0644 "$deb/DEBIAN/md5sums" "$deb/DEBIAN/conffiles" "$deb/DEBIAN/control"
find "$deb" -type d -exec chmod g-s {} +
find "$deb" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb_file="$out/nagare_${version}_${deb_arch}.deb"
dpkg-deb --root-owner-group "${deb_compress[@]}" --build "$deb" "$deb_file" >/dev/null

rpm_top="$work/rpm"
mkdir -p "$rpm_top"
fill "$here/nagare.spec.in" > "$work/nagare.spec"
rpmbuild -bb --quiet --target "$rpm_arch" \
  --define "_topdir $rpm_top" \
  --define "_rpmdir $out" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "_binary_payload $rpm_payload" \
  --define "use_source_date_epoch_as_buildtime 1" \
  --define "clamp_mtime_to_source_date_epoch 1" \
  "$work/nagare.spec" > "$work/rpmbuild.log" 2>&1 || { cat "$work/rpmbuild.log" >&2; die "rpmbuild failed"; }
rpm_file="$out/nagare-${version}-1.${rpm_arch}.rpm"
[ -f "$rpm_file" ] || { cat "$work/rpmbuild.log" >&2; die "rpmbuild wrote no $rpm_file"; }

echo "$deb_file, $rpm_file"
