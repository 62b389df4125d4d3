#!/usr/bin/env bash
# Packs the PyInstaller folder (dist/lama-desktop) for Linux, with apt tools only:
#   dist/lama-desktop-VERSION-linux-ARCH.tar.gz  unpack anywhere, ./install.sh registers it
#   dist/lama-desktop_VERSION_ARCH.deb           /opt/lama-desktop, menu entry, agent user unit
# Usage: installers/linux/package.sh dist/lama-desktop
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bundle="$(cd "${1:?usage: $0 BUNDLE_FOLDER}" && pwd)"
dist="$(dirname "$bundle")"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/lama_desktop/__init__.py")"
arch="$(uname -m)"
deb_arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
svg="$repo/lama_desktop/resources/lama-desktop.svg"
# The system libraries Qt's X11 plugin links to and the bundle does not carry (checked with ldd
# on _internal/PySide6/Qt/plugins/platforms/libqxcb.so; installers/README.md lists them).
depends="libc6, libstdc++6, libgl1, libegl1, libfontconfig1, libfreetype6,
 libglib2.0-0t64 | libglib2.0-0, libdbus-1-3, libx11-6, libx11-xcb1, libxcb1, libxcb-cursor0,
 libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render0, libxcb-render-util0,
 libxcb-shape0, libxcb-shm0, libxcb-sync1, libxcb-util1, libxcb-xfixes0, libxcb-xkb1,
 libxkbcommon0, libxkbcommon-x11-0"
depends="$(echo "$depends" | tr -s ' \n' ' ')"
stage="$(mktemp -d "$dist/.package.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

# -- the archive: the bundle plus install.sh, the menu entry, the icon and the agent unit --
name="lama-desktop-$version-linux-$arch"
cp -al "$bundle" "$stage/$name" 2>/dev/null || cp -a "$bundle" "$stage/$name"
install -m 0755 "$here/bundle-install.sh" "$stage/$name/install.sh"
install -m 0644 "$here/lama-desktop.desktop" "$here/lama-agent.service" "$svg" "$stage/$name/"
tar -C "$stage" -czf "$dist/$name.tar.gz" "$name"
echo "wrote $dist/$name.tar.gz"

# -- the .deb: /opt/lama-desktop, /usr/bin links, menu entry, icon, agent user unit --
root="$stage/deb"
mkdir -p "$root/DEBIAN" "$root/opt" "$root/usr/bin" "$root/usr/share/applications" \
  "$root/usr/share/icons/hicolor/scalable/apps" "$root/usr/lib/systemd/user"
cp -al "$bundle" "$root/opt/lama-desktop" 2>/dev/null || cp -a "$bundle" "$root/opt/lama-desktop"
ln -s /opt/lama-desktop/lama-desktop "$root/usr/bin/lama-desktop"
ln -s /opt/lama-desktop/lama-agent "$root/usr/bin/lama-agent"
install -m 0644 "$here/lama-desktop.desktop" "$root/usr/share/applications/"
install -m 0644 "$svg" "$root/usr/share/icons/hicolor/scalable/apps/"
# A user unit, never enabled by the package: `systemctl --user enable --now lama-agent`.
sed 's|^ExecStart=%h/.local/bin/lama-agent|ExecStart=/usr/bin/lama-agent|' \
  "$here/lama-agent.service" > "$root/usr/lib/systemd/user/lama-agent.service"
cat > "$root/DEBIAN/control" <<CONTROL
Package: lama-desktop
Version: $version
Architecture: $deb_arch
Maintainer: Lama Desktop maintainers <lama-desktop@users.noreply.github.com>
Section: graphics
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Depends: $depends
Homepage: https://github.com/lama-desktop/lama-desktop
Description: Erase unwanted objects from photos with LaMa inpainting
 A desktop app (lama-desktop) that erases painted-over objects from photos, one at a
 time or in batches, and an agent (lama-agent) that lends a machine's CPU or GPU to it.
 The agent's systemd user unit is installed but not enabled.
CONTROL
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if command -v update-desktop-database >/dev/null; then update-desktop-database -q || true; fi
POSTINST
cp "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
deb="$dist/lama-desktop_${version}_${deb_arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "wrote $deb"
