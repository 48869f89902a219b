#!/usr/bin/env bash
# Rebuilds internal/ui/assets/vendor from the npm packages pinned in
# internal/ui/npm/package-lock.json (npm ci: the lock file's exact versions
# and checksums). The copied files are committed, so building vers needs
# no npm; run this only to change a version, then commit the result.
set -euo pipefail
cd "$(dirname "$0")/../internal/ui"
(cd npm && npm ci --ignore-scripts --no-audit --no-fund)
out=assets/vendor
rm -rf "$out"
mkdir -p "$out"
cp npm/node_modules/@xterm/xterm/lib/xterm.js "$out/xterm.js"
cp npm/node_modules/@xterm/xterm/css/xterm.css "$out/xterm.css"
cp npm/node_modules/@xterm/xterm/LICENSE "$out/xterm.LICENSE"
cp npm/node_modules/@xterm/addon-fit/lib/addon-fit.js "$out/addon-fit.js"
# The source maps point at files that are not shipped; drop the reference.
sed -i '/^\/\/# sourceMappingURL=/d' "$out/xterm.js" "$out/addon-fit.js"
(cd npm && node -e 'const l=require("./package-lock.json").packages;for(const k of Object.keys(l).filter(k=>k))console.log(k.replace("node_modules/",""), l[k].version)') > "$out/VERSIONS"
echo "ui assets: $(tr '\n' ' ' < "$out/VERSIONS")-> internal/ui/$out"
