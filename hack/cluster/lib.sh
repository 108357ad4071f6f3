# Functions shared by the hack/cluster scripts. Source env.sh first.
# shellcheck shell=bash

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "$(basename "$0") needs root (it runs containerd, kubelet, iptables)"; }

# Wait until CMD succeeds: wait_for DESCRIPTION SECONDS CMD [ARGS...]
wait_for() {
  local what=$1 secs=$2 start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start >= secs )); then log "timed out after ${secs}s waiting for $what"; return 1; fi
    sleep 1
  done
  log "$what: ok after $(( SECONDS - start ))s"
}

# lock_cluster: one up.sh or down.sh at a time on this machine.
lock_cluster() {
  exec 8> /run/lock/tether-cluster.lock
  if ! flock -n 8; then
    log "another up.sh or down.sh is running; waiting for it"
    flock 8
  fi
}

# --- build keys ---------------------------------------------------------------
# Every built artifact lives in $TETHER_CLUSTER_CACHE/bin/NAME-KEY, where KEY
# hashes what goes into it: the sources, the build flags and the Go version.
# A changed source or toolchain gives a new directory; nothing is ever stale.

# Build flags, part of the keys. -buildvcs=false: the binaries do not depend
# on the state of the checkout they are built in.
BUILD_GOFLAGS="-mod=readonly -buildvcs=false"
K8S_TAGS=providerless
K8S_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "${KUBE_VERSION#v1.}" | cut -d. -f1) -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
SMALL_LDFLAGS="-s -w"
# shellcheck disable=SC2034 # used by build.sh
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

go_id() { go env GOVERSION GOOS GOARCH | tr '\n' ' '; }

# hash_tree DIR...: content hash of the Go sources and module files under DIRs.
hash_tree() {
  local d
  for d in "$@"; do
    (cd "$d" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
  done
}

# artifact_key NAME: the cache key of artifact NAME (k8s, coredns, tools, mkimage, images).
artifact_key() {
  local name=$1
  {
    echo "recipe 1 $name $(go_id) $BUILD_GOFLAGS"
    case $name in
      k8s) echo "$K8S_TAGS $K8S_LDFLAGS"; hash_tree "$TETHER_CLUSTER_DIR/src/k8s" ;;
      coredns | tools) echo "$SMALL_LDFLAGS"; hash_tree "$TETHER_CLUSTER_DIR/src/$name" ;;
      mkimage)
        hash_tree "$TETHER_REPO_DIR/hack/mkimage"
        grep -E '^(github.com/google/go-containerregistry|github.com/klauspost/compress|github.com/opencontainers) ' "$TETHER_REPO_DIR/go.sum" ;;
      images)
        echo "$PAUSE_IMAGE $COREDNS_IMAGE $SMOKE_IMAGE"
        artifact_key tools; artifact_key coredns; artifact_key mkimage
        sha256sum < "$TETHER_CLUSTER_DIR/images.sh" ;;
      *) die "unknown artifact $name" ;;
    esac
  } | sha256sum | cut -c1-16
}
artifact_dir() { echo "$TETHER_CLUSTER_CACHE/bin/$1-$(artifact_key "$1")"; }
images_dir() { echo "$TETHER_CLUSTER_CACHE/images/$(artifact_key images)"; }

# --- daemons --------------------------------------------------------------------
# Each daemon has $TETHER_CLUSTER_STATE/run/NAME.pid with "PID STARTTIME" and
# NAME.cmd with its command line. A pid only counts as ours while its start
# time matches, so a stale pid file (after a crash or reboot) never makes us
# signal an unrelated process that reused the pid.

RUN_DIR=$TETHER_CLUSTER_STATE/run
LOG_DIR=$TETHER_CLUSTER_STATE/logs

proc_starttime() { # PID -> field 22 of /proc/PID/stat; fails for a zombie
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  # shellcheck disable=SC2086
  set -- $rest
  [ "$1" != Z ] || return 1
  echo "${20}"
}

# daemon_pid NAME: prints the pid of our running daemon NAME, fails if none.
daemon_pid() {
  local f=$RUN_DIR/$1.pid pid start
  [ -f "$f" ] || return 1
  read -r pid start < "$f" || return 1
  [ -n "$pid" ] && [ "$(proc_starttime "$pid")" = "$start" ] || return 1
  echo "$pid"
}

# daemon_signature CMD [ARGS...]: the command line, plus a hash of the files
# under $TETHER_CLUSTER_STATE it names (configs, certificates, kubeconfigs).
daemon_signature() {
  local a f files=()
  for a in "$@"; do
    f=${a#*=}
    case $f in "$TETHER_CLUSTER_STATE"/*) [ -f "$f" ] && files+=("$f") ;; esac
  done
  printf '%q ' "$@"
  [ ${#files[@]} -eq 0 ] || printf '# %s' "$(cat "${files[@]}" | sha256sum | cut -c1-16)"
}

# start_daemon NAME CMD [ARGS...]: starts CMD in its own session, logging to
# $LOG_DIR/NAME.log. A daemon already running with the same command line and
# configuration files is left alone; one whose command line or files changed
# is restarted.
start_daemon() {
  local name=$1; shift
  local cmd pid
  cmd=$(daemon_signature "$@")
  if pid=$(daemon_pid "$name"); then
    if [ "$(cat "$RUN_DIR/$name.cmd" 2>/dev/null)" = "$cmd" ]; then
      log "$name already running (pid $pid)"; return 0
    fi
    log "$name: command line or configuration changed, restarting"
    stop_daemon "$name"
  fi
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  printf '\n===== %s starting: %s\n' "$(date -Is)" "$cmd" >> "$LOG_DIR/$name.log"
  # setsid: own session, so that no terminal hangup or process-group kill of
  # the caller (make, CI) reaches the daemon. The shell writes its own pid and
  # then execs the daemon, so the pid is right even if setsid forks. The
  # daemon must not inherit the lock of up.sh (fd 8).
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$RUN_DIR/$name.pid.tmp" "$@" \
    >> "$LOG_DIR/$name.log" 2>&1 < /dev/null 8>&- 9>&- &
  local i
  for i in $(seq 50); do [ -s "$RUN_DIR/$name.pid.tmp" ] && break; sleep 0.1; done
  pid=$(cat "$RUN_DIR/$name.pid.tmp" 2>/dev/null) || die "$name did not start"
  rm -f "$RUN_DIR/$name.pid.tmp"
  echo "$pid $(proc_starttime "$pid")" > "$RUN_DIR/$name.pid"
  echo "$cmd" > "$RUN_DIR/$name.cmd"
  log "started $name (pid $pid, log $LOG_DIR/$name.log)"
}

# stop_daemons NAME...: SIGTERM to all of them, SIGKILL to those still
# running after 15 s; waits until they are gone.
stop_daemons() {
  local name pid i alive pids=()
  for name in "$@"; do
    if pid=$(daemon_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null
      pids+=("$name:$pid")
    fi
  done
  for ((i = 0; i < 100; i++)); do
    alive=0
    for name in "$@"; do daemon_pid "$name" >/dev/null && alive=1; done
    [ $alive = 0 ] && break
    if [ $i = 75 ]; then
      for name in "$@"; do
        pid=$(daemon_pid "$name") && { log "$name (pid $pid) ignored SIGTERM for 15s, killing it"; kill -KILL "$pid" 2>/dev/null; }
      done
    fi
    sleep 0.2
  done
  for name in "$@"; do rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.cmd"; done
  [ ${#pids[@]} -eq 0 ] || log "stopped ${pids[*]}"
}
stop_daemon() { stop_daemons "$1"; }

# write_if_changed FILE: writes stdin to FILE, atomically and only if the
# content differs. (kube-proxy exits when its config file is rewritten.)
write_if_changed() {
  local f=$1
  cat > "$f.tmp"
  if cmp -s "$f.tmp" "$f"; then rm -f "$f.tmp"; else mv "$f.tmp" "$f"; fi
}

# A kubectl of the cluster's version once built, else the one on PATH.
kubectl_bin() {
  if [ -x "$TETHER_CLUSTER_STATE/bin/kubectl" ]; then echo "$TETHER_CLUSTER_STATE/bin/kubectl"; else command -v kubectl; fi
}
kc() { "$(kubectl_bin)" --kubeconfig "$TETHER_CLUSTER_STATE/admin.kubeconfig" "$@"; }

# The cluster's mounts (deepest first): the kubelet's, containerd's and the
# pods' network namespaces.
our_mounts() {
  awk '{print $2}' /proc/self/mounts | grep -E '^(/var/lib/kubelet|/run/containerd|/var/lib/containerd)(/|$)|^/run/netns/cni-' | sort -r
}

# clean_netns unmounts the cluster's mounts and removes the pods' netns
# files, with nothing running. The CNI plugin makes /run/netns a bind mount
# of itself; a netns mounted before that stays mounted below it, hidden:
# unmount /run/netns to reach it (the plugin makes it again), and go round,
# as some are stacked, until nothing is left.
clean_netns() {
  local m
  for _ in 1 2 3 4 5; do
    for m in $(our_mounts); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    rm -f /run/netns/cni-* 2>/dev/null
    if mountpoint -q /run/netns 2>/dev/null && { [ -z "$(ls -A /run/netns 2>/dev/null)" ] || our_mounts | grep -q '^/run/netns/cni-'; }; then
      umount /run/netns 2>/dev/null || umount -l /run/netns 2>/dev/null || true
    fi
    [ -z "$(our_mounts)" ] && return 0
  done
  return 1
}
