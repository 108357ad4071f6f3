#!/usr/bin/env bash
# Restarts the local cluster's kube-apiserver (as an upgrade or a crash of the
# API server does), for the tests of what survives it.
#
#   restart-apiserver.sh   stop kube-apiserver by its recorded pid (SIGTERM,
#                          SIGKILL after 15 s), start it again with the same
#                          command line and environment, wait until /readyz
#                          answers, and print how long it was unavailable.
#
# On SIGTERM the API server stops listening at once but, with watches open,
# does not exit by itself: the connections it has (port-forward tunnels
# among them) keep working until the SIGKILL. Unavailable counts from the
# SIGTERM to the first /readyz that answers.
#
# The last line on stdout is
#   kube-apiserver unavailable for 6.123s (stopping 0.412s, starting until /readyz 5.711s)
# Everything else goes to stderr. Exit 1 if it is not running (hack/cluster/up.sh
# starts it) or not ready within 120 s after the restart.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$TETHER_CLUSTER_DIR/lib.sh"

[ $# = 0 ] || { echo "usage: $0" >&2; exit 2; }
need_root
# Not while up.sh or down.sh runs: they start and stop the same daemon.
lock_cluster

NAME=kube-apiserver
pid=$(daemon_pid "$NAME") || die "$NAME is not running (hack/cluster/up.sh starts it)"

# Its command line and environment, as start_daemon gave them (NUL-separated).
mapfile -d '' -t args < "/proc/$pid/cmdline" || die "reading the command line of $NAME (pid $pid)"
mapfile -d '' -t envs < "/proc/$pid/environ" || die "reading the environment of $NAME (pid $pid)"
[ ${#args[@]} -gt 0 ] || die "$NAME (pid $pid) has an empty command line"
# And its working directory (/ if that is gone by now).
cwd=$(readlink "/proc/$pid/cwd") || die "reading the working directory of $NAME (pid $pid)"
[ -d "$cwd" ] || cwd=/
# The binary runs from the build cache: it must still be there to start again.
[ -x "${args[0]}" ] || die "$NAME's binary ${args[0]} is gone; run hack/cluster/up.sh instead"
# The same command line that up.sh recorded (else up.sh would restart it
# once more with its own).
if [ "$(daemon_signature "${args[@]}")" != "$(cat "$RUN_DIR/$NAME.cmd" 2>/dev/null)" ]; then
  log "warning: $NAME's command line or configuration files differ from $RUN_DIR/$NAME.cmd; restarting it as it runs"
fi

# EPOCHREALTIME is seconds.microseconds: elapsed FROM TO in seconds, 3 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ready() { kc get --raw /readyz --request-timeout=2s >/dev/null 2>&1; }

ready || log "warning: $NAME (pid $pid) is not ready before the restart"
log "stopping $NAME (pid $pid)"
t_stop=$EPOCHREALTIME
stop_daemon "$NAME"
t_stopped=$EPOCHREALTIME

# Start it in the environment and directory it had: the caller's (a
# test's, a shell's) could carry proxy settings that the API server would
# use for its connections to the kubelet, or be a directory about to go.
(
  cd "$cwd"
  while read -r v; do unset "$v" 2>/dev/null || true; done < <(compgen -e)
  for kv in "${envs[@]}"; do export "${kv?}" 2>/dev/null || log "warning: cannot restore ${kv%%=*} in $NAME's environment"; done
  # Nor any file the caller has open: a daemon that inherits the fd of a
  # lock (flock(1) passes its own on) would hold it as long as it runs.
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
  start_daemon "$NAME" "${args[@]}"
)
pid=$(daemon_pid "$NAME") || die "$NAME did not start (log: $LOG_DIR/$NAME.log)"

deadline=$((SECONDS + 120))
until ready; do
  if ! daemon_pid "$NAME" >/dev/null; then
    tail -n 20 "$LOG_DIR/$NAME.log" >&2
    die "$NAME (pid $pid) exited after the restart (log: $LOG_DIR/$NAME.log)"
  fi
  if ((SECONDS >= deadline)); then
    tail -n 20 "$LOG_DIR/$NAME.log" >&2
    die "$NAME (pid $pid) not ready within 120s after the restart (log: $LOG_DIR/$NAME.log)"
  fi
  sleep 0.1
done
t_ready=$EPOCHREALTIME
log "$NAME ready again (pid $pid)"
echo "$NAME unavailable for $(elapsed "$t_stop" "$t_ready")s (stopping $(elapsed "$t_stop" "$t_stopped")s, starting until /readyz $(elapsed "$t_stopped" "$t_ready")s)"
