#!/usr/bin/env bash
# Vendor the web assets the rendered book needs, so that no page loads anything
# from a CDN. Fetched from the npm registry with `npm pack` (npm checks each
# tarball against the registry's integrity hash) into the git-ignored _vendor/:
#
#   _vendor/widgets/       require.js (requirejs@2.3.7) and embed-amd.js plus the
#                          fonts it loads from beside itself
#                          (@jupyter-widgets/html-manager@1.0.15, dist/): the
#                          ipywidgets manager (nb_ipywidgets_js in _config.yml)
#   _vendor/font-awesome/  font-awesome@4.7.0 css/ and fonts/: the icons of
#                          matplotlib's to_jshtml animation player, which links
#                          Font Awesome 4 from a CDN (tools/offline_assets.py
#                          rewrites that link to this copy)
#
# Sphinx copies _vendor/ to _build/html/_static/ (html_static_path in _config.yml).
# Usage: tools/fetch_vendor.sh [--force]
set -euo pipefail

REQUIREJS=requirejs@2.3.7
HTML_MANAGER=@jupyter-widgets/html-manager@1.0.15
FONT_AWESOME=font-awesome@4.7.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/_vendor"
stamp="$dest/.fetched"
want="$REQUIREJS $HTML_MANAGER $FONT_AWESOME"

if [[ "${1:-}" != "--force" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "fetch_vendor: $dest is up to date ($want)"
    exit 0
fi
command -v npm >/dev/null || { echo "fetch_vendor: npm not found (apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$REQUIREJS" "$HTML_MANAGER" "$FONT_AWESOME" >/dev/null)
for pkg in requirejs html-manager font-awesome; do mkdir -p "$tmp/$pkg"; done
tar -xzf "$tmp"/requirejs-*.tgz -C "$tmp/requirejs"
tar -xzf "$tmp"/jupyter-widgets-html-manager-*.tgz -C "$tmp/html-manager"
tar -xzf "$tmp"/font-awesome-*.tgz -C "$tmp/font-awesome"

out="$tmp/_vendor"
mkdir -p "$out/widgets" "$out/font-awesome"
cp "$tmp/requirejs/package/require.js" "$out/widgets/"
dist="$tmp/html-manager/package/dist"
cp "$dist/embed-amd.js" "$dist"/*.LICENSE.txt "$out/widgets/"
shopt -s nullglob
fonts=("$dist"/*.woff "$dist"/*.woff2 "$dist"/*.ttf "$dist"/*.eot "$dist"/*.svg)
(( ${#fonts[@]} > 0 )) || { echo "fetch_vendor: no font files in $HTML_MANAGER dist/" >&2; exit 1; }
cp "${fonts[@]}" "$out/widgets/"
cp -r "$tmp/font-awesome/package/css" "$tmp/font-awesome/package/fonts" "$out/font-awesome/"
echo "$want" > "$out/.fetched"

rm -rf "$dest"
mv "$out" "$dest"
echo "fetch_vendor: $want -> $dest"
