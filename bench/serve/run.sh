#!/usr/bin/env bash
# Serve benchmark: what a running `warden serve` costs at rest — resident memory and CPU over
# 10 minutes — side by side with the OpenBao server it works against, measured over the same
# window in the same run. See docs/benchmarks.md ("Serve at rest").
#
#   bench/serve/run.sh
#   BENCH_SMOKE=1 bench/serve/run.sh      # CI: 2 s to settle, 3 s measured, the debug build, no figures kept
#
# Why the OpenBao server as the reference: it is the one process every serve deployment runs
# beside (serve keeps no state of its own), it is idle except for what serve asks of it, and
# its figures come from the same machine, load and window; a ratio to it says what serve adds
# to the environment it coordinates. (An idle `bao agent` or `warden-agent` is a per-host
# figure, docs/benchmarks.md "Agent"; serve runs once per environment.)
#
# What runs: a lab (`test`, one raft node, the example spec applied), serve enrolled with its
# own identity (`warden serve enroll`) and started as production runs it — `--identity-dir`, the
# default 30 s lease, 5 s tick, 1 min posture sweep and metrics collection, `/metrics` on
# loopback — then SETTLE seconds (default 60: the first sweep, rotations and renewals done),
# then IDLE seconds measured (default 600). CPU is utime + stime from /proc/PID/stat over the
# window; memory is VmRSS sampled every 5 s and Pss/Private from smaps_rollup at both ends.
#
# Knobs (environment): SETTLE, IDLE (seconds), WARDEN_BIN to use an already built binary
# instead of `cargo build --release`. Prints a Markdown table; raw figures go to
# bench/serve/results/serve-<UTC time>.json. The lab lives in a temporary directory; it and
# serve are stopped and deleted on exit, also on failure or Ctrl-C. Everything listens on
# 127.0.0.1.
set -euo pipefail

SMOKE=${BENCH_SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    SETTLE=${SETTLE:-2}
    IDLE=${IDLE:-3}
else
    SETTLE=${SETTLE:-60}
    IDLE=${IDLE:-600}
fi
ENV_NAME=test
STEP_TIMEOUT=${STEP_TIMEOUT:-300}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
results="$here/results"
for n in "$SETTLE" "$IDLE"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "bench: SETTLE and IDLE are whole numbers of seconds" >&2; exit 2; }
done

# shellcheck source=bench/lib.sh
source "$here/../lib.sh"

bench_bin warden "${WARDEN_BIN:-}" warden
bench_work warden-serve-bench
bench_stop_first() { # serve, in its own process group, before the lab
    [[ -f $work/serve.pid ]] || return 0
    local pid; pid=$(cat "$work/serve.pid")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

spec="$repo/examples/lab/warden.toml"
on_lab=(--spec "$spec" --lab "$lab" --env "$ENV_NAME")
say "lab up in $lab (environment $ENV_NAME, example spec, no lab agents)"
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
run_logged lab_up timeout "$STEP_TIMEOUT" "$warden" lab up --dir "$lab" --env "$ENV_NAME" --no-agents
bao_pid=$(cat "$lab/envs/$ENV_NAME/bao/server.pid" 2>/dev/null) || die "no server.pid for $ENV_NAME"
kill -0 "$bao_pid" 2>/dev/null || die "the OpenBao server (pid $bao_pid) is not running"

say "serve enroll (its own certificate) and start"
run_logged enroll timeout 60 "$warden" serve enroll "${on_lab[@]}" --dir "$work/serve-id"
events="$work/serve.jsonl"
# Its own session, so the stop takes its whole process group; nothing from the shell's
# environment but the basics.
setsid env -i PATH="$PATH" HOME="${HOME:-/root}" NO_COLOR=1 \
    "$warden" serve "${on_lab[@]}" --identity-dir "$work/serve-id" --id bench \
    --metrics-listen 127.0.0.1:0 -o json </dev/null >"$events" 2>"$work/serve.log" &
echo $! >"$work/serve.pid"
serve_pid=$(cat "$work/serve.pid")
for _ in $(seq 100); do
    grep -q '"event":"leader"' "$events" 2>/dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || { tail -n 20 "$work/serve.log" >&2; die "serve exited"; }
    sleep 0.2
done
grep -q '"event":"leader"' "$events" || { tail -n 20 "$work/serve.log" >&2; die "serve never took the lease"; }

git_rev=$(bench_git_rev)
env_json=$(python3 - "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$loadavg_start" \
    "$("$warden" --version) ($git_rev)" <<'PY'
import json, sys
cpu = ""
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except StopIteration:
    pass
print(json.dumps({"date": sys.argv[1], "nproc": sys.argv[2], "cpu": cpu, "loadavg_start": sys.argv[3],
                  "warden_version": sys.argv[4]}))
PY
)
bench_out serve
say "measuring serve (pid $serve_pid) and the OpenBao server (pid $bao_pid): ${SETTLE}s to settle, ${IDLE}s at rest"
timeout $((SETTLE + IDLE + 120)) python3 "$here/bench.py" measure \
    --serve-pid "$serve_pid" --ref-pid "$bao_pid" --ref-label "OpenBao server (bao server)" \
    --settle "$SETTLE" --idle "$IDLE" --events "$events" --env-json "$env_json" --out "$out" \
    || { tail -n 20 "$work/serve.log" >&2; die "the measurement failed"; }
# Serve must have stayed healthy: no failed run, no error event.
if grep -q '"event":"error"\|"outcome":"failed"' "$events"; then
    grep '"event":"error"\|"outcome":"failed"' "$events" | tail -n 5 >&2
    die "serve reported errors or failed runs during the benchmark"
fi
bench_done
