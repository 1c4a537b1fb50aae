#!/usr/bin/env bash
# Agent benchmark: Warden's agent — the agent-only binary `warden-agent` as deployed on hosts —
# and OpenBao's own `bao agent` doing the same work against one lab environment at the same
# time — one leaf certificate, one KV secret, one CA chain — and what each costs: resident and
# private memory after 60 s (with what is resident, per mapping), CPU while idle for a further
# 60 s, and the time from start to the first complete render. See docs/benchmarks.md.
#
#   bench/agent/run.sh
#   BENCH_SMOKE=1 bench/agent/run.sh      # CI: one short run, 3 s windows, debug builds, no figures kept
#
# Knobs (environment): RENDER_RUNS (short start→render→stop runs per agent before the long
# run; default 3), SETTLE (seconds before memory is read; 60), IDLE (idle CPU window; 60),
# AGENT=warden to measure `warden agent` (the full CLI, release profile) instead of
# `warden-agent`, WARDEN_BIN / AGENT_BIN to use already built binaries instead of building
# (`warden` sets up the lab and enrolls; `warden-agent` is measured).
#
# BENCH_SMOKE=1 is the same script at a tiny size (scripts/test runs it, so a change that
# breaks the benchmark fails CI): RENDER_RUNS=1, SETTLE=3, IDLE=3, the debug binaries, and
# nothing written to results/.
#
# Prints a Markdown table and writes every raw figure as JSON to
# bench/agent/results/agent-<UTC time>.json. The lab lives in a temporary directory; it and
# both agents are stopped and deleted on exit, also on failure or Ctrl-C. Everything listens
# on 127.0.0.1. About 3 minutes, excluding the two builds.
set -euo pipefail

SMOKE=${BENCH_SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
    RENDER_RUNS=${RENDER_RUNS:-1}
    SETTLE=${SETTLE:-3}
    IDLE=${IDLE:-3}
else
    RENDER_RUNS=${RENDER_RUNS:-3}
    SETTLE=${SETTLE:-60}
    IDLE=${IDLE:-60}
fi
ENV_NAME=test            # an environment of the example spec: its identities are applied there
IDENTITY=billing
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
AGENT=${AGENT:-warden-agent}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
results="$here/results"

for n in "$RENDER_RUNS" "$SETTLE" "$IDLE"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "bench: RENDER_RUNS, SETTLE and IDLE are whole numbers" >&2; exit 2; }
done
[[ $AGENT == warden-agent || $AGENT == warden ]] \
    || { echo "bench: AGENT is warden-agent (default) or warden" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$here/../lib.sh"

# ------------------------------------------------------------------ binaries
bench_bin warden "${WARDEN_BIN:-}" warden
if [[ $AGENT == warden ]]; then
    agent_bin=$warden
else
    # The deployment build (docs/agent.md, Deployment): the size-optimised `agent` profile, and
    # aws-lc seeded from the OS alone (getrandom), without its CPU-jitter source, which costs
    # every new process ≈ 40–50 ms of CPU before its first TLS handshake.
    bench_bin agent_bin "${AGENT_BIN:-}" warden-agent agent AWS_LC_SYS_NO_JITTER_ENTROPY=1
fi
if [[ $AGENT == warden ]]; then
    agent_cmd=("$agent_bin" agent)
else
    agent_cmd=("$agent_bin")
fi
bench_bao

# ------------------------------------------------------------------ the lab, always cleaned up
bench_work warden-agent-bench
bench_stop_first() { # the agents, in their own process groups, before the lab
    [[ -f $work/agent-pids ]] || return 0
    while read -r pid; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done <"$work/agent-pids"
    sleep 0.5
    while read -r pid; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done <"$work/agent-pids"
}

say "lab up in $lab (environment $ENV_NAME, example spec, no lab agents)"
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
run_logged lab_up timeout "$STEP_TIMEOUT" "$warden" lab up --dir "$lab" --env "$ENV_NAME" --no-agents
run_logged status timeout 60 "$warden" lab status --dir "$lab" --output json
read -r addr ca op_cert op_key op_mount < <(python3 - "$work/status.out" "$ENV_NAME" <<'EOF'
import json, sys
for e in json.load(open(sys.argv[1])):
    if e["name"] == sys.argv[2]:
        print(e["address"], e["ca_bundle"], e["operator_cert"], e["operator_key"], e["operator_auth_mount"])
EOF
)
[[ $addr == https://127.0.0.1:* ]] || die "the lab server listens on something else than 127.0.0.1: $addr"

# Two enrollments of the same identity: each agent gets its own key and client certificate.
w_root="$work/warden-host"
b_root="$work/bao-host"
for root in "$w_root" "$b_root"; do
    run_logged "enroll-$(basename "$root")" timeout 60 "$warden" identity enroll "$IDENTITY" \
        --env "$ENV_NAME" --lab "$lab" --root-dir "$root" --spec "$repo/examples/lab/warden.toml"
done
w_dir="$w_root/$ENV_NAME/$IDENTITY"
b_dir="$b_root/$ENV_NAME/$IDENTITY"
domain="$ENV_NAME.warden.internal"
cn="$IDENTITY.$domain"
san="$IDENTITY-api.$domain"

say "setting up the reference's access (bao CLI, lab root token)"
(
    # The lab has no root token after bootstrap: log in as the lab operator with its certificate
    # (token never echoed, never stored in ~/.vault-token). A benchmark against a throwaway lab
    # is the only place Warden hands a token to a child's environment.
    export BAO_ADDR="$addr" BAO_CACERT="$ca" BAO_CLIENT_CERT="$op_cert" BAO_CLIENT_KEY="$op_key"
    BAO_TOKEN=$("$bao" login -no-store -token-only -method=cert -path="$op_mount" name=lab); export BAO_TOKEN
    # The one secret both agents render (not a real credential).
    "$bao" kv put -mount=kvv2 "$IDENTITY/config" user=bench mode=benchmark >/dev/null
    # `bao agent`'s pkiCert can only *issue* (the server makes the key; templates cannot build a
    # CSR), while the identity's own policy grants only `sign`. The reference therefore logs in
    # through a copy of the identity's cert role whose policy adds `issue` on the same PKI role.
    { "$bao" policy read "$IDENTITY"
      printf '\npath "pki_int/issue/%s" {\n  capabilities = ["create", "update"]\n}\n' "$IDENTITY"
    } >"$work/bench-bao.hcl"
    "$bao" policy write bench-bao-agent "$work/bench-bao.hcl" >/dev/null
    "$bao" read -format=json "auth/cert/certs/$IDENTITY" | python3 -c '
import json, sys
d = json.load(sys.stdin)["data"]
body = {k: d[k] for k in ("certificate", "allowed_common_names", "token_ttl", "token_max_ttl") if k in d}
body["token_policies"] = ["bench-bao-agent"]
body["token_no_default_policy"] = True
json.dump(body, open(sys.argv[1], "w"))' "$work/bench-role.json"
    "$bao" write auth/cert/certs/bench-bao "@$work/bench-role.json" >/dev/null
) 2>"$work/setup.log" || { tail -n 20 "$work/setup.log" >&2; die "setting up the reference failed"; }

# ------------------------------------------------------------------ the two configurations
# warden: the enrolled identity and login, and exactly three outputs.
cat >"$w_dir/agent.toml" <<EOF
# Benchmark configuration (bench/agent/run.sh): the enrolled identity, three outputs.
version = 1

[identity]
name        = "$IDENTITY"
kind        = "app"
env         = "$ENV_NAME"
common_name = "$IDENTITY.identity.$domain"

[openbao]
address = "$addr"
ca_file = "trust/ca.pem"

[auth]
method        = "cert"
mount         = "cert"
role          = "$IDENTITY"
policy        = "$IDENTITY"
cert_file     = "identity/client.crt"
key_file      = "identity/client.key"
pki_mount     = "pki_int"
identity_role = "$IDENTITY-identity"

[[output]]
name        = "tls"
type        = "certificate"
pki_mount   = "pki_int"
role        = "$IDENTITY"
common_name = "$cn"
sans        = ["$san"]
ttl         = "72h"
key_type    = "ec-p256"
dir         = "out/tls"

[[output]]
name     = "config"
type     = "template"
contents = '{{ kv("kvv2", "$IDENTITY/config") | tojson }}'
path     = "out/config.json"
mode     = "0600"

[[output]]
name       = "ca"
type       = "ca_chain"
pki_mount  = "pki_int"
path       = "out/chain.pem"
full_chain = true

[health]
listen = "127.0.0.1:0"

[control]
socket = "state/control.sock"
EOF

# bao agent: cert auto-auth with its own enrollment, the same three things as templates.
b_out="$work/bao-out"
mkdir -p "$work/bao"
cat >"$work/bao/agent.hcl" <<EOF
pid_file = "$work/bao/agent.pid"

vault {
  address     = "$addr"
  ca_cert     = "$b_dir/trust/ca.pem"
  client_cert = "$b_dir/identity/client.crt"
  client_key  = "$b_dir/identity/client.key"
}

auto_auth {
  method "cert" {
    mount_path = "auth/cert"
    config = {
      name        = "bench-bao"
      ca_cert     = "$b_dir/trust/ca.pem"
      client_cert = "$b_dir/identity/client.crt"
      client_key  = "$b_dir/identity/client.key"
    }
  }
}

template_config {
  exit_on_retry_failure = true
}

template {
  destination = "$b_out/cert.pem"
  perms       = "0644"
  contents    = <<EOT
{{- with pkiCert "pki_int/issue/$IDENTITY" "common_name=$cn" "alt_names=$san" "ttl=72h" -}}
{{ .Cert }}{{ .CA }}{{ .Key | writeToFile "$b_out/key.pem" "" "" "0600" }}
{{- end -}}
EOT
}

template {
  destination = "$b_out/config.json"
  perms       = "0600"
  contents    = "{{ with secret \"kvv2/data/$IDENTITY/config\" }}{{ .Data.data | toJSON }}{{ end }}"
}

template {
  destination = "$b_out/chain.pem"
  perms       = "0644"
  contents    = "{{ with secret \"pki_int/cert/ca_chain\" }}{{ .Data.certificate }}{{ end }}"
}
EOF

# Page both binaries in once, so every run measures a warm start.
"$agent_bin" --version >/dev/null
"$bao" version >/dev/null

# ------------------------------------------------------------------ measure
git_rev=$(bench_git_rev)
env_json=$(python3 - "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$loadavg_start" \
    "$("$bao" version | head -n1)" "$("$agent_bin" --version) ($git_rev)" <<'EOF'
import json, platform, sys
cpu = ""
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except StopIteration:
    pass
print(json.dumps({"date": sys.argv[1], "nproc": sys.argv[2], "cpu": cpu, "loadavg_start": sys.argv[3],
                  "bao_version": sys.argv[4], "warden_version": sys.argv[5]}))
EOF
)
bench_out agent
say "measuring: $RENDER_RUNS short runs each, then both together for ${SETTLE}s + ${IDLE}s"
j() { python3 -c 'import json,sys;print(json.dumps(sys.argv[1:]))' "$@"; }
timeout $((STEP_TIMEOUT + SETTLE + IDLE)) python3 "$here/bench.py" measure --work "$work" \
    --warden-cmd "$(j "${agent_cmd[@]}" --config "$w_dir/agent.toml")" \
    --warden-label "${agent_cmd[*]##*/}" \
    --warden-files "$(j "$w_dir/out/tls/cert.pem" "$w_dir/out/config.json" "$w_dir/out/chain.pem")" \
    --warden-clean "$(j "$w_dir/out" "$w_dir/state")" \
    --bao-cmd "$(j "$bao" agent "-config=$work/bao/agent.hcl")" \
    --bao-files "$(j "$b_out/cert.pem" "$b_out/config.json" "$b_out/chain.pem")" \
    --bao-clean "$(j "$b_out")" \
    --runs "$RENDER_RUNS" --settle "$SETTLE" --idle "$IDLE" --env-json "$env_json" --out "$out" \
    || { for f in "$work"/warden-agent.log "$work"/bao-agent.log; do
             [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
         die "the measurement failed"; }
python3 - "$out" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r["environment"]["loadavg_end"] = sys.argv[2]
json.dump(r, open(sys.argv[1], "w"), indent=2)
EOF
bench_done
