#!/usr/bin/env bash
# Re-vendor the dashboard's chart libraries from the npm registry, reproducibly.
#   deploy/vendor.sh
# Downloads the pinned tarballs with `npm pack` into a temp dir, checks each against the
# sha512 integrity pinned below (the same values as app/web/static/vendor/README.md), and
# copies only the files the dashboard needs, plus licences, into app/web/static/vendor/.
# To update: change a version and its integrity (`npm view <pkg>@<ver> dist.integrity`)
# here and in the README, run this script, and delete the old version's directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/app/web/static/vendor"

LWC_VERSION=5.2.1
LWC_INTEGRITY=sha512-IVwoK1RLFiLPubaKIjNbtjWLnpPMqiABSrTay6whmNa8L1+19292VtHJ+BWyPUuLCwF0tcQlhEWd1CLB2a1nsQ==
UPLOT_VERSION=1.6.32
UPLOT_INTEGRITY=sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==

command -v npm >/dev/null || { echo "npm is required (apt-get install npm)" >&2; exit 2; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# fetch NAME VERSION INTEGRITY: npm pack, verify against the pin, unpack into $WORK/NAME.
fetch() {
    local name="$1" version="$2" integrity="$3" tgz actual
    (cd "$WORK" && npm pack --silent "$name@$version" >/dev/null)
    tgz="$WORK/$name-$version.tgz"
    actual="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
    if [[ "$actual" != "$integrity" ]]; then
        echo "integrity mismatch for $name@$version:" >&2
        echo "  expected $integrity" >&2
        echo "  got      $actual" >&2
        exit 1
    fi
    mkdir -p "$WORK/$name"
    tar -xzf "$tgz" -C "$WORK/$name" --strip-components=1
    echo "ok $name@$version $integrity"
}

fetch lightweight-charts "$LWC_VERSION" "$LWC_INTEGRITY"
fetch uplot "$UPLOT_VERSION" "$UPLOT_INTEGRITY"

lwc_dir="$DEST/lightweight-charts-$LWC_VERSION"
uplot_dir="$DEST/uplot-$UPLOT_VERSION"
rm -rf "$lwc_dir" "$uplot_dir"
mkdir -p "$lwc_dir" "$uplot_dir"

install -m 0644 "$WORK/lightweight-charts/dist/lightweight-charts.standalone.production.js" "$lwc_dir/"
install -m 0644 "$WORK/lightweight-charts/LICENSE" "$lwc_dir/LICENSE"
# The npm tarball has no NOTICE file; its README requires the attribution notice from the
# upstream repository's NOTICE (github.com/tradingview/lightweight-charts/blob/master/NOTICE).
cat > "$lwc_dir/NOTICE" <<'EOF'
TradingView Lightweight Charts
Copyright (c) 2023 TradingView, Inc. https://www.tradingview.com/
EOF

install -m 0644 "$WORK/uplot/dist/uPlot.iife.min.js" "$uplot_dir/"
install -m 0644 "$WORK/uplot/dist/uPlot.min.css" "$uplot_dir/"
install -m 0644 "$WORK/uplot/LICENSE" "$uplot_dir/LICENSE"

echo "vendored into $DEST:"
(cd "$DEST" && find . -type f ! -name README.md | sort)
