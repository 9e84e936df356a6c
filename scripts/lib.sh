# shellcheck shell=bash
# Shared helpers of the install scripts. Source it after setting prefix,
# the word each message starts with:
#
#   prefix=deps
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

say() { printf '%s: %s\n' "${prefix:?set prefix before sourcing lib.sh}" "$*"; }
die() { printf '%s: error: %s\n' "$prefix" "$*" >&2; exit 1; }

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
