#!/usr/bin/env bash
# Registers this unpacked Lama Desktop folder for the current user (no root, no Python needed):
# launchers in ~/.local/bin, the menu entry and icon, and optionally the agent's systemd user unit.
#   ./install.sh [--agent]      ./install.sh --uninstall
# The folder stays where it is: move it first if you want it elsewhere, then run this again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
units="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
bin="$HOME/.local/bin"
agent=0
uninstall=0
for arg in "$@"; do
  case "$arg" in
    --agent) agent=1 ;;
    --uninstall) uninstall=1 ;;
    *) echo "usage: $0 [--agent] [--uninstall]" >&2; exit 2 ;;
  esac
done
if [ "$uninstall" = 1 ]; then
  rm -f "$bin/lama-desktop" "$bin/lama-agent" "$data/applications/lama-desktop.desktop" \
    "$data/icons/hicolor/scalable/apps/lama-desktop.svg" "$units/lama-agent.service"
  echo "Unregistered. Delete $here to remove the app itself."
  exit 0
fi
mkdir -p "$bin" "$data/applications" "$data/icons/hicolor/scalable/apps"
ln -sfn "$here/lama-desktop" "$bin/lama-desktop"
ln -sfn "$here/lama-agent" "$bin/lama-agent"
# The menu entry starts this folder's executable, wherever the archive was unpacked.
sed "s|^Exec=.*|Exec=\"$here/lama-desktop\" %f|" "$here/lama-desktop.desktop" \
  > "$data/applications/lama-desktop.desktop"
install -m 0644 "$here/lama-desktop.svg" "$data/icons/hicolor/scalable/apps/lama-desktop.svg"
if command -v update-desktop-database >/dev/null; then
  update-desktop-database -q "$data/applications" || true
fi
if [ "$agent" = 1 ]; then
  mkdir -p "$units"
  install -m 0644 "$here/lama-agent.service" "$units/lama-agent.service"
  echo "Agent unit installed (not started): systemctl --user enable --now lama-agent"
fi
# Qt's X11 plugin needs a few system libraries that are not in the bundle.
missing="$(ldd "$here/_internal/PySide6/Qt/plugins/platforms/libqxcb.so" 2>/dev/null \
  | awk '/not found/ {print $1}' | tr '\n' ' ')"
if [ -n "$missing" ]; then
  echo "The window needs these system libraries: $missing"
  echo "On Debian/Ubuntu: sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0"
fi
echo "Installed. Start Lama Desktop from the menu or run: lama-desktop"
case ":$PATH:" in *":$bin:"*) ;; *) echo "(add $bin to PATH to run it by name)" ;; esac
