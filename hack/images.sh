#!/usr/bin/env bash
# Builds the product's images as docker-archive tarballs in .cache/images
# (imported into the local cluster by `make images` / hack/cluster/up.sh):
#   tether.local/tether-agent:dev         the agent (FROM scratch + static binary)
#   tether.local/tether-operator:dev      the operator (likewise)
#   tether.local/ip-visit-counter:dev     the demo app and its services (examples/ip-visit-counter)
#   tether.local/ip-info:dev
#   tether.local/ip-visit-consumer:dev
#   tether.local/demo-kafka:dev           franz-go's kfake as the demo's Kafka
#   tether.local/redis:dev                Debian's redis-server with its libraries
#   tether.local/rabbitmq:dev             Debian's rabbitmq-server (queue-splitting tests)
#   tether.local/goaws:dev                goaws, an SQS emulator standing in for Amazon SQS
#                                         (queue-splitting tests; built from tools/go.mod)
#   tether.local/tether-bench:dev         the benchmarks' HTTP server (test/bench/benchserver)
#                                         and busybox (kubectl exec POD -- true)
# Needs: Go, busybox-static, redis-server and rabbitmq-server installed (hack/install-deps.sh).
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
go build -trimpath -ldflags "-s -w -X github.com/tether-dev/tether/internal/version.Version=$version" -o bin/tether-operator ./cmd/tether-operator
bin/mkimage -o "$out/tether-operator.tar" -t "${OPERATOR_IMAGE:-tether.local/tether-operator:dev}" -user 65532 -entrypoint /tether-operator bin/tether-operator:/tether-operator

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
# RabbitMQ for the queue-splitting tests: Debian's rabbitmq-server and
# Erlang with the libraries their binaries load, busybox for the scripts.
for f in /usr/lib/rabbitmq/bin/rabbitmq-server /usr/lib/erlang/bin/erl; do
  if [ ! -e "$f" ]; then
    echo "images.sh: $f is missing (rabbitmq-server is not installed): run hack/install-deps.sh" >&2
    exit 1
  fi
done
stage=.cache/demo/rabbitmq-root
rm -rf "$stage"
mkdir -p "$stage/usr/lib" "$stage/etc/rabbitmq" "$stage/var/lib/rabbitmq" "$stage/bin"
cp -a /usr/lib/erlang /usr/lib/rabbitmq "$stage/usr/lib/"
find /usr/lib/erlang /usr/lib/rabbitmq -type f -exec sh -c 'head -c4 "$1" | grep -q ELF && ldd "$1"' _ {} \; 2>/dev/null |
  awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | sort -u | while read -r lib; do
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done
printf 'loopback_users = none\nlisteners.tcp.default = 5672\n' > "$stage/etc/rabbitmq/rabbitmq.conf"
printf '[].\n' > "$stage/etc/rabbitmq/enabled_plugins"
cat > "$stage/bin/rabbitmq" <<'EOS'
#!/bin/sh
# The image's entrypoint: one node, rabbit@localhost, its files in /var/lib/rabbitmq.
export PATH=/usr/lib/erlang/bin:/bin HOME=/var/lib/rabbitmq RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_LOGS=- \
  RABBITMQ_MNESIA_BASE=/var/lib/rabbitmq/mnesia RABBITMQ_LOG_BASE=/var/lib/rabbitmq/log \
  RABBITMQ_CONFIG_FILE=/etc/rabbitmq/rabbitmq RABBITMQ_ENABLED_PLUGINS_FILE=/etc/rabbitmq/enabled_plugins
exec /usr/lib/rabbitmq/bin/rabbitmq-server
EOS
chmod 755 "$stage/bin/rabbitmq"
links=()
for a in sh dirname basename readlink sed cat mkdir id hostname uname grep tr date sleep ls rm env head cut printf echo; do
  links+=(-symlink "/bin/$a=busybox")
done
bin/mkimage -o "$out/rabbitmq.tar" -t tether.local/rabbitmq:dev -entrypoint /bin/rabbitmq "${links[@]}" \
  "$stage:/" /bin/busybox:/bin/busybox
# goaws, the SQS the queue-splitting tests split (it stands in for Amazon
# SQS: in memory, unsigned requests, the query protocol). Its queue
# "ip-visits" exists from the start; the split creates its own.
(cd tools && go build -trimpath -ldflags "-s -w" -o ../.cache/demo/goaws github.com/Admiral-Piett/goaws/app/cmd)
cat > .cache/demo/goaws.yaml <<'EOS'
Local:
  Host: goaws
  Port: 4100
  Region: us-east-1
  AccountId: "000000000000"
  LogToFile: false
  QueueAttributeDefaults:
    VisibilityTimeout: 30
    ReceiveMessageWaitTimeSeconds: 0
    MaximumMessageSize: 262144
  Queues:
    - Name: ip-visits
EOS
bin/mkimage -o "$out/goaws.tar" -t tether.local/goaws:dev -entrypoint '["/goaws","-config","/etc/goaws/goaws.yaml"]' \
  .cache/demo/goaws:/goaws .cache/demo/goaws.yaml:/etc/goaws/goaws.yaml
# The benchmarks' server (make bench), with busybox for `kubectl exec POD -- true`.
mkdir -p .cache/bench
go build -trimpath -ldflags "-s -w" -o .cache/bench/benchserver ./test/bench/benchserver
bin/mkimage -o "$out/tether-bench.tar" -t tether.local/tether-bench:dev -entrypoint /benchserver \
  -symlink /bin/sh=busybox -symlink /bin/true=busybox -symlink /bin/sleep=busybox \
  .cache/bench/benchserver:/benchserver /bin/busybox:/bin/busybox
echo "images.sh: wrote $(ls "$out" | wc -l) images to $out"
