#!/usr/bin/env bash
# Installs what `make test` and `make demo` need, on Debian 12, and does nothing
# (quickly) when everything is already there:
#
#   - from apt: nginx with the Lua module (libnginx-mod-http-lua, lua-resty-core),
#     varnish, wrk and haproxy. The package is `nginx`: on Debian 12 `nginx-light`
#     is only a transitional package that pulls in `nginx` plus the echo module, and
#     `nginx` provides the nginx-abi-1.22.1-7 that libnginx-mod-http-lua depends on.
#     The packages' own services are kept from starting during the install (a
#     temporary policy-rc.d) and disabled afterwards, so no system nginx, varnish
#     or haproxy holds a port; the tests run their own instances.
#   - a Consul agent built from source (tools/consul) into .bin/consul, or into
#     $CYCLER_CONSUL_BIN when that is set.
#   - vagrant from apt, when the `vagrant` command is missing: `make test` runs
#     `vagrant validate --ignore-provider` on the VM lab's Vagrantfile (no VM,
#     no hypervisor and no plugin needed).
#
# Run it as root, or as a user with sudo for the apt step.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
consul_bin="${CYCLER_CONSUL_BIN:-$root/.bin/consul}"
packages=(nginx libnginx-mod-http-lua lua-resty-core varnish wrk haproxy)

prefix=deps
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"

# present PACKAGE: succeeds when the files the harness uses from PACKAGE exist.
present() {
	case "$1" in
	nginx) [[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null ;;
	libnginx-mod-http-lua) [[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so && -f /usr/lib/nginx/modules/ndk_http_module.so ]] ;;
	lua-resty-core) [[ -f /usr/share/lua/5.1/resty/core.lua ]] ;;
	varnish) [[ -x /usr/sbin/varnishd && -x /usr/bin/varnishadm ]] ;;
	wrk) command -v wrk >/dev/null ;;
	haproxy) [[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null ;;
	*) die "no presence check for package $1" ;;
	esac
}

# services PACKAGE: the init services that PACKAGE installs.
services() {
	case "$1" in
	nginx) echo nginx ;;
	varnish) echo varnish varnishncsa ;;
	haproxy) echo haproxy ;;
	esac
}

# disable_service NAME: stop a service and keep it from starting at boot.
disable_service() {
	if [[ -d /run/systemd/system ]]; then
		say "disabling system service $1 (the tests run their own)"
		as_root systemctl disable --now "$1" >/dev/null 2>&1 || true
	elif [[ -x /etc/init.d/$1 ]]; then
		say "stopping and disabling system service $1 (the tests run their own)"
		as_root service "$1" stop >/dev/null 2>&1 || true
		as_root update-rc.d "$1" disable >/dev/null 2>&1 || true
	fi
}

install_packages() {
	local missing=()
	for p in "${packages[@]}"; do
		present "$p" || missing+=("$p")
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		say "apt packages present: ${packages[*]}"
		return
	fi
	command -v apt-get >/dev/null || die "missing ${missing[*]} and there is no apt-get; install them by hand (see this script's header)"
	say "missing: ${missing[*]}"

	# A policy-rc.d that exits 101 tells invoke-rc.d not to start services while
	# packages install. Use ours only when there is none; remove it on exit.
	local policy=/usr/sbin/policy-rc.d
	if [[ ! -e $policy ]]; then
		say "installing a temporary $policy so the packages' services do not start"
		as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d'
		trap 'as_root rm -f /usr/sbin/policy-rc.d; say "removed the temporary /usr/sbin/policy-rc.d"' EXIT
	fi

	say "apt-get update"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	say "apt-get install ${packages[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"

	for p in "${missing[@]}"; do
		for s in $(services "$p"); do
			disable_service "$s"
		done
	done
	for p in "${packages[@]}"; do
		present "$p" || die "$p is still missing after apt-get install"
	done
}

build_consul() {
	if [[ -x $consul_bin ]]; then
		say "consul present: $consul_bin"
		return
	fi
	command -v go >/dev/null || die "building Consul needs the go command on PATH"
	local tooldir="$root/tools/consul"
	[[ -f $tooldir/go.mod ]] || die "$tooldir/go.mod is missing; it pins the Consul version to build"
	local version
	version="$(awk '$1 == "github.com/hashicorp/consul" { print $2; exit }' "$tooldir/go.mod")"
	version="${version:-v1.20.2}"
	say "building Consul $version into $consul_bin (the first build takes a few minutes)"
	# GONOSUMDB: fetch hashicorp/consul through the module proxy without a checksum
	# database lookup; go.sum still pins every module once it has an entry.
	export GONOSUMDB=github.com/hashicorp/consul
	if ! grep -q "^github.com/hashicorp/consul $version " "$tooldir/go.sum" 2>/dev/null; then
		say "go get -tool github.com/hashicorp/consul@$version"
		(cd "$tooldir" && go get -tool "github.com/hashicorp/consul@$version")
	fi
	mkdir -p "$(dirname "$consul_bin")"
	# Build to a temporary name so an interrupted build never leaves a broken binary
	# that the next run would take as present.
	(cd "$tooldir" && go build -o "$consul_bin.tmp" github.com/hashicorp/consul)
	mv "$consul_bin.tmp" "$consul_bin"
	say "built $("$consul_bin" version | head -n 1)"
}

install_vagrant() {
	if command -v vagrant >/dev/null; then
		say "vagrant present: $(vagrant --version 2>/dev/null || echo vagrant)"
		return
	fi
	command -v apt-get >/dev/null || die "vagrant is missing and there is no apt-get; install vagrant by hand"
	say "apt-get install vagrant"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends vagrant
	command -v vagrant >/dev/null || die "vagrant is still missing after apt-get install"
}

install_packages
build_consul
install_vagrant
