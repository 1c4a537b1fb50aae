#!/usr/bin/env python3
"""Measures a running `warden serve` and a reference process over the same window (see
docs/benchmarks.md, "Serve at rest").

Standard library only. `run.sh` starts the lab and serve, then calls `measure` once with both
process ids; this script samples both every few seconds and writes every figure to one JSON
file, then `report` prints the Markdown table.

    bench.py measure --serve-pid P --ref-pid P --ref-label L --settle S --idle S
                     --events FILE --env-json JSON --out FILE
    bench.py report FILE
"""

import argparse
import json
import os
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE = 5.0  # seconds between memory samples


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def cpu_ticks(pid):
    """utime + stime of the process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: split after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def memory(pid):
    """VmRSS and VmHWM from status, Pss and Private from smaps_rollup, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Pss", "Private_Clean", "Private_Dirty", "Anonymous"):
                out[k] = int(v.split()[0])
    return {
        "rss_kb": out.get("VmRSS", 0),
        "hwm_kb": out.get("VmHWM", 0),
        "pss_kb": out.get("Pss", 0),
        "private_kb": out.get("Private_Clean", 0) + out.get("Private_Dirty", 0),
        "anon_kb": out.get("Anonymous", 0),
        "threads": out.get("Threads", 0),
    }


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def runs_in(events, t0, t1):
    """Job runs serve recorded between t0 and t1 (Unix seconds), by job."""
    counts = {}
    try:
        with open(events) as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("event") != "run":
                    continue
                started = e["run"]["started_ms"] / 1000
                if t0 <= started <= t1:
                    job = e["job"]
                    counts[job] = counts.get(job, 0) + 1
    except OSError:
        pass
    return counts


def measure(a):
    pids = {"serve": a.serve_pid, "reference": a.ref_pid}
    for name, pid in pids.items():
        if not alive(pid):
            raise SystemExit(f"bench: {name} (pid {pid}) is not running")
    log(f"settling {a.settle}s")
    time.sleep(a.settle)
    start = {n: (time.monotonic(), cpu_ticks(p), memory(p)) for n, p in pids.items()}
    wall0 = time.time()
    samples = {n: [] for n in pids}
    log(f"measuring {a.idle}s at rest")
    end_at = time.monotonic() + a.idle
    while True:
        for n, p in pids.items():
            if not alive(p):
                raise SystemExit(f"bench: {n} (pid {p}) exited during the measurement")
            samples[n].append(memory(p)["rss_kb"])
        left = end_at - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(SAMPLE, left))
    result = {"environment": json.loads(a.env_json), "settle_s": a.settle, "idle_s": a.idle,
              "reference_label": a.ref_label, "processes": {}}
    for n, p in pids.items():
        t0, c0, m0 = start[n]
        t1, c1 = time.monotonic(), cpu_ticks(p)
        m1 = memory(p)
        secs = t1 - t0
        result["processes"][n] = {
            "pid": p,
            "window_s": secs,
            "cpu_ticks": c1 - c0,
            "cpu_s": (c1 - c0) / CLK_TCK,
            "cpu_percent_of_one_core": 100.0 * (c1 - c0) / CLK_TCK / secs,
            "memory_start": m0,
            "memory_end": m1,
            "rss_samples_kb": samples[n],
            "rss_mean_kb": sum(samples[n]) / len(samples[n]),
            "rss_max_kb": max(samples[n]),
        }
    result["serve_runs_in_window"] = runs_in(a.events, wall0, time.time())
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    report_file(a.out)


def mb(kb):
    return f"{kb / 1024:.1f}"


def ratio(x, y):
    return "—" if not y else f"{x / y:.2f}×"


def report_file(path):
    with open(path) as f:
        r = json.load(f)
    s, b = r["processes"]["serve"], r["processes"]["reference"]
    label = r["reference_label"]
    rows = [
        ("resident memory, mean over the window (MB)", mb(s["rss_mean_kb"]), mb(b["rss_mean_kb"]),
         ratio(s["rss_mean_kb"], b["rss_mean_kb"])),
        ("resident memory, max sampled (MB)", mb(s["rss_max_kb"]), mb(b["rss_max_kb"]),
         ratio(s["rss_max_kb"], b["rss_max_kb"])),
        ("resident memory growth over the window (MB)",
         mb(s["memory_end"]["rss_kb"] - s["memory_start"]["rss_kb"]),
         mb(b["memory_end"]["rss_kb"] - b["memory_start"]["rss_kb"]), ""),
        ("private memory at the end (MB)", mb(s["memory_end"]["private_kb"]),
         mb(b["memory_end"]["private_kb"]),
         ratio(s["memory_end"]["private_kb"], b["memory_end"]["private_kb"])),
        ("CPU over the window (s)", f"{s['cpu_s']:.2f}", f"{b['cpu_s']:.2f}",
         ratio(s["cpu_s"], b["cpu_s"])),
        ("CPU at rest (% of one core)", f"{s['cpu_percent_of_one_core']:.3f}",
         f"{b['cpu_percent_of_one_core']:.3f}",
         ratio(s["cpu_percent_of_one_core"], b["cpu_percent_of_one_core"])),
        ("threads at the end", str(s["memory_end"]["threads"]), str(b["memory_end"]["threads"]), ""),
    ]
    e = r["environment"]
    print(f"\nServe at rest: {r['idle_s']} s after {r['settle_s']} s of settling; {e.get('date', '')}, "
          f"{e.get('nproc', '?')} cores ({e.get('cpu', '')}), load {e.get('loadavg_start', '')}; "
          f"{e.get('warden_version', '')}; reference {label}\n")
    print(f"| figure | `warden serve` | {label} | serve / reference |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    runs = r.get("serve_runs_in_window", {})
    print("\nserve's job runs in the window: "
          + (", ".join(f"{k} {v}" for k, v in sorted(runs.items())) or "none"))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--serve-pid", type=int, required=True)
    m.add_argument("--ref-pid", type=int, required=True)
    m.add_argument("--ref-label", required=True)
    m.add_argument("--settle", type=float, required=True)
    m.add_argument("--idle", type=float, required=True)
    m.add_argument("--events", required=True)
    m.add_argument("--env-json", required=True)
    m.add_argument("--out", required=True)
    rp = sub.add_parser("report")
    rp.add_argument("file")
    a = p.parse_args()
    if a.cmd == "measure":
        measure(a)
    else:
        report_file(a.file)


if __name__ == "__main__":
    main()
