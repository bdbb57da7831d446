#!/usr/bin/env python3
"""(c_sdk - a)/(c_abi - a) per bench run of sdk-compare.sh (variant g = the SDK
build, c = the shipped one):
    sdk_ratio.py OUT_DIR RUNS"""
import csv, os, statistics as st, sys
out, runs = sys.argv[1], int(sys.argv[2])
print("\n## (c_sdk − a)/(c_abi − a) per bench run (variant g = SDK build, c = shipped)\n")
print("| run | mode | rounds | c − a µs/req | g − a µs/req | (g − a)/(c − a) |")
print("|---|---|---:|---:|---:|---:|")
hz = os.sysconf("SC_CLK_TCK")
for run in range(1, runs + 1):
    rows = list(csv.DictReader(open(os.path.join(out, f"run-{run}", "rounds.tsv")), delimiter="\t"))
    for mode in ("direct", "proxy"):
        cpu = {}
        for r in rows:
            if r["mode"] == mode and int(r["requests"]):
                cpu[(r["variant"], int(r["round"]))] = int(r["gw_ticks"]) * 1e6 / hz / int(r["requests"])
        rounds = sorted({k[1] for k in cpu if all((v, k[1]) in cpu for v in "acg")})
        if not rounds:
            continue
        ca = st.median(cpu[("c", i)] - cpu[("a", i)] for i in rounds)
        ga = st.median(cpu[("g", i)] - cpu[("a", i)] for i in rounds)
        print(f"| {run} | {mode} | {len(rounds)} | {ca:+.2f} | {ga:+.2f} | {ga / ca if ca > 0 else float('nan'):.3f} |")
