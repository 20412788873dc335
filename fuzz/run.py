#!/usr/bin/env python3
"""Runs one fuzz target until it has had CPU_SECONDS of CPU time in total (default 600, counted
across runs in fuzz/logs/TARGET/total.json), at the lowest priority, one process, resuming the
corpus each round; prints CPU time, executions and the outcome. WALL_SECONDS caps this run.

    cargo +nightly fuzz build -s none -a                  # from fuzz/, once
    fuzz/run.py TARGET [CPU_SECONDS [WALL_SECONDS]]       # from the repository root

max_total_time is wall-clock time: on a busy machine a round gets less CPU than that, so the
script runs further rounds until the CPU time is reached. Logs go to fuzz/logs/TARGET/, new
corpus entries to fuzz/corpus/TARGET/ and crash inputs to fuzz/artifacts/TARGET/ (all ignored by
git: commit minimised crash inputs to fuzz/seeds/TARGET/crash-* with the fix)."""
import os
import re
import resource
import subprocess
import sys
import json
import time

FUZZ = os.path.dirname(os.path.abspath(__file__))
target = sys.argv[1]
want = float(sys.argv[2]) if len(sys.argv) > 2 else 600.0
wall_cap = float(sys.argv[3]) if len(sys.argv) > 3 else float("inf")
binary = os.path.join(FUZZ, "target/x86_64-unknown-linux-gnu/release", target)
logs = os.path.join(FUZZ, "logs", target)
corpus = os.path.join(FUZZ, "corpus", target)
artifacts = os.path.join(FUZZ, "artifacts", target) + "/"
seeds = os.path.join(FUZZ, "seeds", target)
for d in (logs, corpus, artifacts):
    os.makedirs(d, exist_ok=True)

# With autogroup scheduling (most desktop and server kernels) nice only ranks processes within
# their session's group; lower the group too, so the fuzzer yields to everyone else's work.
try:
    with open("/proc/self/autogroup", "w") as f:
        f.write("19")
except OSError:
    pass

state_file = os.path.join(logs, "total.json")
state = {"cpu": 0.0, "execs": 0, "rounds": 0}
if os.path.exists(state_file):
    state = json.load(open(state_file))
cpu, execs, rounds = state["cpu"], state["execs"], state["rounds"]
start = time.time()
status = "ok"
log = ""
while cpu < want and time.time() - start < wall_cap:
    rounds += 1
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    left = min(int(want - cpu) + 1, int(wall_cap - (time.time() - start)) + 1)
    cmd = ["nice", "-n", "19", binary, "-jobs=1", "-workers=1",
           f"-max_total_time={max(left, 30)}", "-timeout=10", "-rss_limit_mb=2048",
           "-print_final_stats=1", f"-artifact_prefix={artifacts}", corpus, seeds]
    rc = subprocess.run(cmd, cwd=logs, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu += used
    log = open(os.path.join(logs, "fuzz-0.log"), errors="replace").read()
    open(os.path.join(logs, f"round-{rounds}.log"), "w").write(log)
    m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    if m:
        execs += int(m[-1])
    else:
        m = re.findall(r"^#(\d+)", log, re.M)
        execs += int(m[-1]) if m else 0
    json.dump({"cpu": cpu, "execs": execs, "rounds": rounds}, open(state_file, "w"))
    print(f"{target}: round {rounds}: rc {rc}, {used:.0f} CPU s (total {cpu:.0f}), "
          f"{execs} execs so far", flush=True)
    if rc != 0:
        status = f"FAILED (rc {rc}): see {logs}/round-{rounds}.log and {artifacts}"
        break
wall = time.time() - start
cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
print(f"{target}: {status}; {cpu/60:.1f} CPU-min in {wall/60:.1f} wall-min, {execs} execs, "
      f"last cov/ft/corpus {cov[-1] if cov else '?'}", flush=True)
