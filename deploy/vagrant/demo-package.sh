#!/usr/bin/env bash
# Builds a package of the demo app for the service "web", for the Vagrant lab
# (or any fleet that runs it):
#
#   deploy/vagrant/demo-package.sh VERSION [OUT_DIR]   -> OUT_DIR/web-VERSION.tar.gz
#
# The package holds cycler.hcl (the manifest) and the demo app binary built
# by `make build` (.bin/cycler-demoapp, or $CYCLER_DEMOAPP_BIN). The agent
# starts it on the host's address and port and waits for GET /health.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
die() { printf 'demo-package: error: %s\n' "$*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: demo-package.sh VERSION [OUT_DIR]"
version=$1
out="${2:-.}"
[[ $version =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]] || die "version $version: use letters, digits and .+_- (like 1.2.0)"
app="${CYCLER_DEMOAPP_BIN:-$root/.bin/cycler-demoapp}"
[[ -x $app ]] || die "$app is missing; run 'make build' first"
[[ -d $out ]] || die "output directory $out does not exist"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$app" "$work/cycler-demoapp"
chmod 0755 "$work/cycler-demoapp"
cat >"$work/cycler.hcl" <<MANIFEST
name    = "web"
version = "$version"

start {
  command = [
    "./cycler-demoapp",
    "-listen", "\${CYCLER_ADDR}",
    "-version", "\${CYCLER_VERSION}",
    "-instance", "\${CYCLER_INSTANCE}",
    "-pool", "\${CYCLER_POOL}",
  ]
}

health {
  http_path = "/health"
  timeout   = "20s"
}
MANIFEST
file="$out/web-$version.tar.gz"
tar -czf "$file" --owner=0 --group=0 --numeric-owner -C "$work" cycler.hcl cycler-demoapp
printf '%s\n' "$file"
