#!/bin/sh
# The demo: installs what is missing, builds, and shows keyvisor at work.
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
kv_install_deps
if [ -d build/meson-private ]; then
	meson setup --reconfigure build >/dev/null
else
	meson setup build >/dev/null
fi
meson compile -C build >/dev/null
echo "== the registry: lookups from another process while a writer churns"
./build/tests/bench/registry-bench 0.5
