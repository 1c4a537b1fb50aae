#!/usr/bin/env python3
"""Measures Warden's agent (`warden-agent`, or `warden agent`) against `bao agent` doing the same
work (see docs/benchmarks.md).

Standard library only. `run.sh` prepares the lab, the identities and both configurations, then
calls `measure` once; this script starts and stops the agents itself so that start times are
taken right before `exec`, and writes every figure to one JSON file.

    bench.py measure --work DIR --warden-cmd JSON --warden-files JSON --warden-clean JSON
                     --bao-cmd JSON --bao-files JSON --bao-clean JSON
                     --runs N --settle S --idle S --out FILE
    bench.py report FILE
"""

import argparse
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL = 0.005  # seconds between looks at the output files
RENDER_TIMEOUT = 30.0
STOP_GRACE = 10.0


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def complete(files):
    """Every file exists and is non-empty (each agent writes atomically, so present = whole)."""
    for f in files:
        try:
            if os.path.getsize(f) == 0:
                return False
        except OSError:
            return False
    return True


def start(cmd, log_path, pids_file):
    # A clean environment: nothing from the operator's shell (tokens above all) reaches either
    # agent. Its own session, so a stop takes its whole process group.
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
    env["NO_COLOR"] = "1"
    out = open(log_path, "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                            start_new_session=True)
    out.close()
    with open(pids_file, "a") as f:
        f.write(f"{proc.pid}\n")
    return proc, t0


def stop(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def first_render(proc, t0, files, name, log_path):
    while not complete(files):
        if proc.poll() is not None:
            tail = open(log_path, errors="replace").read()[-2000:]
            raise SystemExit(f"bench: {name} exited ({proc.returncode}) before rendering:\n{tail}")
        if time.monotonic() - t0 > RENDER_TIMEOUT:
            tail = open(log_path, errors="replace").read()[-2000:]
            raise SystemExit(f"bench: {name} did not render within {RENDER_TIMEOUT}s:\n{tail}")
        time.sleep(POLL)
    return time.monotonic() - t0


def clean(paths):
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.remove(p)


def memory(pid):
    """VmRSS, and Private (clean + dirty) and Pss from smaps_rollup, in kB."""
    m = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                m[line.split(":")[0].lower() + "_kb"] = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
                m[key.lower() + "_kb"] = int(line.split()[1])
    m["private_kb"] = m.get("private_clean_kb", 0) + m.get("private_dirty_kb", 0)
    with open(f"/proc/{pid}/status") as f:
        m["threads"] = next(int(l.split()[1]) for l in f if l.startswith("Threads:"))
    m["rss_by_mapping_kb"] = by_mapping(pid)
    return m


def by_mapping(pid):
    """Rss and its anonymous part per mapping from /proc/<pid>/smaps, summed by file name and
    permissions ("warden-agent r-xp" is the code, "[heap]" the malloc heap), largest first."""
    groups = {}
    key = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's header line: range perms offset dev inode [path]
                name = os.path.basename(fields[5]) if len(fields) > 5 else "[anonymous]"
                key = f"{name} {fields[1]}"
                groups.setdefault(key, {"rss": 0, "anon": 0})
            elif fields[0] == "Rss:":
                groups[key]["rss"] += int(fields[1])
            elif fields[0] == "Anonymous:":
                groups[key]["anon"] += int(fields[1])
    return dict(sorted(((k, v) for k, v in groups.items() if v["rss"]), key=lambda kv: -kv[1]["rss"]))


def cpu_seconds(pid):
    """utime + stime of the process (its threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3), so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def first_cert(path):
    """Subject CN and SANs of the first certificate in a PEM file (via the ssl module)."""
    text = open(path).read()
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    tmp = path + ".first"
    with open(tmp, "w") as f:
        f.write(text[:end] + "\n")
    try:
        d = ssl._ssl._test_decode_cert(tmp)  # noqa: SLF001 - stdlib, no third-party parser
    finally:
        os.remove(tmp)
    cn = [v for rdn in d["subject"] for (k, v) in rdn if k == "commonName"]
    sans = sorted(v for (k, v) in d.get("subjectAltName", ()) if k == "DNS")
    return {"cn": cn[0] if cn else None, "sans": sans, "not_after": d["notAfter"]}


def same_work(w, b):
    """Both delivered the same things: a leaf for the same names, the same secret, a 2-cert chain."""
    wc, bc = first_cert(w[0]), first_cert(b[0])
    problems = []
    if (wc["cn"], wc["sans"]) != (bc["cn"], bc["sans"]):
        problems.append(f"certificates differ: warden {wc} vs bao {bc}")
    if json.load(open(w[1])) != json.load(open(b[1])):
        problems.append("the rendered secrets differ")
    for name, f in (("warden", w[2]), ("bao", b[2])):
        n = open(f).read().count("BEGIN CERTIFICATE")
        if n != 2:
            problems.append(f"{name}'s CA chain has {n} certificates, expected 2 (intermediate + root)")
    return wc, problems


def measure(a):
    warden = {"name": "warden", "cmd": json.loads(a.warden_cmd), "files": json.loads(a.warden_files),
              "clean": json.loads(a.warden_clean), "log": os.path.join(a.work, "warden-agent.log")}
    bao = {"name": "bao", "cmd": json.loads(a.bao_cmd), "files": json.loads(a.bao_files),
           "clean": json.loads(a.bao_clean), "log": os.path.join(a.work, "bao-agent.log")}
    pids = os.path.join(a.work, "agent-pids")
    agents = (warden, bao)
    for ag in agents:
        ag["renders"] = []

    # Short runs: start, wait for the three files, stop. Alternating, so load drifts hit both.
    for i in range(a.runs):
        for ag in agents:
            clean(ag["clean"])
            proc, t0 = start(ag["cmd"], ag["log"], pids)
            try:
                ag["renders"].append(first_render(proc, t0, ag["files"], ag["name"], ag["log"]))
            finally:
                stop(proc)
        log(f"render run {i + 1}/{a.runs}: warden {warden['renders'][-1]:.3f} s, "
            f"bao {bao['renders'][-1]:.3f} s")

    # The long run: both agents against the same environment at the same time.
    for ag in agents:
        clean(ag["clean"])
        ag["proc"], ag["t0"] = start(ag["cmd"], ag["log"], pids)
        ag["renders"].append(first_render(ag["proc"], ag["t0"], ag["files"], ag["name"], ag["log"]))
        ag["pid"] = ag["proc"].pid
    log(f"both running (warden pid {warden['pid']}, bao pid {bao['pid']}); "
        f"memory at {a.settle} s after each start, then {a.idle} s of idle CPU")
    cert, problems = same_work(warden["files"], bao["files"])
    if problems:
        for ag in agents:
            stop(ag["proc"])
        raise SystemExit("bench: the agents did not do the same work: " + "; ".join(problems))

    try:
        for ag in sorted(agents, key=lambda g: g["t0"]):
            time.sleep(max(0.0, ag["t0"] + a.settle - time.monotonic()))
            if ag["proc"].poll() is not None:
                raise SystemExit(f"bench: {ag['name']} exited during the run; see {ag['log']}")
            ag["memory"] = memory(ag["pid"])
            ag["cpu_start_s"] = cpu_seconds(ag["pid"])
        t_idle = time.monotonic()
        c0 = {ag["name"]: cpu_seconds(ag["pid"]) for ag in agents}
        time.sleep(a.idle)
        for ag in agents:
            if ag["proc"].poll() is not None:
                raise SystemExit(f"bench: {ag['name']} exited during the idle window; see {ag['log']}")
            ag["idle_cpu_s"] = cpu_seconds(ag["pid"]) - c0[ag["name"]]
        idle_window = time.monotonic() - t_idle
    finally:
        for ag in agents:
            stop(ag["proc"])

    result = {
        "config": {"render_runs": a.runs + 1, "settle_s": a.settle, "idle_s": a.idle,
                   "idle_window_s": round(idle_window, 3), "certificate": cert,
                   "warden_label": a.warden_label},
        "environment": json.loads(a.env_json) if a.env_json else {},
    }
    for ag in agents:
        per_min = ag["idle_cpu_s"] / idle_window * 60.0
        result[ag["name"]] = {
            "command": ag["cmd"],
            "binary_bytes": os.path.getsize(ag["cmd"][0]),
            "render_s": [round(r, 4) for r in ag["renders"]],
            "render_median_s": round(statistics.median(ag["renders"]), 4),
            "memory_after_settle": ag["memory"],
            "cpu_at_settle_s": round(ag["cpu_start_s"], 3),
            "idle_cpu_s": round(ag["idle_cpu_s"], 3),
            "idle_cpu_ms_per_min": round(per_min * 1000.0, 1),
        }
    w, b = result["warden"], result["bao"]

    def ratio(x, y):
        return round(x / y, 3) if y else None

    result["ratios_warden_over_bao"] = {
        "vmrss": ratio(w["memory_after_settle"]["vmrss_kb"], b["memory_after_settle"]["vmrss_kb"]),
        "rssanon": ratio(w["memory_after_settle"]["rssanon_kb"], b["memory_after_settle"]["rssanon_kb"]),
        "private": ratio(w["memory_after_settle"]["private_kb"], b["memory_after_settle"]["private_kb"]),
        "idle_cpu": ratio(w["idle_cpu_s"], b["idle_cpu_s"]),
        "first_render": ratio(w["render_median_s"], b["render_median_s"]),
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    return result


def report(r):
    w, b, q = r["warden"], r["bao"], r["ratios_warden_over_bao"]
    mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731
    rt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    n = r["config"]["render_runs"]
    # /proc/<pid>/stat counts in clock ticks (10 ms): zero ticks means "less than one tick".
    tick_ms = 1000.0 / CLK_TCK * 60.0 / r["config"]["idle_window_s"]

    def idle(a):
        v = a["idle_cpu_ms_per_min"]
        return f"< {tick_ms:.0f} ms" if v == 0 else f"{v:.0f} ms"

    if w["idle_cpu_ms_per_min"] == 0 and b["idle_cpu_ms_per_min"] > 0:
        idle_ratio = f"< {tick_ms / b['idle_cpu_ms_per_min']:.2f}"
    else:
        idle_ratio = rt(q["idle_cpu"])
    rows = [
        ("resident memory after 60 s (VmRSS)", mb(w["memory_after_settle"]["vmrss_kb"]),
         mb(b["memory_after_settle"]["vmrss_kb"]), rt(q["vmrss"]), "≤ 0.10"),
        ("… of which anonymous: heap, stacks (RssAnon)", mb(w["memory_after_settle"]["rssanon_kb"]),
         mb(b["memory_after_settle"]["rssanon_kb"]), rt(q["rssanon"]), ""),
        ("private (smaps_rollup Private_Clean + Private_Dirty)¹", mb(w["memory_after_settle"]["private_kb"]),
         mb(b["memory_after_settle"]["private_kb"]), rt(q["private"]), ""),
        ("CPU while idle, per minute (utime + stime)", idle(w), idle(b), idle_ratio, ""),
        (f"start to first complete render (median of {n})", f"{w['render_median_s']:.3f} s",
         f"{b['render_median_s']:.3f} s", rt(q["first_render"]), "≤ 0.50"),
    ]
    label = r["config"].get("warden_label", "warden agent")
    lines = [f"| what | `{label}` | `bao agent` | warden / bao | target |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {a} | {x} | {y} | {z} | {t} |" for (a, x, y, z, t) in rows]
    lines.append("")
    lines.append("¹ smaps counts a file page as private when no other process maps it: the warden agent's"
                 " own binary pages are private, while `bao agent` shares its binary's pages with the"
                 " lab's OpenBao server (same file).")
    env = r.get("environment", {})
    if env:
        lines.append("")
        lines.append(", ".join(f"{k}: {v}" for k, v in env.items()))
    lines.append("")
    lines.append(f"render runs (s): warden {w['render_s']}, bao {b['render_s']}")
    lines.append(f"binaries: warden {w.get('binary_bytes', 0) / 1e6:.1f} MB, "
                 f"bao {b.get('binary_bytes', 0) / 1e6:.1f} MB; threads after 60 s: "
                 f"warden {w['memory_after_settle'].get('threads')}, "
                 f"bao {b['memory_after_settle'].get('threads')}")
    lines.append("")
    lines.append(f"What is resident in `{label}` (/proc/PID/smaps, Rss per mapping in KB, and its anonymous part):")
    lines.append("")
    lines.append("| mapping | Rss | anonymous |")
    lines.append("|---|---:|---:|")
    for name, v in list(w["memory_after_settle"].get("rss_by_mapping_kb", {}).items())[:12]:
        lines.append(f"| {name} | {v['rss']} | {v['anon']} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    for k in ("work", "warden-cmd", "warden-files", "warden-clean", "bao-cmd", "bao-files",
              "bao-clean", "out"):
        m.add_argument(f"--{k}", required=True)
    m.add_argument("--env-json", default="")
    m.add_argument("--warden-label", default="warden-agent")
    m.add_argument("--runs", type=int, default=3)
    m.add_argument("--settle", type=float, default=60.0)
    m.add_argument("--idle", type=float, default=60.0)
    r = sub.add_parser("report")
    r.add_argument("file")
    a = p.parse_args()
    if a.cmd == "measure":
        res = measure(a)
        print(report(res))
    else:
        print(report(json.load(open(a.file))))


if __name__ == "__main__":
    main()
