#!/usr/bin/env bash
# Installs the Debian packages that the integration tests and the demo need.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
# The integration tests (test/harness) also use unshare, nsenter and mount
# (util-linux, mount), getent (libc-bin) and /usr/bin/python3 itself.
pkgs=(busybox-static dnsmasq-base musl-tools iproute2 curl python3 nodejs nftables util-linux mount libc-bin redis-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node may come from elsewhere (it does on the CI image); don't fight it.
if command -v node >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}")
fi
# The tests run the system interpreter /usr/bin/python3 (not a pyenv shim).
if [ -x /usr/bin/python3 ]; then
  missing=("${missing[@]/python3}")
fi
want=()
for p in "${missing[@]}"; do [ -n "$p" ] && want+=("$p"); done
if [ ${#want[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: need root to install: ${want[*]} (run: sudo $0)" >&2
  exit 1
fi
# No package's own service (redis-server, dnsmasq) starts during install:
# tests and images start what they need themselves.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# hack/install-deps.sh: no service starts during apt-get install\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${want[*]}" >&2
apt-get update -qq >/dev/null || apt-get update
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
