#!/usr/bin/env bash
# Fetch the UI's chart library (uPlot, MIT) from the npm registry into monitor/ui/vendor/
# (git-ignored; or into $MONITOR_UI_VENDOR). Safe to run again: does nothing when present.
# Without it the service still starts and its pages show tables with a note.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version="$(sed -n 's/^UPLOT_VERSION = "\(.*\)"/\1/p' monitor/ui/assets.py)"
dest="${MONITOR_UI_VENDOR:-monitor/ui/vendor}"
if [[ -f "$dest/uPlot.iife.min.js" && -f "$dest/uPlot.min.css" && -f "$dest/VERSION" ]] \
    && [[ "$(cat "$dest/VERSION")" == "$version" ]]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "fetch_ui_assets: npm not found; the UI will show tables without charts" >&2
    exit 0
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kafka-model-monitor/npm"
mkdir -p "$cache" "$dest"
tgz="$cache/uplot-$version.tgz"
if [[ ! -f "$tgz" ]]; then
    (cd "$cache" && npm pack --silent "uplot@$version" >/dev/null)
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$tgz" -C "$tmp" package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$dest/"
cp "$tmp/package/LICENSE" "$dest/LICENSE.uPlot"
echo "$version" >"$dest/VERSION"
echo "fetch_ui_assets: uPlot $version in $dest"
