#!/bin/sh
# Installs the Debian packages keyvisor needs to build and test, skipping
# those already present.  Sourced by the other scripts; safe to run alone.
set -eu

# util-linux (unshare) and tini: the container-init tests, test_init.sh
# and init-vs-tini.sh.
KV_DEPS="meson ninja-build pkg-config gcc libc6-dev python3
libbsd-dev libjansson-dev libinih-dev libcriterion-dev libsodium-dev mandoc
util-linux tini"

kv_install_deps() {
	missing=""
	for p in $KV_DEPS "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		    grep -q "ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "keyvisor: installing$missing" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	# shellcheck disable=SC2086
	$sudo apt-get install -y -qq $missing >/dev/null
}

if [ "${0##*/}" = "deps.sh" ]; then
	kv_install_deps "$@"
fi
