#!/usr/bin/env bash
# Debian/Ubuntu services the test tiers use: PostgreSQL (team-scale store), Redis (Argilla background
# jobs), Chromium + ChromeDriver (UI tests). Installed with apt-get when we are root and they are missing.
# Outside CI a machine without them gets a warning and those tests skip; with CI=true it is an error.
set -euo pipefail

PACKAGES=(postgresql redis-server chromium chromium-driver)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif [ "${CI:-}" = "true" ]; then
  echo "CI: missing system packages ${missing[*]} and cannot install them (need root and apt-get)" >&2
  exit 1
else
  echo "warning: missing ${missing[*]}; install them (apt-get) or the tests that need them will skip" >&2
fi
