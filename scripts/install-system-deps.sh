#!/usr/bin/env bash
# Installs the Debian packages that tests and the demo run for real, only when missing.
set -euo pipefail
need=()
command -v pebble >/dev/null || need+=(pebble)
command -v named >/dev/null || need+=(bind9)
command -v tsig-keygen >/dev/null || need+=(bind9-utils)
command -v lego >/dev/null || need+=(lego)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The bind9 package starts a system named on port 53; ours run on their own ports, so stop it.
if [ -d /run/systemd/system ]; then $sudo systemctl disable --now named >/dev/null 2>&1 || true; fi
