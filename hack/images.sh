#!/usr/bin/env bash
# Builds the product's images as docker-archive tarballs in .cache/images
# (imported into the local cluster by `make images` / hack/cluster/up.sh):
#   tether.local/tether-agent:dev         the agent (FROM scratch + static binary)
#   tether.local/ip-visit-counter:dev     the demo app and its services (examples/ip-visit-counter)
#   tether.local/ip-info:dev
#   tether.local/ip-visit-consumer:dev
#   tether.local/demo-kafka:dev           franz-go's kfake as the demo's Kafka
#   tether.local/redis:dev                Debian's redis-server with its libraries
#   tether.local/tether-bench:dev         the benchmarks' HTTP server (test/bench/benchserver)
#                                         and busybox (kubectl exec POD -- true)
# Needs: Go, busybox-static and redis-server installed (hack/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${IMAGE_DIR:-.cache/images}
agent_image=${AGENT_IMAGE:-tether.local/tether-agent:dev}
mkdir -p "$out" bin .cache/demo
export CGO_ENABLED=0
go build -trimpath -o bin/mkimage ./hack/mkimage
version=$(git describe --always --dirty 2>/dev/null || echo dev)
go build -trimpath -ldflags "-s -w -X github.com/tether-dev/tether/internal/version.Version=$version" -o bin/tether-agent ./cmd/tether-agent
bin/mkimage -o "$out/tether-agent.tar" -t "$agent_image" -entrypoint /tether-agent bin/tether-agent:/tether-agent

for app in ip-visit-counter ip-info ip-visit-consumer kafka; do
  name=$app
  [ "$app" = kafka ] && name=demo-kafka
  go build -trimpath -tags netgo -ldflags "-s -w" -o ".cache/demo/$app" "./examples/ip-visit-counter/cmd/$app"
  bin/mkimage -o "$out/$name.tar" -t "tether.local/$name:dev" -entrypoint "/$app" ".cache/demo/$app:/$app"
done

# Redis: the real Debian binary, with exactly the shared libraries it loads.
redis=$(command -v redis-server || true)
if [ -z "$redis" ]; then
  echo "images.sh: redis-server is not installed: run hack/install-deps.sh" >&2
  exit 1
fi
stage=.cache/demo/redis-root
rm -rf "$stage"
mkdir -p "$stage/usr/bin"
cp "$redis" "$stage/usr/bin/redis-server"
ldd "$redis" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | while read -r lib; do
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done
bin/mkimage -o "$out/redis.tar" -t tether.local/redis:dev -entrypoint /usr/bin/redis-server "$stage:/"
# The benchmarks' server (make bench), with busybox for `kubectl exec POD -- true`.
mkdir -p .cache/bench
go build -trimpath -ldflags "-s -w" -o .cache/bench/benchserver ./test/bench/benchserver
bin/mkimage -o "$out/tether-bench.tar" -t tether.local/tether-bench:dev -entrypoint /benchserver \
  -symlink /bin/sh=busybox -symlink /bin/true=busybox -symlink /bin/sleep=busybox \
  .cache/bench/benchserver:/benchserver /bin/busybox:/bin/busybox
echo "images.sh: wrote $(ls "$out" | wc -l) images to $out"
