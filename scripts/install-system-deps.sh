#!/usr/bin/env bash
# Installs the Debian packages that tests and the demo run for real, only when missing, and fetches the
# current Pebble (see fetch_current_pebble) into the project's own .cache/. Chromium (with the fonts it only
# recommends) renders the HTML fleet report in its test and makes the README's screenshot.
# Usage: install-system-deps.sh [--bench]   (--bench adds lego, which only `make bench` runs)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Pebble as Debian 12 ships it (2.4: no ARI, no profiles) stays installed: a test proves clean degradation on it.
declare -A binary=([pebble]=/usr/bin/pebble [bind9]=/usr/sbin/named [bind9-utils]=/usr/sbin/tsig-keygen
                   [chromium]=/usr/bin/chromium
                   [fonts-liberation]=/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf)
[ "${1:-}" = "--bench" ] && binary[lego]=/usr/bin/lego
need=()
for package in "${!binary[@]}"; do
  # Absolute paths: a normal user's PATH on Debian has no /usr/sbin.
  [ -e "${binary[$package]}" ] || need+=("$package")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Installing bind9 starts a system named on port 53; ours run on their own ports, so stop only that one.
  if [[ " ${need[*]} " == *" bind9 "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now named >/dev/null 2>&1 || true
  fi
fi

# The current Pebble (ARI, profiles, alreadyReplaced, dns-persist-01: 2.10 and later) is Debian unstable's
# package. It runs on Debian 12 (it needs only libc6 >= 2.34), so fetch it with apt's own tools into
# .cache/pebble-2.10/ (git-ignored): a temporary sources list for unstable and apt state of our own, so the
# machine's sources and installed packages stay exactly as they were. Nothing is installed system-wide.
debian_mirror() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk -v c="$1" '$2 == c { print $1; exit }'
}
fetch_current_pebble() {
  local dest="$root/.cache/pebble-2.10" work mirror codename version
  [ -x "$dest/usr/bin/pebble" ] && return 0
  work="$(mktemp -d)"
  # Expanded now: $work is local and gone by the time the EXIT trap runs (set -u would fail the script).
  trap "rm -rf -- '$work'" EXIT
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  # The same Debian mirror the machine already uses for its own release (no host is named here).
  # apt lists that were never downloaded (a fresh image) name no mirror: update them once and ask again.
  mirror="$(debian_mirror "$codename")"
  [ -n "$mirror" ] || { $sudo apt-get update -qq; mirror="$(debian_mirror "$codename")"; }
  if [ -z "$mirror" ]; then
    echo "no Debian mirror for '$codename' in apt's sources: cannot fetch the current Pebble" >&2
    return 1
  fi
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror unstable main" >"$work/sources.list"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  local apt=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/dev/null
             -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=$(id -un)")
  echo "fetching Pebble from Debian unstable into $dest"
  apt-get -qq "${apt[@]}" update
  (cd "$work" && apt-get -qq "${apt[@]}" download pebble)
  version="$(dpkg-deb -f "$work"/pebble_*.deb Version)"
  if ! dpkg --compare-versions "$version" ge 2.10; then
    echo "Debian unstable's pebble is $version; the tests need 2.10 or later" >&2
    return 1
  fi
  rm -rf "$dest.partial" && mkdir -p "$dest.partial"
  dpkg-deb -x "$work"/pebble_*.deb "$dest.partial"
  echo "$version" >"$dest.partial/VERSION"
  # Appear whole or not at all: a fetch cut short leaves no binary that looks installed.
  rm -rf "$dest" && mv "$dest.partial" "$dest"
}
fetch_current_pebble
