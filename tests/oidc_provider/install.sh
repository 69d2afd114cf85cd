#!/usr/bin/env bash
# Install the test OpenID provider (oidc-provider from npm, pinned by package-lock.json) into
# the cache folder the tests use; prints that folder. Safe to run again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hash="$(sha256sum "$here/package-lock.json" | cut -c1-12)"
target="${CDX_CACHE_DIR:-$HOME/.cache/cdx}/oidc-provider-$hash"
if [ ! -f "$target/node_modules/oidc-provider/package.json" ]; then
  mkdir -p "$target"
  cp "$here/package.json" "$here/package-lock.json" "$target/"
  npm ci --prefix "$target" --no-audit --no-fund --loglevel=error >&2
fi
echo "$target"
