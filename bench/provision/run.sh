#!/usr/bin/env bash
# Provisioning benchmark: `warden apply` of N identities against a fresh lab, side by side with
# the same objects written over one raw keep-alive mTLS connection (the reference) and by a
# shell loop of `bao` CLI calls (how the seeds provision). See docs/benchmarks.md.
#
#   bench/provision/run.sh [N_IDENTITIES=1000] [N_CLI=100]
#   BENCH_SMOKE=1 bench/provision/run.sh      # CI: 4 identities, debug build, no figures kept
#
# Phases: the reference, `warden plan`, `warden apply`, the no-op re-apply, `warden posture`
# and `warden evidence export` of the spec's one evidence component (every credential), each
# with Warden's peak resident memory, then the reference again and the `bao` CLI loop.
#
# Knobs (environment): REPORTS=0 to skip posture with every identity's delivery report (as data,
# then as KV custom metadata: ADR 0036), EVIDENCE_PHASE=0 to skip the evidence export, =try to report its failure
# (one packet over every credential grows with N) instead of failing the run, RAW_APPS (apps the reference writes per run, 4 writes each; default 250,
# i.e. 1,000 writes), COMPARE_C1=0 to skip the --concurrency 1 pass (and its second OpenBao
# server), WARDEN_BIN to use an already built binary instead of `cargo build --release`.
#
# BENCH_SMOKE=1 is the same script at a tiny size (scripts/test runs it, so a change that
# breaks the benchmark fails CI): N_IDENTITIES=4, N_CLI=2, RAW_APPS=2, no --concurrency 1 pass,
# the debug binary the tests already built, and nothing written to results/.
#
# Prints a Markdown table and writes every raw figure as JSON to
# bench/provision/results/provision-<UTC time>.json. The lab lives in a temporary directory and
# is stopped and deleted on exit, also on failure or Ctrl-C. Everything listens on 127.0.0.1.
set -euo pipefail

SMOKE=${BENCH_SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    N_IDENTITIES=${1:-4}
    N_CLI=${2:-2}
    RAW_APPS=${RAW_APPS:-2}
    COMPARE_C1=${COMPARE_C1:-0}
else
    N_IDENTITIES=${1:-1000}
    N_CLI=${2:-100}
    RAW_APPS=${RAW_APPS:-250}
    COMPARE_C1=${COMPARE_C1:-1}
fi
ENV_NAME=bench
EVIDENCE=EV-BENCH   # the spec's one evidence component (bench.py EVIDENCE)
# The --concurrency 1 pass gets its own server, so both passes start from the same empty store.
ENV_C1=bench1
# Per-step bounds, seconds: a hung step fails the run instead of stalling it.
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
CLI_LOOP_BUDGET=${CLI_LOOP_BUDGET:-300}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
helper=(python3 "$here/bench.py")
results="$here/results"

for n in "$N_IDENTITIES" "$N_CLI" "$RAW_APPS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [N_IDENTITIES] [N_CLI] (positive integers)" >&2; exit 2; }
done

# shellcheck source=bench/lib.sh
source "$here/../lib.sh"

bench_bin warden "${WARDEN_BIN:-}" warden
bench_bao
bench_work warden-bench

# Named in the log of a failed step (run_logged in bench/lib.sh).
bench_step_hint() {
    if grep -q "exceeded maximum number of strings" "$work/$1.log"; then
        echo "bench: OpenBao refused a body with more than 1,000 JSON strings" \
             "(max_request_json_strings). Every list Warden keeps (ownership record, registry" \
             "credentials) is paged into one string per page (ADR 0014), so this is a" \
             "regression: find the record in the log above and page it" >&2
    fi
}

clk_tck=$(getconf CLK_TCK)
server_cpu() { # [pid] user+system CPU seconds of an OpenBao server so far
    awk -v t="$clk_tck" '{ printf "%.3f\n", ($14 + $15) / t }' "/proc/${1:-$server_pid}/stat"
}
measure="$work/measure.jsonl"
record() { "${helper[@]}" record --measure "$measure" "$@"; }

envs=$ENV_NAME
[[ $COMPARE_C1 == 1 ]] && envs="$ENV_NAME,$ENV_C1"
say "lab up in $lab (environments $envs)"
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
run_logged lab_up timeout "$STEP_TIMEOUT" "$warden" lab up --dir "$lab" --env "$envs"
run_logged status timeout 60 "$warden" lab status --dir "$lab" --output json
status="$work/status.json"
cp "$work/status.out" "$status"
read -r addr ca cert key op_mount server_pid < <(python3 - "$status" "$ENV_NAME" <<'EOF'
import json, sys
for e in json.load(open(sys.argv[1])):
    if e["name"] == sys.argv[2]:
        print(e["address"], e["ca_bundle"], e["operator_cert"], e["operator_key"],
              e["operator_auth_mount"], e["pid"])
EOF
)
[[ -n ${server_pid:-} && -r /proc/$server_pid/stat ]] || die "cannot find the OpenBao server's PID"
python3 - "$status" <<'EOF' || die "a lab server listens on something else than 127.0.0.1"
import json, sys
sys.exit(any(not e["address"].startswith("https://127.0.0.1:") for e in json.load(open(sys.argv[1]))))
EOF
if [[ $COMPARE_C1 == 1 ]]; then
    c1_pid=$(python3 -c 'import json,sys;print(next(e["pid"] for e in json.load(open(sys.argv[1])) if e["name"]==sys.argv[2]))' "$status" "$ENV_C1")
    [[ -r /proc/$c1_pid/stat ]] || die "cannot find the second OpenBao server's PID"
fi

# ------------------------------------------------------------------ inputs (untimed)
spec="$work/spec.toml"
"${helper[@]}" spec --apps "$N_IDENTITIES" --prefix app --envs "$envs" --out "$spec"
"${helper[@]}" setup --status "$status" --env "$ENV_NAME" --ca-out "$work/identity-ca.pem"
"${helper[@]}" bodies --apps "$N_CLI" --prefix cli --env "$ENV_NAME" --ca "$work/identity-ca.pem" \
    --dir "$work/cli-bodies" --list "$work/cli-list.tsv"
"$bao" version >/dev/null  # pages the 180 MB binary in once, so the loop measures warm starts

record --phase config --set "n_identities=$N_IDENTITIES" --set "n_cli=$N_CLI" \
    --set "raw_writes_per_run=$((RAW_APPS * 4))"

# ------------------------------------------------------------------ phases
raw_phase() { # phase prefix
    say "reference: $((RAW_APPS * 4)) writes over one keep-alive mTLS connection ($1)"
    local c0 c1
    c0=$(server_cpu)
    run_logged "$1" timeout "$STEP_TIMEOUT" "${helper[@]}" raw --status "$status" --env "$ENV_NAME" \
        --apps "$RAW_APPS" --prefix "$2" --ca "$work/identity-ca.pem" --out "$work/$1.json"
    c1=$(server_cpu)
    record --phase "$1" --server-cpu "$(elapsed "$c0" "$c1")" --merge "$work/$1.json"
    "${helper[@]}" check --status "$status" --env "$ENV_NAME" --cert-mount cert \
        --app "$(printf '%s-%05d' "$2" "$RAW_APPS")" || die "$1: the reference did not write its objects"
}

warden_phase() { # phase env server-pid concurrency command(apply|plan) [expect_noop]
    local phase=$1 env=$2 pid=$3 conc=$4 cmd=$5 noop=${6:-}
    say "warden $cmd ($phase: environment $env, --concurrency $conc)"
    local c0 c1 t0 t1
    c0=$(server_cpu "$pid"); t0=$(now)
    local args=("$cmd" --spec "$spec" --lab "$lab" --env "$env" --output json)
    case $cmd in
        apply|plan) args+=(--concurrency "$conc") ;;
        posture) ;;
        evidence) args=(evidence export "$EVIDENCE" --out "$work/evidence.json" --spec "$spec" \
                        --lab "$lab" --env "$env" --output json) ;;
    esac
    # posture exits 10-14 when a credential is not healthy (here: no agent has reported).
    local step=(timeout "$STEP_TIMEOUT" /usr/bin/time -f '%U %S %M' -o "$work/$phase.time"
        bash -c '"$@"; rc=$?; [[ $rc -eq 0 ]] || [[ $2 == posture && $rc -ge 10 && $rc -le 14 ]]'
        _ "$warden" "${args[@]}")
    if [[ $cmd == evidence && ${EVIDENCE_PHASE:-1} == try ]]; then
        # Measured, but a refusal is a result to report rather than the end of the run.
        if ! "${step[@]}" >"$work/$phase.out" 2>"$work/$phase.log"; then
            t1=$(now)
            local why
            why=$(grep -m1 '^error' "$work/$phase.log" | cut -c1-200)
            record --phase "$phase" --wall "$(elapsed "$t0" "$t1")" --objects $((N_IDENTITIES * 3)) \
                --set "failed=${why:-see its log}" \
                --set "max_rss_mb=$(tail -n1 "$work/$phase.time" | awk '{ printf "%.1f", $3 / 1024 }')"
            echo "bench: $phase failed: $why" >&2
            return
        fi
    else
        run_logged "$phase" "${step[@]}"
    fi
    t1=$(now); c1=$(server_cpu "$pid")
    local client_cpu objects writes rss_mb extra=()
    client_cpu=$(tail -n1 "$work/$phase.time" | awk '{ print $1 + $2 }')
    rss_mb=$(tail -n1 "$work/$phase.time" | awk '{ printf "%.1f", $3 / 1024 }')
    if [[ $cmd == posture || $cmd == evidence ]]; then
        objects=$((N_IDENTITIES * 3))
        writes=0
        if [[ $cmd == posture ]]; then
            local judged
            judged=$(python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));print(sum(len(p["credentials"]) for e in d["environments"] for p in e["purposes"]))' "$work/$phase.out")
            [[ $judged == "$objects" ]] || die "$phase: posture judged $judged credentials, expected $objects"
        else
            local listed
            listed=$(python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));print(sum(len(p["credentials"]) for p in d["payload"]["purposes"]))' "$work/evidence.json")
            [[ $listed == "$objects" ]] || die "$phase: the packet lists $listed credentials, expected $objects"
            extra=(--set "packet_bytes=$(stat -c %s "$work/evidence.json")")
        fi
    elif [[ $cmd == plan ]]; then
        objects=$(python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));print(d["creates"]+d["updates"])' "$work/$phase.out")
        writes=0
    else
        read -r objects writes < <(python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));print(d["creates"]+d["updates"], d["writes"])' "$work/$phase.out")
    fi
    if [[ -n $noop ]]; then
        [[ $writes == 0 && $objects == 0 ]] || die "$phase: the re-apply wrote $writes time(s) ($objects changes); it must be a no-op"
        objects=$noop # the objects it read and compared
    elif [[ $cmd == apply || $cmd == plan ]] && [[ $objects -lt $((N_IDENTITIES * 4)) ]]; then
        die "$phase: expected at least $((N_IDENTITIES * 4)) objects, got $objects"
    fi
    record --phase "$phase" --wall "$(elapsed "$t0" "$t1")" --objects "$objects" \
        --server-cpu "$(elapsed "$c0" "$c1")" --client-cpu "$client_cpu" --set "writes=$writes" \
        --set "max_rss_mb=$rss_mb" "${extra[@]}"
    last_objects=$objects
}

raw_phase raw_before rawa
warden_phase plan "$ENV_NAME" "$server_pid" 8 plan
warden_phase apply "$ENV_NAME" "$server_pid" 8 apply
apply_objects=$last_objects
"${helper[@]}" check --status "$status" --env "$ENV_NAME" --app app-00001 \
    || die "the reference would not write what warden writes"
warden_phase noop "$ENV_NAME" "$server_pid" 8 apply "$apply_objects"
warden_phase posture "$ENV_NAME" "$server_pid" 8 posture
if [[ ${REPORTS:-1} == 1 ]]; then
    # Every identity's agent reports (written untimed over 8 connections), first as agents
    # did before ADR 0036 (the entry's data: posture reads each), then as they do since (the
    # entry's custom metadata, newer: posture reads all of them in one scan).
    say "delivery reports for $N_IDENTITIES identities, as data"
    run_logged reports_data timeout "$STEP_TIMEOUT" "${helper[@]}" reports --status "$status" \
        --env "$ENV_NAME" --apps "$N_IDENTITIES" --format data
    warden_phase posture_data "$ENV_NAME" "$server_pid" 8 posture
    say "delivery reports for $N_IDENTITIES identities, as custom metadata"
    run_logged reports_metadata timeout "$STEP_TIMEOUT" "${helper[@]}" reports --status "$status" \
        --env "$ENV_NAME" --apps "$N_IDENTITIES" --format metadata
    warden_phase posture_reports "$ENV_NAME" "$server_pid" 8 posture
fi
[[ ${EVIDENCE_PHASE:-1} != 0 ]] && warden_phase evidence "$ENV_NAME" "$server_pid" 8 evidence
raw_phase raw_after rawb

say "bao CLI: one process per object, $((N_CLI * 4)) objects"
cli_objects=$(wc -l <"$work/cli-list.tsv")
c0=$(server_cpu); t0=$(now)
(
    # The lab has no root token after bootstrap: log in as the lab operator with its certificate
    # (token never echoed, never stored in ~/.vault-token). A benchmark against a throwaway lab
    # is the only place Warden hands a token to a child's environment.
    export BAO_ADDR="$addr" BAO_CACERT="$ca" BAO_CLIENT_CERT="$cert" BAO_CLIENT_KEY="$key"
    BAO_TOKEN=$("$bao" login -no-store -token-only -method=cert -path="$op_mount" name=lab); export BAO_TOKEN
    deadline=$((SECONDS + CLI_LOOP_BUDGET))
    while IFS=$'\t' read -r kind a b; do
        ((SECONDS < deadline)) || { echo "bench: the CLI loop exceeded ${CLI_LOOP_BUDGET}s" >&2; exit 1; }
        # `|| exit`: set -e does not apply inside a subshell whose status is tested.
        case $kind in
            policy) timeout 30 "$bao" policy write "$a" "$b" >/dev/null || exit 1 ;;
            write) timeout 30 "$bao" write "$a" "@$b" >/dev/null || exit 1 ;;
            *) exit 1 ;;
        esac
    done <"$work/cli-list.tsv"
) 2>"$work/cli.log" || { tail -n 20 "$work/cli.log" >&2; die "the bao CLI loop failed"; }
t1=$(now); c1=$(server_cpu)
"${helper[@]}" check --status "$status" --env "$ENV_NAME" --cert-mount cert \
    --app "$(printf 'cli-%05d' "$N_CLI")" || die "the bao CLI loop did not write its objects"
record --phase cli --wall "$(elapsed "$t0" "$t1")" --objects "$cli_objects" --server-cpu "$(elapsed "$c0" "$c1")"

if [[ $COMPARE_C1 == 1 ]]; then
    warden_phase apply_c1 "$ENV_C1" "$c1_pid" 1 apply
    warden_phase noop_c1 "$ENV_C1" "$c1_pid" 1 apply "$last_objects"
fi

# ------------------------------------------------------------------ report
git_rev=$(bench_git_rev)
record --phase environment --set "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" --set "nproc=$(nproc)" \
    --set "cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)" \
    --set "loadavg_start=$loadavg_start" --set "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" \
    --set "bao_version=$("$bao" version | head -n1)" \
    --set "warden_version=$("$warden" --version) ($git_rev)" \
    --set "python=Python $(python3 -c 'import platform;print(platform.python_version())')"
bench_out provision
say "results"
"${helper[@]}" report --measure "$measure" --out "$out"
bench_done
