# Source this from the repo root to point cyclerctl at the Vagrant lab:
#
#   . deploy/vagrant/lab-env.sh && .bin/cyclerctl cluster members
#
# The operator token is the one the Vagrantfile generated at `vagrant up`.
# shellcheck shell=bash
if [[ ! -s .vagrant/cycler-lab/secrets/ops ]]; then
	echo "lab-env: .vagrant/cycler-lab/secrets/ops is missing; run this from the repo root after 'vagrant up'" >&2
	# shellcheck disable=SC2317 # exit when run instead of sourced
	return 1 2>/dev/null || exit 1
fi
export CYCLER_ADDR=192.168.56.11:7400
CYCLER_TOKEN="$(cat .vagrant/cycler-lab/secrets/ops)"
export CYCLER_TOKEN
