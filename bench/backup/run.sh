#!/usr/bin/env bash
# Backup benchmark: `warden backup create` and `warden restore` of an environment holding N KV
# entries, side by side with `bao operator raft snapshot save / restore` of the same data in the
# same run, as ratios. See docs/benchmarks.md ("Backup and restore").
#
#   bench/backup/run.sh [SIZES=10000] [REPS=3]     e.g. bench/backup/run.sh 10000,100000
#   bench/backup/run.sh tiny                        200 entries, one repetition
#   BENCH_SMOKE=1 bench/backup/run.sh               CI: tiny, the debug binary the tests built,
#                                                   nothing written to results/
#
# Knobs (environment): WARDEN_BIN to use an already built binary instead of `cargo build
# --release`. Prints a Markdown table; raw figures go to bench/backup/results/backup-<time>.json.
# The lab lives in a temporary directory and is stopped and deleted on exit, also on failure
# or Ctrl-C. Everything listens on 127.0.0.1.
set -euo pipefail

SMOKE=${BENCH_SMOKE:-0}
SIZES=${1:-10000}
REPS=${2:-3}
if [[ $SMOKE == 1 ]]; then SIZES=tiny; fi
if [[ $SIZES == tiny ]]; then SIZES=200; REPS=1; fi
ENV_NAME=test
STEP_TIMEOUT=${STEP_TIMEOUT:-900}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
helper=(python3 "$here/bench.py")
results="$here/results"
IFS=, read -r -a sizes <<<"$SIZES"
for n in "${sizes[@]}" "$REPS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SIZES (comma-separated)|tiny] [REPS]" >&2; exit 2; }
done

# shellcheck source=bench/lib.sh
source "$here/../lib.sh"

bench_bin warden "${WARDEN_BIN:-}" warden
bench_bao
bench_work warden-bench-backup

measure="$work/measure.jsonl"
record() { printf '{"n": %s, "phase": "%s", "wall": %s, "bytes": %s}\n' "$1" "$2" "$3" "${4:-0}" >>"$measure"; }

say "lab up in $lab (environment $ENV_NAME)"
run_logged lab_up timeout "$STEP_TIMEOUT" "$warden" lab up --dir "$lab" --env "$ENV_NAME" --no-agents
run_logged status timeout 60 "$warden" lab status --dir "$lab" --output json
status="$work/status.json"; cp "$work/status.out" "$status"

# The spec: the lab's example plus backups to one recipient generated for this run.
run_logged keygen "$warden" custody keygen --identity "$work/backup.key"
recipient=$(grep -o 'age1[0-9a-z]*' "$work/keygen.out" "$work/keygen.log" | head -n1 | cut -d: -f2)
[[ -n $recipient ]] || die "custody keygen printed no recipient"
spec="$work/warden.toml"
cp "$repo/examples/lab/warden.toml" "$spec"
for f in "$repo"/examples/lab/*; do [[ -e $work/$(basename "$f") ]] || ln -s "$f" "$work/"; done
printf '\n[environments.%s.backup]\nrecipients = ["%s"]\ndir = "backups"\nkeep = 2\n' "$ENV_NAME" "$recipient" >>"$spec"
on_lab=(--spec "$spec" --lab "$lab" --env "$ENV_NAME")

# A break-glass token (restoring is root-only), opened with the lab custodians' shares before
# any data, so it survives every restore of this run.
token="$work/break-glass.token"
custody=$(timeout 60 "$warden" custody status "${on_lab[@]}" --output json)
mapfile -t pairs < <(python3 - "$custody" "$lab/envs/$ENV_NAME" <<'PY'
import json, sys
st = json.loads(sys.argv[1]); env = sys.argv[2]
led = st["ledger"]
for e in led["entries"][: led["threshold"]]:
    print("--share"); print(f"{env}/custody/shares/{e['custodian']}.test.share.age")
    print("--identity"); print(f"{env}/custody/custodians/{e['custodian']}.age-identity")
PY
)
run_logged break_glass timeout 120 "$warden" break-glass open "${on_lab[@]}" --reason BENCH-BACKUP \
    --ttl 4h --token-file "$token" "${pairs[@]}"
run_logged evidence_key timeout 60 "$warden" evidence key "${on_lab[@]}"
cp "$work/evidence_key.out" "$work/evidence.pem"

read -r addr ca cert key < <(python3 -c 'import json,sys;e=[x for x in json.load(open(sys.argv[1])) if x["name"]==sys.argv[2]][0];print(e["address"],e["ca_bundle"],e["operator_cert"],e["operator_key"])' "$status" "$ENV_NAME")
# `bao` reads the token from BAO_TOKEN: a benchmark against a throwaway lab is the only place
# a token is handed to a child's environment (as in bench/provision).
bao_env() { env BAO_ADDR="$addr" BAO_CACERT="$ca" BAO_CLIENT_CERT="$cert" BAO_CLIENT_KEY="$key" \
    BAO_TOKEN="$(cat "$token")" "$@"; }
"$bao" version >/dev/null

filled=0
for n in "${sizes[@]}"; do
    say "filling to $n KV entries"
    (( n > filled )) && run_logged "fill_$n" timeout "$STEP_TIMEOUT" "${helper[@]}" fill --status "$status" \
        --env "$ENV_NAME" --token-file "$token" --n $((n - filled)) --start "$filled"
    filled=$n
    for rep in $(seq 1 "$REPS"); do
        say "n=$n rep $rep: warden backup create"
        t0=$(now)
        run_logged "wsave_${n}_$rep" timeout "$STEP_TIMEOUT" "$warden" backup create "${on_lab[@]}" --output json
        t1=$(now)
        snap=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["snapshot"])' "$work/wsave_${n}_$rep.out")
        record "$n" warden_save "$(elapsed "$t0" "$t1")" "$(stat -c %s "$snap")"

        say "n=$n rep $rep: bao operator raft snapshot save"
        t0=$(now)
        run_logged "bsave_${n}_$rep" bao_env timeout "$STEP_TIMEOUT" "$bao" operator raft snapshot save "$work/bao.snap"
        t1=$(now)
        record "$n" bao_save "$(elapsed "$t0" "$t1")" "$(stat -c %s "$work/bao.snap")"

        say "n=$n rep $rep: warden restore"
        t0=$(now)
        run_logged "wrestore_${n}_$rep" timeout "$STEP_TIMEOUT" "$warden" restore "${on_lab[@]}" --from "$snap" \
            --key "$work/evidence.pem" --identity "$work/backup.key" --token-file "$token" \
            --force --confirm "$ENV_NAME" --output json
        t1=$(now)
        record "$n" warden_restore "$(elapsed "$t0" "$t1")"
        # The restore step alone (offline checks, decrypt and the restore call are before it;
        # plan and posture after it are Warden's extra): from the command's own report.
        record "$n" warden_restore_call "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["restored"]["seconds"])' "$work/wrestore_${n}_$rep.out")"
        record "$n" warden_restore_serving "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["restored"]["until_serving_seconds"])' "$work/wrestore_${n}_$rep.out")"
        "${helper[@]}" check --status "$status" --env "$ENV_NAME" --token-file "$token" --key $((n - 1)) --present \
            || die "after warden restore the last entry is missing"

        say "n=$n rep $rep: bao operator raft snapshot restore"
        t0=$(now)
        run_logged "brestore_${n}_$rep" bao_env timeout "$STEP_TIMEOUT" "$bao" operator raft snapshot restore "$work/bao.snap"
        t1=$(now)
        record "$n" bao_restore "$(elapsed "$t0" "$t1")"
        "${helper[@]}" check --status "$status" --env "$ENV_NAME" --token-file "$token" --key $((n - 1)) --present \
            || die "after bao restore the last entry is missing"
    done
done

if [[ $SMOKE == 1 ]]; then
    # The smoke run proves the script still works end to end; its figures mean nothing.
    "${helper[@]}" report --measure "$measure" --out "$work/smoke.json" >/dev/null
    echo "bench smoke: backup and restore ran end to end (no figures kept)" >&2
    exit 0
fi
mkdir -p "$results"
out="$results/backup-$(date -u +%Y%m%dT%H%M%SZ).json"
"${helper[@]}" report --measure "$measure" --out "$out"
echo "raw figures: $out" >&2
