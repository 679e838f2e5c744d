#!/usr/bin/env bash
# Installs the Debian packages that tests and the demo run for real, only when missing. Chromium (with the
# fonts it only recommends) renders the HTML fleet report in its test and makes the README's screenshot.
# Usage: install-system-deps.sh [--bench]   (--bench adds lego, which only `make bench` runs)
set -euo pipefail
declare -A binary=([pebble]=/usr/bin/pebble [bind9]=/usr/sbin/named [bind9-utils]=/usr/sbin/tsig-keygen
                   [chromium]=/usr/bin/chromium
                   [fonts-liberation]=/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf)
[ "${1:-}" = "--bench" ] && binary[lego]=/usr/bin/lego
need=()
for package in "${!binary[@]}"; do
  # Absolute paths: a normal user's PATH on Debian has no /usr/sbin.
  [ -e "${binary[$package]}" ] || need+=("$package")
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Installing bind9 starts a system named on port 53; ours run on their own ports, so stop only that one.
if [[ " ${need[*]} " == *" bind9 "* ]] && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now named >/dev/null 2>&1 || true
fi
