#!/usr/bin/env bash
# Installs the extra tools the LB switch and cycle benchmarks (TestBenchLBSwitch,
# `make bench-lb`; TestBenchCycle, `make bench-cycle`) need, and does nothing
# (quickly) when they are already there:
#
#   - wrk, from apt (scripts/install-deps.sh installs it too);
#   - consul-template v0.41.1, the peer the benchmark compares against, built
#     with `go install` into .bin/consul-template, or into
#     $CYCLER_CONSUL_TEMPLATE_BIN when that is set. Another version at that path
#     is replaced.
#   - hey v0.1.5 (github.com/rakyll/hey), the cycle benchmark's second load
#     client, built with `go install` into .bin/hey, or into $CYCLER_HEY_BIN
#     when that is set. Another version at that path is replaced.
#
# nginx, varnish and Consul come from scripts/install-deps.sh (`make deps`).
# Run it as root, or as a user with sudo for the apt step.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ct_version=v0.41.1
ct_bin="${CYCLER_CONSUL_TEMPLATE_BIN:-$root/.bin/consul-template}"
hey_version=v0.1.5
hey_bin="${CYCLER_HEY_BIN:-$root/.bin/hey}"
build_dir="" # set by go_install, removed on exit

prefix=bench-tools
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

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

# go_install builds module@version with `go install` into a temporary GOBIN
# and moves the binary named name to dest, so an interrupted build never
# leaves a broken binary that the next run would take as present.
go_install() {
	local module=$1 version=$2 name=$3 dest=$4
	command -v go >/dev/null || die "building $name needs the go command on PATH"
	say "go install $module@$version into $dest"
	build_dir="$(mktemp -d)"
	trap 'rm -rf "$build_dir"' EXIT
	GOBIN="$build_dir" go install "$module@$version"
	mkdir -p "$(dirname "$dest")"
	mv "$build_dir/$name" "$dest"
	rm -rf "$build_dir"
}

install_consul_template() {
	if [[ -x $ct_bin ]] && "$ct_bin" -version 2>&1 | grep -q "consul-template $ct_version "; then
		say "consul-template $ct_version present: $ct_bin"
		return
	fi
	go_install github.com/hashicorp/consul-template "$ct_version" consul-template "$ct_bin"
	say "built $("$ct_bin" -version 2>&1 | head -n 1)"
}

# hey prints no version of its own; the module version recorded in the
# binary (go version -m) says which one it is.
install_hey() {
	if [[ -x $hey_bin ]] && go version -m "$hey_bin" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/rakyll/hey[[:space:]]+${hey_version}[[:space:]]"; then
		say "hey $hey_version present: $hey_bin"
		return
	fi
	go_install github.com/rakyll/hey "$hey_version" hey "$hey_bin"
	say "built hey $hey_version: $hey_bin"
}

install_wrk
install_consul_template
install_hey
