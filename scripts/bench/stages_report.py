#!/usr/bin/env python3
"""The stage-timing table from the Envoy logs of stages.sh:
    stages_report.py RUN_DIR RESULTS KIND..."""
import re, statistics, sys
run, results, kinds = sys.argv[1], sys.argv[2], sys.argv[3:]
fields = ["read", "index", "decide", "effects", "apply", "record", "engine_hot", "clock"]
rows = []
for kind in kinds:
    windows = []
    for line in open(f"{run}/{kind}.log", errors="replace"):
        if "stage timing" in line:
            windows.append({k: int(v) for k, v in re.findall(r" (\w+)=(\d+)", line)})
    windows = windows[1:]
    if len(windows) < 2:
        sys.exit(f"stages: {kind}: {len(windows)} full windows after warm-up; raise STAGES_SECONDS")
    med = {f: statistics.median(w[f] for w in windows) for f in fields}
    rows.append((kind, len(windows), med))
head = "| kind | windows | " + " | ".join(fields[:7]) + " | decide+effects / engine_hot |"
lines = ["## Stage timing in Envoy (ns per request, median of 20,000-request windows)", "",
         head, "|---|" + "---:|" * 9]
for kind, n, m in rows:
    cold = (m["decide"] + m["effects"]) / m["engine_hot"] if m["engine_hot"] else float("nan")
    lines.append(f"| {kind} | {n} | " + " | ".join(f"{m[f]:.0f}" for f in fields[:7]) + f" | {cold:.2f} |")
lines += ["", f"One clock read, taken off each stage: {rows[0][2]['clock']:.0f} ns."]
text = "\n".join(lines) + "\n"
open(results, "w").write(text)
print(text)
