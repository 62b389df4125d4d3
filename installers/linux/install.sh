#!/usr/bin/env bash
# Per-user install on Linux: a virtual environment in ~/.local/share/lama-desktop/venv,
# launchers in ~/.local/bin, a menu entry and (optionally) the agent's systemd user unit.
#   installers/linux/install.sh [--cuda] [--agent]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${XDG_DATA_HOME:-$HOME/.local/share}/lama-desktop/venv"
torch_spec="torch==2.13.0"
index=(--index-url https://download.pytorch.org/whl/cpu)
agent=0
for arg in "$@"; do
  case "$arg" in
    --cuda) index=() ;;  # PyPI's default torch wheel for Linux is the CUDA build
    --agent) agent=1 ;;
    *) echo "usage: $0 [--cuda] [--agent]" >&2; exit 2 ;;
  esac
done
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "${index[@]}" "$torch_spec"
"$venv/bin/pip" install -q "$repo"
mkdir -p "$HOME/.local/bin" "${XDG_DATA_HOME:-$HOME/.local/share}/applications"
ln -sf "$venv/bin/lama-desktop" "$HOME/.local/bin/lama-desktop"
ln -sf "$venv/bin/lama-agent" "$HOME/.local/bin/lama-agent"
install -m 0644 "$here/lama-desktop.desktop" "${XDG_DATA_HOME:-$HOME/.local/share}/applications/"
if [ "$agent" = 1 ]; then
  mkdir -p "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
  install -m 0644 "$here/lama-agent.service" "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/"
  echo "Agent unit installed: systemctl --user enable --now lama-agent"
fi
echo "Installed. Start Lama Desktop from the menu or run: lama-desktop"
