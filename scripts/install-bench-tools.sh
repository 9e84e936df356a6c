#!/usr/bin/env bash
# Installs the extra tools the LB switch benchmark (TestBenchLBSwitch, `make
# bench-lb`) needs, and does nothing (quickly) when they are already there:
#
#   - wrk, from apt (scripts/install-deps.sh installs it too);
#   - consul-template v0.41.1, the peer the benchmark compares against, built
#     with `go install` into .bin/consul-template, or into
#     $CYCLER_CONSUL_TEMPLATE_BIN when that is set. Another version at that path
#     is replaced.
#
# nginx, varnish and Consul come from scripts/install-deps.sh (`make deps`).
# Run it as root, or as a user with sudo for the apt step.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ct_version=v0.41.1
ct_bin="${CYCLER_CONSUL_TEMPLATE_BIN:-$root/.bin/consul-template}"
build_dir="" # set by install_consul_template, removed on exit

say() { printf 'bench-tools: %s\n' "$*"; }
die() { printf 'bench-tools: error: %s\n' "$*" >&2; exit 1; }

# as_root runs a command as root: directly when we are root, else through sudo.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "installing packages needs root; run this script as root or install sudo"
	fi
}

install_wrk() {
	if command -v wrk >/dev/null; then
		say "wrk present: $(command -v wrk)"
		return
	fi
	command -v apt-get >/dev/null || die "wrk is missing and there is no apt-get; install wrk by hand"
	say "apt-get install wrk"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk
	command -v wrk >/dev/null || die "wrk is still missing after apt-get install"
}

install_consul_template() {
	if [[ -x $ct_bin ]] && "$ct_bin" -version 2>&1 | grep -q "consul-template $ct_version "; then
		say "consul-template $ct_version present: $ct_bin"
		return
	fi
	command -v go >/dev/null || die "building consul-template needs the go command on PATH"
	say "go install github.com/hashicorp/consul-template@$ct_version into $ct_bin"
	# Build into a temporary GOBIN and move the binary in place, so an
	# interrupted build never leaves a broken binary that the next run would
	# take as present.
	build_dir="$(mktemp -d)"
	trap 'rm -rf "$build_dir"' EXIT
	GOBIN="$build_dir" go install "github.com/hashicorp/consul-template@$ct_version"
	mkdir -p "$(dirname "$ct_bin")"
	mv "$build_dir/consul-template" "$ct_bin"
	say "built $("$ct_bin" -version 2>&1 | head -n 1)"
}

install_wrk
install_consul_template
