#!/usr/bin/env bash
# Provisions one VM of the cycler Vagrant lab (see the Vagrantfile and
# docs/operations.md, "Vagrant lab"). It runs inside the VM as root:
#
#   provision.sh consul NODE_ID NODE_IP
#   provision.sh server NODE_ID NODE_IP JOIN      JOIN: "[]" or '["192.168.56.11:7400"]'
#   provision.sh lb     NODE_ID NODE_IP
#   provision.sh app    NODE_ID NODE_IP POOL      POOL: blue or green
#
# It installs the project's own binaries (built on the host by `make build`
# and `make deps` into .bin/, synced to /vagrant/.bin), the systemd units of
# deploy/systemd, the configs of deploy/config and deploy/consul with this
# host's values filled in, and the lab's secrets. The shared secrets were
# generated on the host at `vagrant up` (.vagrant/cycler-lab/secrets, synced
# to /vagrant-secrets); secrets local to one host are generated here. Every
# secret is stored 0600, owned by the user that reads it. Running it again
# changes only what differs.
set -euo pipefail

src=/vagrant
secrets=/vagrant-secrets
bin="$src/.bin"

say() { printf 'provision: %s\n' "$*"; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }

usage() { die "usage: provision.sh consul|server|lb|app NODE_ID NODE_IP [JOIN|POOL]"; }

# render SRC DEST MODE OWNER: SRC with the @NAME@ placeholders replaced by
# this host's values, installed as DEST only when its content changed.
render() {
	local from=$1 to=$2 mode=$3 owner=$4 tmp
	tmp="$(mktemp)"
	sed -e "s|@NODE_ID@|$node_id|g" \
		-e "s|@NODE_IP@|$node_ip|g" \
		-e "s|@POOL@|${pool:-}|g" \
		-e "s|@JOIN@|${join:-[]}|g" \
		-e "s|@GOSSIP_KEY@|${gossip_key:-}|g" \
		"$from" >"$tmp"
	if grep -q '@[A-Z_]*@' "$tmp"; then
		rm -f "$tmp"
		die "$from has a placeholder provision.sh does not fill in: $(grep -o '@[A-Z_]*@' "$from" | sort -u | tr '\n' ' ')"
	fi
	install_file "$tmp" "$to" "$mode" "$owner"
	rm -f "$tmp"
}

# install_file SRC DEST MODE OWNER: copy when the content differs; always
# (re)apply mode and owner.
install_file() {
	local from=$1 to=$2 mode=$3 owner=$4
	if ! cmp -s "$from" "$to"; then
		install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$from" "$to"
		say "installed $to"
		changed=1
	fi
	chmod "$mode" "$to"
	chown "$owner" "$to"
}

# shared_secret NAME DEST OWNER: a secret generated on the host, installed 0600.
shared_secret() {
	[[ -s $secrets/$1 ]] || die "$secrets/$1 is missing: the Vagrantfile's trigger generates it on the host at 'vagrant up'; run 'vagrant reload --provision $node_id'"
	install_file "$secrets/$1" "$2" 0600 "$3"
}

# local_secret DEST OWNER: a random secret for this host only, made once.
local_secret() {
	if [[ ! -s $1 ]]; then
		(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1" && echo >>"$1")
		say "generated $1"
	fi
	chmod 0600 "$1"
	chown "$2" "$1"
}

need_binary() {
	[[ -x $bin/$1 ]] || die "$bin/$1 is missing: build it on the host first ('make deps build' in the repo), then 'vagrant rsync' and 'vagrant provision'"
}

base_packages() {
	local pkgs=(ca-certificates curl jq "$@") missing=()
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return
	# Keep the packages' own services from starting: the lab runs its own units.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	say "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	rm -f /usr/sbin/policy-rc.d
}

user_for() {
	id -u "$1" >/dev/null 2>&1 || useradd --system --home-dir "$2" --no-create-home --shell /usr/sbin/nologin "$1"
}

install_consul() {
	local role=$1
	changed=0
	need_binary consul
	user_for consul /var/lib/consul
	install_file "$bin/consul" /usr/local/bin/consul 0755 root:root
	install -d -m 0750 -o consul -g consul /etc/consul.d
	gossip_key="$(tr -d '\n' <"$secrets/gossip")"
	[[ -n $gossip_key ]] || die "$secrets/gossip is empty"
	render "$src/deploy/consul/$role.hcl" /etc/consul.d/consul.hcl 0600 consul:consul
	unit consul.service
	start consul.service
	wait_for "consul agent" curl -fsS http://127.0.0.1:8500/v1/status/leader
}

install_cyclerd() {
	need_binary cyclerd
	need_binary cyclerctl
	user_for cycler /var/lib/cycler
	install_file "$bin/cyclerd" /usr/local/bin/cyclerd 0755 root:root
	install_file "$bin/cyclerctl" /usr/local/bin/cyclerctl 0755 root:root
	install -d -m 0750 -o root -g cycler /etc/cycler
	install -d -m 0750 -o cycler -g cycler /etc/cycler/tokens
}

# unit NAME...: install the units from deploy/systemd.
unit() {
	for u in "$@"; do
		install_file "$src/deploy/systemd/$u" "/etc/systemd/system/$u" 0644 root:root
	done
	systemctl daemon-reload
}

# start UNIT: enable it, and restart it when this run changed its files.
start() {
	systemctl enable --quiet "$1"
	if [[ $changed -eq 1 ]] || ! systemctl is-active --quiet "$1"; then
		systemctl restart "$1"
	fi
}

# wait_for WHAT CMD...: poll CMD until it succeeds, for up to 2 minutes.
wait_for() {
	local what=$1 deadline=$((SECONDS + 120))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "$what is not ready after 2 minutes; see journalctl -u ... on $node_id"
		sleep 1
	done
	say "$what is ready"
}

provision_consul() {
	base_packages
	install_consul server
}

provision_server() {
	base_packages
	install_consul client
	changed=0
	install_cyclerd
	shared_secret ops /etc/cycler/tokens/ops cycler:cycler
	shared_secret fleet /etc/cycler/tokens/fleet cycler:cycler
	shared_secret agent-api /etc/cycler/tokens/agent-api cycler:cycler
	render "$src/deploy/config/server.hcl" /etc/cycler/server.hcl 0640 root:cycler
	unit cyclerd-server.service
	start cyclerd-server.service
	wait_for "cyclerd server" curl -fsS "http://$node_ip:7400/v1/health"
}

provision_lb() {
	base_packages nginx libnginx-mod-http-lua lua-resty-core varnish
	# The lab's units run nginx and varnishd for cyclerd; Debian's stay off.
	systemctl disable --now --quiet nginx.service varnish.service varnishncsa.service 2>/dev/null || true
	install_consul client
	changed=0
	install_cyclerd
	shared_secret ops /etc/cycler/tokens/ops cycler:cycler
	local_secret /etc/cycler/tokens/nginx-admin cycler:cycler
	install -d -m 0750 -o root -g cycler /etc/cycler/nginx /etc/cycler/varnish
	local_secret /etc/cycler/varnish/secret cycler:cycler
	install -d -m 0755 -o cycler -g cycler /etc/nginx/cycler /etc/varnish/cycler
	# nginx's logs and temp files (cycler-nginx.service would create them at
	# its start); made now so that the `nginx -t` cyclerd lb runs at its first
	# start can open them.
	install -d -m 0750 -o cycler -g cycler /var/log/cycler-nginx /var/lib/cycler-nginx
	install_file "$src/deploy/config/nginx.conf" /etc/cycler/nginx/nginx.conf 0644 root:root
	install_file "$src/deploy/config/varnish-boot.vcl" /etc/cycler/varnish/boot.vcl 0644 root:root
	install_file "$src/deploy/config/varnish-site.vcl" /etc/cycler/varnish/site.vcl 0644 root:root
	# varnishd reads the VCL files and its secret; /etc/cycler/* is not
	# world-readable, so let it through the directories.
	chmod 0755 /etc/cycler /etc/cycler/nginx /etc/cycler/varnish
	render "$src/deploy/config/lb-nginx.hcl" /etc/cycler/lb-nginx.hcl 0640 root:cycler
	render "$src/deploy/config/lb-varnish.hcl" /etc/cycler/lb-varnish.hcl 0640 root:cycler
	unit cyclerd-lb@.service cycler-nginx.service cycler-varnish.service

	# cyclerd lb writes /etc/nginx/cycler/cycler.conf, which nginx.conf
	# includes, so it starts first; its reload of a not-yet-running nginx is
	# only a warning.
	start cyclerd-lb@nginx.service
	wait_for "nginx files from cyclerd lb" test -s /etc/nginx/cycler/cycler.conf
	start cycler-nginx.service
	start cycler-varnish.service
	wait_for "varnishd" varnishadm -T 127.0.0.1:6082 -S /etc/cycler/varnish/secret ping
	start cyclerd-lb@varnish.service
	wait_for "cyclerd lb (nginx)" curl -fsS http://127.0.0.1:7402/v1/health
	wait_for "cyclerd lb (varnish)" curl -fsS http://127.0.0.1:7403/v1/health
}

provision_app() {
	base_packages
	install_consul client
	changed=0
	install_cyclerd
	shared_secret fleet /etc/cycler/tokens/fleet cycler:cycler
	shared_secret agent-api /etc/cycler/tokens/agent-api cycler:cycler
	render "$src/deploy/config/agent.hcl" /etc/cycler/agent.hcl 0640 root:cycler
	unit cyclerd-agent.service
	start cyclerd-agent.service
	wait_for "cyclerd agent" curl -fsS "http://$node_ip:7401/v1/health"
}

[[ $EUID -eq 0 ]] || die "run as root (Vagrant's shell provisioner does)"
[[ $# -ge 3 ]] || usage
role=$1 node_id=$2 node_ip=$3
pool="" join="[]" gossip_key="" changed=0
hostnamectl set-hostname "$node_id" 2>/dev/null || true
case "$role" in
consul) provision_consul ;;
server)
	[[ $# -eq 4 ]] || usage
	join=$4
	provision_server
	;;
lb) provision_lb ;;
app)
	[[ $# -eq 4 && ($4 == blue || $4 == green) ]] || usage
	pool=$4
	provision_app
	;;
*) usage ;;
esac
say "$node_id ($role) is provisioned"
