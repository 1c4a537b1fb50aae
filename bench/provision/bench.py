#!/usr/bin/env python3
"""Helper for bench/provision/run.sh: spec generation, the raw keep-alive reference client,
body files for the `bao` CLI loop, a check that those bodies are the objects Warden writes,
and the report.

Standard library only, and independent of Warden's code on purpose: the reference must not
share a client, a TLS stack or a connection pool with the thing it measures.

The root token is read from the lab's custody file inside this process; it is never printed,
put in argv or in a child's environment.
"""

import http.client
import json
import os
import ssl
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import benchlib  # noqa: E402  (bench/benchlib.py: the command-line setup)
from benchlib import command  # noqa: E402

# Mirrors crates/warden-plan/src/desired.rs and policy.rs for an app with one secret `config`
# and the default certificate profile. `check` proves the mirror is exact against what
# `warden apply` wrote, so the reference and the CLI loop create the same objects.
PKI = "pki_int"
KV = "kvv2"
DOMAIN_FMT = "{env}.warden.internal"
IDENTITY_CERT_TTL = 30 * 24 * 3600
APP_CERT_TTL = 24 * 3600
TOKEN_TTL = 3600
TOKEN_MAX_TTL = 4 * 3600
# The raw reference and the CLI loop put their cert-auth roles on Warden's own `cert/` mount
# (under names apply never owns): the lab operator they act as may not enable auth backends
# outside the spec's, and `lab up` has already applied the example spec, which enables `cert/`.
BENCH_CERT_MOUNT = "cert"
# The spec's purposes (id, pattern, tier) and their one evidence component.
PURPOSES = [
    ("identity", "*/identity-cert", "ephemeral"),
    ("certificate", "*/certificate", "ephemeral"),
    ("config", "*/secret/config", "vault_kv"),
]
EVIDENCE = "EV-BENCH"


def render_policy(name):
    grants = [
        ("auth/token/lookup-self", ["read"]),
        ("auth/token/renew-self", ["update"]),
        ("auth/token/revoke-self", ["update"]),
        # `warden doctor` checks the identity's own capabilities (ADR 0023).
        ("sys/capabilities-self", ["update"]),
        (f"{PKI}/sign/{name}", ["create", "update"]),
        (f"{PKI}/sign/{name}-identity", ["create", "update"]),
        (f"{PKI}/cert/ca_chain", ["read"]),
        (f"{KV}/data/{name}/config", ["read"]),
        (f"{KV}/metadata/{name}/config", ["read"]),
        # A spec with purposes lets each identity report its deliveries (ADR 0006).
        (f"warden/data/delivered/{name}", ["create", "update", "read"]),
        # ... as its entry's custom metadata, read for every identity in one scan (ADR 0036).
        (f"warden/metadata/delivered/{name}", ["create", "update", "read"], ["custom_metadata"]),
        # ... and read the registry entry of its certificate's purpose before every issuance
        # (agents fail closed under a revoked purpose, ADR 0015).
        ("warden/data/registry/certificate", ["read"]),
    ]
    s = f"# managed-by: warden\n# identity: {name} (app)\n"
    for path, caps, *only in grants:
        caps_s = ", ".join(f'"{c}"' for c in caps)
        params = ""
        if only:
            each = ", ".join(f'"{p}" = []' for p in only[0])
            params = f"  allowed_parameters = {{ {each} }}\n"
        s += f'\npath "{path}" {{\n  capabilities = [{caps_s}]\n{params}}}\n'
    return s


def pki_role(names, ttl, server, client, no_store=True):
    return {
        "allowed_domains": names,
        "allow_bare_domains": True,
        "allow_subdomains": False,
        "allow_glob_domains": False,
        "allow_wildcard_certificates": False,
        "allow_any_name": False,
        "allow_localhost": False,
        "allow_ip_sans": False,
        "enforce_hostnames": True,
        "server_flag": server,
        "client_flag": client,
        "key_type": "ec",
        "ttl": ttl,
        "max_ttl": ttl,
        "no_store": no_store,
        "require_cn": True,
        "code_signing_flag": False,
        "email_protection_flag": False,
        "basic_constraints_valid_for_non_ca": False,
        "allowed_uri_sans": [],
        "allowed_other_sans": [],
        "ext_key_usage": [],
        "ext_key_usage_oids": [],
        "allowed_domains_template": False,
        "issuer_ref": "default",
        "key_bits": 256,
        # The requester may not pick the validity window (OpenBao honours `not_after` past
        # `max_ttl` otherwise).
        "not_after_bound": "forbid",
        "not_before_bound": "forbid",
    }


def app_objects(name, env, ca_pem, cert_mount):
    """The four objects of one app, in the order (kind, method, path, body)."""
    domain = DOMAIN_FMT.format(env=env)
    cn = f"{name}.identity.{domain}"
    return [
        ("policy", "PUT", f"sys/policies/acl/{name}", {"policy": render_policy(name)}),
        ("pki_role", "POST", f"{PKI}/roles/{name}",
         pki_role([f"{name}.{domain}"], APP_CERT_TTL, True, False)),
        ("identity_role", "POST", f"{PKI}/roles/{name}-identity",
         # Identity certificates are stored so they can be revoked by serial (ADR 0015).
         pki_role([cn], IDENTITY_CERT_TTL, False, True, no_store=False)),
        ("cert_role", "POST", f"auth/{cert_mount}/certs/{name}", {
            "certificate": ca_pem.strip(),
            "allowed_common_names": [cn],
            "display_name": name,
            "token_policies": [name],
            "token_no_default_policy": True,
            "token_period": 0,
            "token_explicit_max_ttl": 0,
            "token_ttl": TOKEN_TTL,
            "token_max_ttl": TOKEN_MAX_TTL,
        }),
    ]


def app_name(prefix, i):
    return f"{prefix}-{i:05d}"


# ---------------------------------------------------------------- one keep-alive connection


class Bao:
    """One persistent mTLS connection; refuses to silently reconnect (that would measure
    handshakes, not writes)."""

    def __init__(self, status):
        u = urlparse(status["address"])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(status["ca_bundle"])
        ctx.load_cert_chain(status["operator_cert"], status["operator_key"])
        self.conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)
        self.conn.connect()
        self._sock = self.conn.sock
        # No root token after bootstrap: the operator certificate logs in as the lab operator.
        self._token = ""
        login = self.call(
            "POST", f"auth/{status['operator_auth_mount']}/login", {"name": status["operator_role"]}
        )
        self._token = login["auth"]["client_token"]

    def __repr__(self):
        return "Bao(...)"

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-Vault-Token": self._token}
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, "/v1/" + path, body=data, headers=headers)
        r = self.conn.getresponse()
        payload = r.read()
        if self.conn.sock is not self._sock:
            raise SystemExit("bench: the reference client reconnected; results would be invalid")
        if r.status >= 300 and not (method == "GET" and r.status == 404):
            errs = ""
            try:
                errs = json.loads(payload).get("errors", "")
            except ValueError:
                pass
            raise SystemExit(f"bench: {method} {path} -> HTTP {r.status} {errs}")
        if r.status == 404 or not payload:
            return None
        return json.loads(payload)


def load_status(path, env):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    envs = doc if isinstance(doc, list) else doc.get("status", doc.get("environments", []))
    for e in envs:
        if e.get("name") == env:
            return e
    raise SystemExit(f"bench: environment {env} not in {path}")


def identity_ca(bao):
    doc = bao.call("GET", f"{PKI}/cert/ca")
    pem = (doc or {}).get("data", {}).get("certificate", "")
    if not pem.strip():
        raise SystemExit(f"bench: {PKI} has no intermediate")
    return pem


# ---------------------------------------------------------------- subcommands


def cmd_spec(a):
    envs = a.envs.split(",")
    out = ["# Generated by bench/provision/bench.py: the provisioning benchmark's spec.",
           "version = 1", ""]
    for env in envs:
        out += [f"[environments.{env}]", f'domain = "{DOMAIN_FMT.format(env=env)}"', ""]
    env_list = ", ".join(f'"{e}"' for e in envs)
    # Every credential needs a purpose before apply (ADR 0006): one purpose per kind, each
    # covering every app, so one registry entry lists N credentials (ADR 0014 pages it).
    for pid, pattern, tier in PURPOSES:
        out += [f"[purposes.{pid}]", f'description = "benchmark: every app\'s {pattern}"',
                'owner = "platform"', f'tier = "{tier}"', 'delivery = "agent_file"',
                'rotation = { interval = "20d", grace = "5d", max_age = "30d" }',
                f'evidence = "{EVIDENCE}"', f'covers = ["{pattern}"]', ""]
    for i in range(1, a.apps + 1):
        n = app_name(a.prefix, i)
        out += [f"[apps.{n}]", f"environments = [{env_list}]", 'secrets = ["config"]',
                f"[apps.{n}.certificate]", ""]
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


def cmd_setup(a):
    """Untimed: the reference's own cert-auth mount, and the CA every cert role pins."""
    bao = Bao(load_status(a.status, a.env))
    mounts = bao.call("GET", "sys/auth")
    if f"{BENCH_CERT_MOUNT}/" not in (mounts or {}).get("data", mounts or {}):
        bao.call("POST", f"sys/auth/{BENCH_CERT_MOUNT}",
                 {"type": "cert", "description": "provisioning benchmark reference"})
    with open(a.ca_out, "w", encoding="utf-8") as f:
        f.write(identity_ca(bao))


def cmd_raw(a):
    """The reference: the same four writes per app, sequential, over ONE mTLS connection."""
    bao = Bao(load_status(a.status, a.env))
    with open(a.ca, encoding="utf-8") as f:
        ca_pem = f.read()
    writes = []
    for i in range(1, a.apps + 1):
        writes += app_objects(app_name(a.prefix, i), a.env, ca_pem, BENCH_CERT_MOUNT)
    bao.call("GET", "sys/health")  # warm: the handshake is done, the first request is not timed
    lat = {}
    t0 = time.perf_counter()
    for kind, method, path, body in writes:
        s = time.perf_counter()
        bao.call(method, path, body)
        lat.setdefault(kind, []).append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    every = [x for v in lat.values() for x in v]
    res = {
        "writes": len(writes), "wall_s": wall, "connections": 1,
        "per_write_ms": wall * 1e3 / len(writes),
        "p50_ms": statistics.median(every) * 1e3,
        "p90_ms": statistics.quantiles(every, n=10)[-1] * 1e3,
        "per_kind_p50_ms": {k: statistics.median(v) * 1e3 for k, v in lat.items()},
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=2)


def report_json(name, env, now):
    """A delivery report as an agent writes it (docs/registry.md): the app's leaf and its
    identity certificate, fresh, from the environment's intermediate. Never a value."""
    serial = lambda k: ":".join(f"{(hash((name, k)) >> (8 * j)) & 0xff:02x}" for j in range(16))
    out = []
    for cred, output in ((f"{name}/certificate", "tls"), (f"{name}/identity-cert", "identity")):
        out.append({"credential": cred, "output": output, "serial": serial(cred),
                    "issued_at": now, "expires_at": "2099-01-01T00:00:00Z",
                    "digest": "0" * 64, "delivered_at": now, "state": "fresh",
                    "issuer": "ab" * 20})
    return {"reported_at": now, "outputs": out, "issuer_window_s": 3600,
            "trust_roots": ["cd" * 32], "tls_roots": ["cd" * 32]}


def chunks(text, size=512):
    """The report's JSON cut as Warden's agents cut it (ADR 0036): r00, r01, ... (ASCII here)."""
    return {f"r{i // size:02d}": text[i:i + size] for i in range(0, len(text), size)}


def cmd_reports(a):
    """Untimed: every identity's delivery report, as its data (how agents wrote it before
    ADR 0036) or as its entry's custom metadata (since), over --connections keep-alive
    connections at once."""
    status = load_status(a.status, a.env)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    names = [app_name(a.prefix, i) for i in range(1, a.apps + 1)]
    errors = []

    def work(part):
        try:
            bao = Bao(status)
            for n in part:
                doc = report_json(n, a.env, now)
                if a.format == "data":
                    bao.call("POST", f"warden/data/delivered/{n}", {"data": doc})
                else:
                    text = json.dumps(doc, separators=(",", ":"))
                    bao.call("POST", f"warden/metadata/delivered/{n}",
                             {"custom_metadata": chunks(text)})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(names[k::a.connections],))
               for k in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"bench: writing the reports failed: {errors[0]}")


def cmd_bodies(a):
    """Body files for the CLI loop, and the loop's work list (one object per line)."""
    with open(a.ca, encoding="utf-8") as f:
        ca_pem = f.read()
    os.makedirs(a.dir, exist_ok=True)
    lines = []
    for i in range(1, a.apps + 1):
        name = app_name(a.prefix, i)
        for kind, _method, path, body in app_objects(name, a.env, ca_pem, BENCH_CERT_MOUNT):
            if kind == "policy":
                file = os.path.join(a.dir, f"{name}.hcl")
                with open(file, "w", encoding="utf-8") as f:
                    f.write(body["policy"])
                lines.append(f"policy\t{name}\t{file}")
            else:
                file = os.path.join(a.dir, f"{path.replace('/', '_')}.json")
                with open(file, "w", encoding="utf-8") as f:
                    json.dump(body, f)
                lines.append(f"write\t{path}\t{file}")
    with open(a.list, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def subset_diff(want, live, where):
    bad = []
    for k, v in want.items():
        got = live.get(k)
        if isinstance(v, str) and isinstance(got, str):
            same = v.strip() == got.strip()
        else:
            same = v == got
        if not same:
            bad.append(f"{where}: {k} is {json.dumps(got)[:80]} (bench body has {json.dumps(v)[:80]})")
    return bad


def cmd_check(a):
    """Fails when the objects of `--app` on the server are not the bodies the reference and
    the CLI loop send: run on one of Warden's apps it proves the comparison is like for like;
    run on the last app of the reference or the CLI loop it proves they wrote everything."""
    bao = Bao(load_status(a.status, a.env))
    ca_pem = identity_ca(bao)
    bad = []
    for kind, _m, path, body in app_objects(a.app, a.env, ca_pem, a.cert_mount):
        live = (bao.call("GET", path) or {}).get("data")
        if live is None:
            bad.append(f"{path}: not found")
            continue
        if kind == "policy":
            live = {"policy": live.get("policy", live.get("rules"))}
        bad += subset_diff(body, live, path)
    if bad:
        print(f"bench: the objects of {a.app} differ from the benchmark's bodies:", file=sys.stderr)
        for b in bad:
            print("  " + b, file=sys.stderr)
        raise SystemExit(1)


def ms(x):
    return f"{x:.2f}"


def cmd_record(a):
    """Appends one phase's figures to the measure file (JSON lines); --merge adds a JSON
    object's keys (the reference client's own figures win over the shell's)."""
    rec = {"phase": a.phase}
    if a.wall is not None:
        rec["wall_s"] = a.wall
    if a.objects is not None:
        rec["objects"] = a.objects
    if a.server_cpu is not None:
        rec["server_cpu_s"] = a.server_cpu
    if a.client_cpu is not None:
        rec["client_cpu_s"] = a.client_cpu
    for kv in a.set or []:
        k, _, v = kv.partition("=")
        for number in (int, float):
            try:
                rec[k] = number(v)
                break
            except ValueError:
                rec[k] = v
    if a.merge:
        with open(a.merge, encoding="utf-8") as f:
            rec.update(json.load(f))
    with open(a.measure, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def cmd_report(a):
    m = {}
    with open(a.measure, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                m[rec.pop("phase")] = rec
    raws = [m[k] for k in ("raw_before", "raw_after") if k in m]
    raw = sum(r["per_write_ms"] for r in raws) / len(raws)

    def per(p):
        return p["wall_s"] * 1e3 / p["objects"]

    ph = {k: m[k] for k in ("plan", "apply", "noop", "posture", "posture_data", "posture_reports",
                            "evidence", "cli", "apply_c1", "noop_c1") if k in m}
    for p in ph.values():
        p["per_object_ms"] = per(p) if "wall_s" in p else 0
        if "server_cpu_s" in p:
            p["server_cpu_ms_per_object"] = p["server_cpu_s"] * 1e3 / p["objects"]
    for r in raws:
        if "server_cpu_s" in r:
            r["server_cpu_ms_per_object"] = r["server_cpu_s"] * 1e3 / r["writes"]
    ratios = {
        "apply_vs_raw": ph["apply"]["per_object_ms"] / raw,
        "cli_vs_apply": ph["cli"]["per_object_ms"] / ph["apply"]["per_object_ms"],
        "cli_vs_raw": ph["cli"]["per_object_ms"] / raw,
        "noop_vs_apply": ph["noop"]["per_object_ms"] / ph["apply"]["per_object_ms"],
    }
    if "apply_c1" in ph:
        ratios["apply_c1_vs_apply"] = ph["apply_c1"]["per_object_ms"] / ph["apply"]["per_object_ms"]
        ratios["noop_c1_vs_noop"] = ph["noop_c1"]["per_object_ms"] / ph["noop"]["per_object_ms"]
    m["reference_per_write_ms"] = raw
    m["ratios"] = ratios
    # Issue 16's targets: apply ≤ 1.0× a raw write per object, no-op ≤ 0.3× apply, posture
    # < 2 s, evidence export < 5 s, Warden's peak resident memory < 200 MB in every phase.
    rss = max((p.get("max_rss_mb", 0) for p in ph.values()), default=0)
    checks = {
        "apply_vs_raw <= 1.0": ratios["apply_vs_raw"] <= 1.0,
        "noop_vs_apply <= 0.3": ratios["noop_vs_apply"] <= 0.3,
        "max RSS < 200 MB": rss < 200,
    }
    if "posture" in ph:
        checks["posture < 2 s"] = ph["posture"]["wall_s"] < 2
    if "posture_reports" in ph:
        checks["posture with every agent's report < 2 s"] = ph["posture_reports"]["wall_s"] < 2
    if "evidence" in ph:
        checks["evidence < 5 s"] = "failed" not in ph["evidence"] and ph["evidence"]["wall_s"] < 5
    m["target"] = {"checks": checks, "met": all(checks.values()), "max_rss_mb": rss}

    def srv(p):
        v = p.get("server_cpu_ms_per_object")
        return "" if v is None else ms(v)

    c = m["config"]
    rows = [
        "| what | objects | wall (s) | ms / object | × raw write | server CPU ms / object | warden max RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    spread = " / ".join(ms(r["per_write_ms"]) for r in raws)
    rows.append(f"| raw keep-alive HTTP write (reference; runs: {spread} ms) | "
                f"{sum(r['writes'] for r in raws)} | {sum(r['wall_s'] for r in raws):.2f} | "
                f"{ms(raw)} | 1.00 | {ms(sum(r['server_cpu_s'] for r in raws) * 1e3 / sum(r['writes'] for r in raws))} | |")
    labels = [
        ("plan", "`warden plan` before the apply (reads only), --concurrency 8"),
        ("apply", f"`warden apply`, {c['n_identities']} identities, --concurrency 8"),
        ("noop", "`warden apply` again, no-op (0 writes), --concurrency 8"),
        ("posture", "`warden posture` (objects: credentials judged), no agent has reported"),
        ("posture_data", "`warden posture`, every identity's report written as data "
                         "(agents before ADR 0036: one read each)"),
        ("posture_reports", "`warden posture`, every identity's report as KV custom metadata "
                            "(ADR 0036: one scan)"),
        ("evidence", "`warden evidence export`, every credential in one packet"),
        ("apply_c1", "`warden apply`, same spec, --concurrency 1 (second server)"),
        ("noop_c1", "`warden apply` again, no-op, --concurrency 1 (second server)"),
        ("cli", f"`bao` CLI, one call per object, {c['n_cli']} apps"),
    ]
    for k, label in labels:
        if k not in ph:
            continue
        p = ph[k]
        if "failed" in p:
            rows.append(f"| {label} | {p['objects']} | failed after {p['wall_s']:.2f} s: "
                        f"{p['failed']} | | | | {p.get('max_rss_mb', '')} |")
            continue
        rows.append(f"| {label} | {p['objects']} | {p['wall_s']:.2f} | {ms(p['per_object_ms'])} | "
                    f"{p['per_object_ms'] / raw:.2f} | {srv(p)} | {p.get('max_rss_mb', '')} |")
    r = ratios
    lines = rows + [
        "",
        f"- `warden apply` / raw write: **{r['apply_vs_raw']:.2f}×** (target ≤ 1.0)",
        f"- `bao` CLI loop / `warden apply`: **{r['cli_vs_apply']:.1f}×** "
        f"(CLI / raw write: {r['cli_vs_raw']:.1f}×)",
        f"- no-op re-apply / apply: **{r['noop_vs_apply']:.2f}×** (target ≤ 0.3)",
        *([f"- posture with every report, one scan / one read each: "
           f"**{ph['posture_reports']['wall_s'] / ph['posture_data']['wall_s']:.2f}×** wall, "
           f"{ph['posture_reports']['server_cpu_s'] / max(ph['posture_data']['server_cpu_s'], 1e-9):.2f}× server CPU"]
          if "posture_reports" in ph and "posture_data" in ph else []),
        *([f"- evidence packet: {ph['evidence']['packet_bytes'] / 1e6:.2f} MB"]
          if "packet_bytes" in ph.get("evidence", {}) else []),
        "- targets: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in checks.items()),
    ]
    if "apply_c1_vs_apply" in r:
        lines.append(f"- `--concurrency 1` / `--concurrency 8`: apply {r['apply_c1_vs_apply']:.2f}×, "
                     f"no-op {r['noop_c1_vs_noop']:.2f}×")
    e = m["environment"]
    lines.append("")
    lines.append(f"Run {e['date']} on {e['nproc']} cores ({e['cpu']}), load average at start "
                 f"{e['loadavg_start']}, at end {e['loadavg_end']}; {e['bao_version']}; "
                 f"{e['warden_version']}; {e['python']}.")
    table = "\n".join(lines)
    m["markdown"] = table
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(m, f, indent=2)
    print(table)
    if not m["target"]["met"]:
        missed = [k for k, v in checks.items() if not v]
        print(f"\nbench: targets missed: {', '.join(missed)}", file=sys.stderr)


def commands(sub):
    s = command(sub, "spec", cmd_spec); s.add_argument("--apps", type=int, required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--envs", required=True, help="comma-separated")
    s.add_argument("--out", required=True)
    for name, f in (("setup", cmd_setup), ("raw", cmd_raw), ("check", cmd_check)):
        s = command(sub, name, f); s.add_argument("--status", required=True)
        s.add_argument("--env", required=True)
        if name == "setup":
            s.add_argument("--ca-out", required=True)
        if name == "raw":
            s.add_argument("--apps", type=int, required=True)
            s.add_argument("--prefix", required=True)
            s.add_argument("--ca", required=True)
            s.add_argument("--out", required=True)
        if name == "check":
            s.add_argument("--app", required=True)
            s.add_argument("--cert-mount", default="cert")
    s = command(sub, "reports", cmd_reports); s.add_argument("--status", required=True)
    s.add_argument("--env", required=True); s.add_argument("--apps", type=int, required=True)
    s.add_argument("--prefix", default="app"); s.add_argument("--connections", type=int, default=8)
    s.add_argument("--format", choices=("data", "metadata"), required=True)
    s = command(sub, "bodies", cmd_bodies); s.add_argument("--apps", type=int, required=True)
    s.add_argument("--prefix", required=True); s.add_argument("--env", required=True)
    s.add_argument("--ca", required=True); s.add_argument("--dir", required=True)
    s.add_argument("--list", required=True)
    s = command(sub, "record", cmd_record); s.add_argument("--measure", required=True)
    s.add_argument("--phase", required=True); s.add_argument("--wall", type=float)
    s.add_argument("--objects", type=int); s.add_argument("--server-cpu", type=float)
    s.add_argument("--client-cpu", type=float); s.add_argument("--merge")
    s.add_argument("--set", action="append")
    s = command(sub, "report", cmd_report); s.add_argument("--measure", required=True)
    s.add_argument("--out", required=True)


if __name__ == "__main__":
    benchlib.main(__doc__, commands)
