#!/usr/bin/env bash
# Builds target/deb/btt_<version>-1_<arch>.deb from this repository: release
# binaries (LTO, stripped), the mount helper, man pages and completions
# generated from the clap definitions, the systemd seller unit and examples.
# Needs dpkg-dev (dpkg-deb, dpkg-shlibdeps). Usage: packaging/build-deb.sh
# BTT_DEB_PROFILE=dev packages the (stripped) dev build instead: the test
# suite does that to reuse what it has just compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out=$root/target/deb
stage=$out/stage
rm -rf "$stage" && mkdir -p "$stage/DEBIAN"

profile=${BTT_DEB_PROFILE:-release}
cargo build --profile "$profile" --workspace --locked --bins
sub=$profile; [ "$profile" = dev ] && sub=debug
rel=${CARGO_TARGET_DIR:-$root/target}/$sub

install -D -m 0755 "$rel/btt" "$stage/usr/bin/btt"
install -D -m 0755 "$rel/btt-mount" "$stage/usr/bin/btt-mount"
install -D -m 0755 "$rel/mount-btt" "$stage/usr/sbin/mount.btt"
strip --strip-unneeded "$stage/usr/bin/btt" "$stage/usr/bin/btt-mount" "$stage/usr/sbin/mount.btt"

docs=$out/docs
rm -rf "$docs"
"$rel/btt" generate-docs "$docs"
for m in "$docs"/man/*.1; do
  install -D -m 0644 "$m" "$stage/usr/share/man/man1/$(basename "$m")"
done
install -D -m 0644 packaging/mount.btt.8 "$stage/usr/share/man/man8/mount.btt.8"
gzip -9n "$stage"/usr/share/man/man*/*
c=$docs/completions
install -D -m 0644 "$c/btt.bash" "$stage/usr/share/bash-completion/completions/btt"
install -D -m 0644 "$c/btt-mount.bash" "$stage/usr/share/bash-completion/completions/btt-mount"
install -D -m 0644 "$c/_btt" "$stage/usr/share/zsh/vendor-completions/_btt"
install -D -m 0644 "$c/_btt-mount" "$stage/usr/share/zsh/vendor-completions/_btt-mount"
install -D -m 0644 "$c/btt.fish" "$stage/usr/share/fish/vendor_completions.d/btt.fish"
install -D -m 0644 "$c/btt-mount.fish" "$stage/usr/share/fish/vendor_completions.d/btt-mount.fish"

install -D -m 0644 packaging/systemd/btt-seed@.service "$stage/lib/systemd/system/btt-seed@.service"
doc=$stage/usr/share/doc/btt
install -D -m 0644 packaging/copyright "$doc/copyright"
install -D -m 0644 packaging/changelog "$doc/changelog.Debian"
gzip -9n "$doc/changelog.Debian"
for e in packaging/examples/*; do
  install -D -m 0644 "$e" "$doc/examples/$(basename "$e")"
done

# Library dependencies as dpkg-shlibdeps computes them.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/debian"
printf 'Source: btt\n\nPackage: btt\nArchitecture: any\n' > "$tmp/debian/control"
shlibs=$(cd "$tmp" && dpkg-shlibdeps -O "$stage/usr/bin/btt" "$stage/usr/bin/btt-mount" "$stage/usr/sbin/mount.btt" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: btt
Version: $version-1
Architecture: $arch
Maintainer: btt developers <btt@example.org>
Installed-Size: $size
Depends: $shlibs, fuse3
Section: utils
Priority: optional
Homepage: https://github.com/btt-project/btt
Description: mount torrents as read-only filesystems, pay sellers per piece
 btt-mount shows a torrent's files at once; a read waits until the pieces
 under it are downloaded and verified, so media players stream and seek
 unchanged. btt seeds and sells pieces over one-way Bitcoin payment channels,
 and manages the wallet and channels. mount.btt lets mount(8) and /etc/fstab
 mount torrents (type btt).
CONTROL
(cd "$stage" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
deb=$out/btt_${version}-1_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
