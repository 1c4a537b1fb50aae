#!/usr/bin/env bash
# Rotation benchmark (issue 14): N identities' agents — N `warden-agent` processes — running
# against one lab environment, then an intermediate rotation (begin → offline sign → activate,
# ADR 0029): how long until every leaf and identity certificate moved to the new intermediate,
# the request rate at the server per second and per minute against the rate the reissue window
# configures, and the server's CPU per re-issued certificate side by side with the same number
# of raw `pki/sign` requests over one keep-alive connection in the same run. See
# docs/benchmarks.md.
#
#   bench/rotation/run.sh [N=300] [WINDOW_S=330]
#   BENCH_SMOKE=1 bench/rotation/run.sh      # CI: 3 agents, an 8 s window, debug builds, no figures kept
#
# Knobs (environment): RATE (the spec's `[ca] reissue_rate`, the configured rate the minutes are
# held to; default 150, 0 for none: then the window's mean is the configured rate), IDLE (seconds of server CPU with every agent running and nothing due, the
# background subtracted from both sides; default half the window, at least 60), ENROLL_JOBS (parallel enrollments; 3),
# WARDEN_BIN / AGENT_BIN to use already built binaries instead of building. `warden` (the lab,
# apply, enrollment, the rotation's CLI steps) is only the operator's tool here and is built in
# the dev profile; `warden-agent` is built as deployed (profile `agent`, as bench/agent does).
#
# BENCH_SMOKE=1 is the same script at a tiny size (scripts/test runs it, so a change that
# breaks the benchmark fails CI): N=3, WINDOW_S=8, IDLE=3, the debug binaries, nothing written
# to results/.
#
# Prints a Markdown table and writes every raw figure as JSON to
# bench/rotation/results/rotation-<UTC time>.json. The lab lives in a temporary directory; it and
# every agent are stopped and deleted on exit, also on failure or Ctrl-C. Everything listens on
# 127.0.0.1. At N=300 and a 330 s window, about 14 minutes after the builds.
set -euo pipefail

SMOKE=${BENCH_SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    N=${1:-3}
    WINDOW_S=${2:-8}
    IDLE=${IDLE:-3}
    # Six certificates in one minute: far under the ceiling, but activate's check runs.
    RATE=${RATE:-100}
else
    N=${1:-300}
    # 600 certificates under 150 a minute: activate accepts a window of about 302 s or more
    # (ADR 0035); 330 s leaves the spread its noise.
    WINDOW_S=${2:-330}
    RATE=${RATE:-150}
    # Two of the agents' issuer-watch periods (a quarter of the window), at least a minute: the
    # agents start together, so a shorter span would catch their looks in phase.
    IDLE=${IDLE:-$(( WINDOW_S / 2 > 60 ? WINDOW_S / 2 : 60 ))}
fi
ENROLL_JOBS=${ENROLL_JOBS:-3}
ENV_NAME=bench
STEP_TIMEOUT=${STEP_TIMEOUT:-600}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
helper=(python3 "$here/bench.py")
results="$here/results"

[[ $RATE =~ ^[0-9]+$ ]] || { echo "usage: RATE must be a whole number of certificates a minute (0: no ceiling)" >&2; exit 2; }
for v in "$N" "$WINDOW_S" "$IDLE" "$ENROLL_JOBS"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [N] [WINDOW_S] (positive integers; IDLE, ENROLL_JOBS too)" >&2; exit 2; }
done
# activate waits a quarter of the window, and agents look every quarter: below 4 s the window
# rounds to nothing.
((WINDOW_S >= 4)) || { echo "bench: WINDOW_S must be at least 4 seconds" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$here/../lib.sh"

bench_bin warden "${WARDEN_BIN:-}" warden dev
# The deployment build (docs/agent.md, Deployment), as bench/agent measures it.
bench_bin agent_bin "${AGENT_BIN:-}" warden-agent agent AWS_LC_SYS_NO_JITTER_ENTROPY=1
bench_bao
command -v openssl >/dev/null || die "the reference builds its CSRs with the openssl command; install it"

bench_work warden-rotbench
bench_stop_first() { # every agent, in its own process group, before the lab
    "${helper[@]}" stop --pids "$work/agent-pids" --grace 10 2>/dev/null || true
}
bench_step_hint() {
    case $1 in
        agents) echo "bench: an agent's log is in $work/hosts/$ENV_NAME/<identity>/state/agent.log" \
                     "(deleted on exit; rerun with fewer agents to keep it short)" >&2 ;;
    esac
}

# PERF_DIR=<dir>: also record the server with `perf` (call graphs) during the window and the
# reference and the background after it, into <dir>/window.data, reference.data and idle.data,
# to see where its CPU goes.
perf_pid=
perf_start() {
    [[ -n ${PERF_DIR:-} ]] || return 0
    mkdir -p "$PERF_DIR"
    perf record -q -F 499 -g -p "$server_pid" -o "$PERF_DIR/$1.data" >/dev/null 2>&1 &
    perf_pid=$!
}
perf_stop() {
    [[ -n $perf_pid ]] || return 0
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=
}

spec="$work/spec.toml"
hosts="$work/hosts"
measure="$work/measure.json"
merge() { "${helper[@]}" merge --measure "$measure" "$@"; }
"${helper[@]}" spec --n "$N" --env "$ENV_NAME" --window "$WINDOW_S" --rate "$RATE" --out "$spec"
merge --set "config={\"n\": $N, \"window_s\": $WINDOW_S, \"rate\": $RATE, \"idle_s\": $IDLE, \"env\": \"$ENV_NAME\"}"

say "lab up in $lab (environment $ENV_NAME, $N identities applied, no lab agents)"
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
run_logged lab_up timeout "$STEP_TIMEOUT" "$warden" lab up --dir "$lab" --env "$ENV_NAME" \
    --spec "$spec" --no-agents --output json
server() { # address pid of the environment's OpenBao (the PID changes when activate restarts it)
    timeout 60 "$warden" lab status --dir "$lab" --output json 2>"$work/status.log" \
        | python3 -c 'import json,sys
for e in json.load(sys.stdin):
    if e["name"] == sys.argv[1]: print(e["address"], e["pid"])' "$ENV_NAME"
}
read -r addr server_pid < <(server)
[[ $addr == https://127.0.0.1:* ]] || die "the lab server listens on something else than 127.0.0.1: $addr"
[[ -r /proc/$server_pid/stat ]] || die "cannot find the OpenBao server's PID"
audit="$lab/envs/$ENV_NAME/bao/audit.log"
[[ -f $audit ]] || die "no audit log at $audit"

say "enrolling $N identities ($ENROLL_JOBS at a time)"
enroll_all() {
    seq 1 "$N" | xargs -P "$ENROLL_JOBS" -I{} sh -c \
        'n=$(printf "app-%05d" "$1"); exec timeout 120 "$2" identity enroll "$n" --env "$3" --lab "$4" \
            --root-dir "$5" --spec "$6" --output json >/dev/null' _ {} "$warden" "$ENV_NAME" "$lab" "$hosts" "$spec"
}
run_logged enroll enroll_all

say "starting $N warden-agent processes"
"$agent_bin" --version >/dev/null  # paged in once
run_logged agents timeout "$STEP_TIMEOUT" "${helper[@]}" start --cmd "$(python3 -c 'import json,sys;print(json.dumps(sys.argv[1:]))' "$agent_bin")" \
    --hosts "$hosts" --env "$ENV_NAME" --n "$N" --pids "$work/agent-pids"
run_logged delivered "${helper[@]}" wait-delivered --hosts "$hosts" --env "$ENV_NAME" --n "$N" \
    --pids "$work/agent-pids" --timeout "$STEP_TIMEOUT"
sleep 6 # the delivery reports (looked at every 5 s) are written; from here nothing is due

say "background: server CPU over ${IDLE}s with $N agents running, nothing due"
merge --set "audit_offset_idle=$(stat -c %s "$audit")"
run_logged idle "${helper[@]}" idle --pid "$server_pid" --seconds "$IDLE" --out "$work/idle.json"
merge --set "idle=@$work/idle.json"
say "reference: $((2 * N)) raw pki/sign over one keep-alive connection (before the rotation)"
run_logged ref_before timeout "$STEP_TIMEOUT" "${helper[@]}" reference --hosts "$hosts" --env "$ENV_NAME" --n "$N" \
    --pid "$server_pid" --address "$addr" --signs "$((2 * N))" --out "$work/ref-before.json"
merge --set "reference_before=@$work/ref-before.json"
say "what the agents' other requests cost, one kind at a time"
run_logged costs timeout "$STEP_TIMEOUT" "${helper[@]}" costs --hosts "$hosts" --env "$ENV_NAME" --n "$N" \
    --pid "$server_pid" --address "$addr" --each "$(( N < 100 ? 2 * N : 200 ))" --out "$work/costs.json"
merge --set "costs=@$work/costs.json"

say "rotation: begin, offline sign, activate (window ${WINDOW_S}s)"
run_logged begin timeout 120 "$warden" ca rotate-intermediate begin --env "$ENV_NAME" \
    --csr-out "$work/new.csr" --spec "$spec" --lab "$lab"
# The new intermediate keeps the old one's name constraints (activate refuses it otherwise).
permitted=()
while read -r d; do
    [[ -n $d ]] && permitted+=(--permitted-dns "$d")
done < <(openssl x509 -in "$hosts/$ENV_NAME/app-00001/out/tls/chain.pem" -noout -ext nameConstraints 2>/dev/null \
    | sed -n 's/^ *DNS:\(.*\)$/\1/p')
((${#permitted[@]})) || die "could not read the intermediate's name constraints"
run_logged sign timeout 120 "$warden" ca sign-intermediate --env "$ENV_NAME" --bundle "${permitted[@]}" \
    --dir "$lab/ca" --csr "$work/new.csr" --out "$work/new-intermediate.pem" \
    --passphrase-file "$lab/custody/ca-passphrase"
run_logged activate timeout "$((STEP_TIMEOUT + WINDOW_S))" "$warden" ca rotate-intermediate activate \
    --env "$ENV_NAME" --cert "$work/new-intermediate.pem" --spec "$spec" --lab "$lab" --output json
# From the PID file, not `lab status`: no request of ours in the window.
server_pid=$(cat "$lab/envs/$ENV_NAME/bao/server.pid")
[[ -r /proc/$server_pid/stat ]] || die "cannot find the OpenBao server's PID after activate"
merge --set "activate=@$work/activate.out"
say "watching $((2 * N)) certificates move (at most ${WINDOW_S}s + a quarter, plus slack)"
perf_start window
run_logged watch "${helper[@]}" watch --hosts "$hosts" --env "$ENV_NAME" --n "$N" --pid "$server_pid" \
    --new-intermediate "$work/new-intermediate.pem" --timeout "$((WINDOW_S * 3 / 2 + 60))" \
    --out "$work/watch.json"
perf_stop
merge --set "watch=@$work/watch.json"

say "reference again: $((2 * N)) raw pki/sign (after the rotation)"
perf_start reference
run_logged ref_after timeout "$STEP_TIMEOUT" "${helper[@]}" reference --hosts "$hosts" --env "$ENV_NAME" --n "$N" \
    --pid "$server_pid" --address "$addr" --signs "$((2 * N))" --out "$work/ref-after.json"
perf_stop
merge --set "reference_after=@$work/ref-after.json"
say "reference at the rotation's pace: $((2 * N)) raw pki/sign spread at random over ${WINDOW_S}s"
run_logged ref_paced timeout "$((STEP_TIMEOUT + WINDOW_S))" "${helper[@]}" reference --hosts "$hosts" \
    --env "$ENV_NAME" --n "$N" --pid "$server_pid" --address "$addr" --signs "$((2 * N))" \
    --pace "$WINDOW_S" --out "$work/ref-paced.json"
merge --set "reference_paced=@$work/ref-paced.json"
say "background again: ${IDLE}s idle, the server process activate restarted"
perf_start idle
run_logged idle_after "${helper[@]}" idle --pid "$server_pid" --seconds "$IDLE" --out "$work/idle-after.json"
perf_stop
merge --set "idle_after=@$work/idle-after.json"

# ------------------------------------------------------------------ report
git_rev=$(bench_git_rev)
agent_profile=agent
[[ -n ${AGENT_BIN:-} ]] && agent_profile="given ($AGENT_BIN)"
[[ -z ${AGENT_BIN:-} && $SMOKE == 1 ]] && agent_profile=debug
python3 - "$work/env.json" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$loadavg_start" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$("$bao" version | head -n1)" \
    "$("$agent_bin" --version) ($git_rev)" "$agent_profile" <<'EOF'
import json, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
json.dump({"date": sys.argv[2], "nproc": sys.argv[3], "cpu": cpu, "loadavg_start": sys.argv[4],
           "loadavg_end": sys.argv[5], "bao_version": sys.argv[6], "agent_version": sys.argv[7],
           "agent_profile": sys.argv[8]}, open(sys.argv[1], "w"))
EOF
merge --set "environment=@$work/env.json"
bench_out rotation
say "results"
smoke_flag=()
[[ $SMOKE == 1 ]] && smoke_flag=(--smoke)
timeout "$STEP_TIMEOUT" "${helper[@]}" report --measure "$measure" --audit "$audit" --out "$out" "${smoke_flag[@]}"
bench_done
