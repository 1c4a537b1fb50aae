#!/usr/bin/env python3
"""Helper for bench/backup/run.sh: fills a lab environment with N KV v2 entries over one
keep-alive mTLS connection, checks one entry, and prints the report.

Standard library only. The token (a break-glass token the run opened) is read from its file
inside this process; it is never printed, put in argv or in a child's environment.
"""

import argparse
import http.client
import json
import ssl
import statistics
import sys
from urllib.parse import urlparse


def connect(status, env):
    e = next(x for x in json.load(open(status)) if x["name"] == env)
    u = urlparse(e["address"])
    ctx = ssl.create_default_context(cafile=e["ca_bundle"])
    ctx.load_cert_chain(e["operator_cert"], e["operator_key"])
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)


def call(conn, token, method, path, body=None):
    headers = {"X-Vault-Token": token, "Content-Type": "application/json"}
    conn.request(method, "/v1/" + path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def fill(a):
    token = open(a.token_file).read().strip()
    conn = connect(a.status, a.env)
    for i in range(a.start, a.start + a.n):
        st, data = call(conn, token, "POST", f"kvv2/data/bench/k{i:06d}",
                        {"data": {"v": f"value-{i:06d}-" + "x" * 64}})
        if st not in (200, 204):
            sys.exit(f"fill: write {i}: HTTP {st}: {data[:200]!r}")


def check(a):
    token = open(a.token_file).read().strip()
    conn = connect(a.status, a.env)
    st, _ = call(conn, token, "GET", f"kvv2/data/bench/k{a.key:06d}")
    want = 200 if a.present else 404
    if st != want:
        sys.exit(f"check: k{a.key:06d}: HTTP {st}, expected {want}")


def report(a):
    rows = [json.loads(line) for line in open(a.measure)]
    by = {}
    for r in rows:
        by.setdefault((r["n"], r["phase"]), []).append(r["wall"])
    ns = sorted({r["n"] for r in rows})
    out = {"runs": rows, "medians": {}}
    print("| entries | step | Warden (age-encrypted, checked, signed) | `bao operator raft snapshot` | ratio |")
    print("|---:|---|---:|---:|---:|")
    for n in ns:
        for step in ("save", "restore"):
            w = statistics.median(by[(n, f"warden_{step}")])
            b = statistics.median(by[(n, f"bao_{step}")])
            out["medians"][f"{n}_{step}"] = {"warden": w, "bao": b, "ratio": w / b}
            print(f"| {n:,} | {step} | {w:.2f} s | {b:.2f} s | {w / b:.2f}× |")
        if (n, "warden_restore_call") in by:
            c = statistics.median(by[(n, "warden_restore_call")])
            b = statistics.median(by[(n, "bao_restore")])
            out["medians"][f"{n}_restore_call"] = {"warden": c, "bao": b, "ratio": c / b}
            print(f"| {n:,} | restore call alone (no plan/posture) | {c:.2f} s | {b:.2f} s | {c / b:.2f}× |")
        if (n, "warden_restore_serving") in by:
            c = statistics.median(by[(n, "warden_restore_serving")])
            print(f"| {n:,} | restore until the node serves again | {c:.2f} s | — | — |")
    json.dump(out, open(a.out, "w"), indent=2)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    for x in (f,):
        x.add_argument("--status", required=True)
        x.add_argument("--env", required=True)
        x.add_argument("--token-file", required=True)
    f.add_argument("--n", type=int, required=True)
    f.add_argument("--start", type=int, default=0)
    c = sub.add_parser("check")
    c.add_argument("--status", required=True)
    c.add_argument("--env", required=True)
    c.add_argument("--token-file", required=True)
    c.add_argument("--key", type=int, required=True)
    c.add_argument("--present", action="store_true")
    r = sub.add_parser("report")
    r.add_argument("--measure", required=True)
    r.add_argument("--out", required=True)
    a = p.parse_args()
    {"fill": fill, "check": check, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
