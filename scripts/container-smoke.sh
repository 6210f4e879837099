#!/usr/bin/env bash
# Build the Dockerfile and prove the image works, without a Docker engine (CI's machines have none).
#
#   scripts/container-smoke.sh            from the repository root; needs root (buildah, mounts)
#
# 1. The shared container-smoke tool builds the image offline and runs it as a container engine
#    would (ENTRYPOINT + `--demo`, as the image's USER, node as the image's own process); it must
#    become ready and exit 0 within 5 s of SIGTERM, leaving no process behind.
# 2. The built image's root filesystem is then mounted read-only (as `docker run --read-only` and
#    Kubernetes' readOnlyRootFilesystem do) and the image's ENTRYPOINT runs in it as the image's
#    USER: it must serve flashback_private_chat_* series on /metrics, run V8's helper threads 10
#    nicer than its event loop, and again exit 0 on SIGTERM.
#    A write to the root is tried first, so this step cannot pass on a root that is not read-only.
#
# Exits non-zero, saying why, when the image does not build, does not serve data or does not
# exit cleanly. Environment: CONTAINER_SMOKE (the tool; default ../shared/tools/container-smoke),
# SMOKE_PORT (the read-only run's port; default 19877).
set -euo pipefail

cd "$(dirname "$0")/.."
TOOL=${CONTAINER_SMOKE:-../shared/tools/container-smoke}
PORT=${SMOKE_PORT:-19877}
BUILDAH=(buildah --storage-driver vfs)
IMAGE=localhost/project:smoke

fail() { printf 'container-smoke.sh: FAIL: %s\n' "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }
[[ -f $TOOL ]] || fail "no container-smoke tool at $TOOL (set CONTAINER_SMOKE)"
[[ $(id -u) == 0 ]] || fail "must run as root (buildah with vfs storage, mount namespaces)"
started=$SECONDS

step "build and probe the image as a container engine would run it"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# /-/ready answers 200 only once every demo unit has been polled, so the probe sees a working exporter
# through bash: CI's copy of shared/ may come without its execute bits
if ! bash "$TOOL" probe . http://127.0.0.1:9877/-/ready -- --demo 2>&1 | tee "$log"; then
  fail "the image did not build, or never became ready (see above)"
fi
grep -q '^probe http://127.0.0.1:9877/-/ready: 200$' "$log" || fail "the exporter never became ready"
# not anchored at the line start: the probed body may lack a final newline
grep -Eq 'stopped with SIGTERM: exit status 0 after [0-5] s$' "$log" ||
  fail "the exporter did not exit 0 within 5 s of SIGTERM: $(grep -o 'stopped with SIGTERM.*' "$log" || echo 'no exit reported')"
grep -q 'killed' "$log" && fail "processes had to be killed: $(grep killed "$log")"
grep -q 'outlived' "$log" && fail "$(grep outlived "$log")"

step "run the built image with a read-only root filesystem"
ctr=$("${BUILDAH[@]}" from --pull-never "$IMAGE")
pid=""
cleanup() {
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  "${BUILDAH[@]}" umount "$ctr" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT
root=$("${BUILDAH[@]}" mount "$ctr")
user=$("${BUILDAH[@]}" inspect --format '{{.OCIv1.Config.User}}' "$ctr")
workdir=$("${BUILDAH[@]}" inspect --format '{{.OCIv1.Config.WorkingDir}}' "$ctr")
mapfile -t entrypoint < <("${BUILDAH[@]}" inspect --format '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}' "$ctr")
mapfile -t environment < <("${BUILDAH[@]}" inspect --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$ctr")
[[ $user =~ ^[0-9]+(:[0-9]+)?$ ]] || fail "the image's USER '$user' is not numeric: Kubernetes' runAsNonRoot cannot verify it"
uid=${user%%:*}
gid=${user#*:}
[[ $uid != 0 ]] || fail "the image runs as root"
# mount points a container engine would provide; created in this throwaway container's layer
mkdir -p "$root/proc" "$root/dev"

# In a private mount namespace: the root bind-mounted read-only, proc and /dev on top, then the
# image's ENTRYPOINT chrooted into it as the image's USER with only the image's environment.
# Every step execs, so a background run's $! is the exporter itself and gets the SIGTERM.
# shellcheck disable=SC2016 # the inner script expands its own positional parameters
RO_RUN=(unshare --mount --propagation private sh -c '
  set -e
  root=$1 workdir=$2 uid=$3 gid=$4; shift 4
  mount --bind "$root" "$root"
  mount -o remount,bind,ro "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  envs=""
  while [ "$1" != -- ]; do envs="$envs $1"; shift; done; shift
  exec env -i $envs unshare --root="$root" --wd="${workdir:-/}" --setgid "$gid" --setuid "$uid" "$@"
' sh "$root" "$workdir" "$uid" "$gid" "${environment[@]}" --)

write_test=$("${RO_RUN[@]}" "${entrypoint[0]}" -e "require('node:fs').writeFileSync('/app/.write-test', 'x')" 2>&1) &&
  fail "a write to the root filesystem succeeded: the read-only run below would prove nothing"
grep -q EROFS <<<"$write_test" || fail "the write test failed for another reason than a read-only root: $write_test"

"${RO_RUN[@]}" "${entrypoint[@]}" --demo "--web.listen-address=127.0.0.1:$PORT" >"$log" 2>&1 &
pid=$!
ready=""
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/-/ready" 2>/dev/null; then ready=1; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
[[ -n $ready ]] || { tail -n 20 "$log"; fail "not ready within 60 s on a read-only root"; }
series=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -c '^flashback_private_chat_input_tokens{' || true)
[[ $series -gt 0 ]] || { tail -n 20 "$log"; fail "/metrics has no flashback_private_chat_input_tokens series"; }
echo "serving $series flashback_private_chat_input_tokens series from a read-only root as uid $uid"
# The exporter runs V8's helper threads 10 nicer than its event loop (src/threads/priority.ts):
# the image's Node names them, and its non-root USER may lower them.
base=$(awk '{print $19}' "/proc/$pid/stat")
want=$((base + 10 > 19 ? 19 : base + 10))
helpers=0
for task in /proc/"$pid"/task/*; do
  [[ $(cat "$task/comm" 2>/dev/null) == V8Worker ]] || continue
  nice=$(awk '{print $19}' "$task/stat")
  [[ $nice == "$want" ]] || fail "V8 helper thread ${task##*/} runs at nice $nice, not $want"
  helpers=$((helpers + 1))
done
[[ $helpers -gt 0 ]] || fail "the exporter's process has no V8Worker threads to lower"
echo "$helpers V8 helper threads at nice $want, the event loop at $base"
t0=$SECONDS
kill -TERM "$pid"
code=0
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "still running 6 s after SIGTERM"
wait "$pid" || code=$?
pid=""
[[ $code == 0 ]] || { tail -n 20 "$log"; fail "exit status $code after SIGTERM on a read-only root"; }
grep -q '"level":"error"' "$log" && { grep '"level":"error"' "$log"; fail "errors logged on a read-only root"; }
echo "stopped with SIGTERM: exit status 0 after $((SECONDS - t0)) s"

step "container smoke test passed in $((SECONDS - started)) s"
