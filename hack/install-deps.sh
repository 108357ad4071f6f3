#!/usr/bin/env bash
# Installs the Debian packages that the integration tests, the demo and the
# benchmarks need.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
# The integration tests (test/harness) also use unshare, nsenter and mount
# (util-linux, mount), getent (libc-bin) and /usr/bin/python3 itself;
# redis-server goes into the demo's Redis image, rabbitmq-server (with
# Erlang) into the e2e tests' RabbitMQ image and runs the unit tests of
# internal/queue/rabbitmq; the benchmarks' load
# generators are wrk (HTTP/1.1) and h2load (h2c, from nghttp2-client).
pkgs=(busybox-static dnsmasq-base musl-tools iproute2 curl nftables util-linux mount libc-bin redis-server rabbitmq-server wrk nghttp2-client dnsutils rsync git tar python3-dnspython)
# node may come from elsewhere (it does on the CI image); don't fight it.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
# The tests run the system interpreter /usr/bin/python3 (not a pyenv shim).
[ -x /usr/bin/python3 ] || pkgs+=(python3)
exec "$(dirname "$0")/apt-install.sh" "${pkgs[@]}"
