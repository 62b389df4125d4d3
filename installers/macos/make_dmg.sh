#!/usr/bin/env bash
# macOS: the PyInstaller spec builds "dist/Lama Desktop.app" (BUNDLE step) next to the folder;
# this packs it into a compressed disk image with an /Applications link to drag it onto.
#   installers/macos/make_dmg.sh "dist/Lama Desktop.app" dist/LamaDesktop-0.1.0-macos.dmg
# Needs macOS (hdiutil). Unsigned: first start is right-click > Open, or sign and notarize
# with `codesign --deep --options runtime` and `xcrun notarytool` (a paid Apple ID).
set -euo pipefail
app="${1:?usage: $0 APP_BUNDLE OUT_DMG}"
out="${2:?usage: $0 APP_BUNDLE OUT_DMG}"
[ -d "$app/Contents/MacOS" ] || { echo "$app is not an .app bundle" >&2; exit 1; }
# The agent and workers run from inside the .app: check both executables are there.
for exe in lama-desktop lama-agent; do
  [ -x "$app/Contents/MacOS/$exe" ] || { echo "$app lacks Contents/MacOS/$exe" >&2; exit 1; }
done
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
rm -f "$out"
hdiutil create -volname "Lama Desktop" -srcfolder "$stage" -fs HFS+ -format UDZO "$out"
echo "wrote $out"
