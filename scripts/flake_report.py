"""The flake hunt's table (scripts/flake-hunt.sh): per test, its passes and
failures in each mode, from libtest logs named MODE-I.log, then each
failure's message. An ignored test (a soak) shows "-" and is not a
result. Exits 1 when any test failed or no test ran."""

import collections
import pathlib
import re
import sys

RUNNING = re.compile(r"^\s*Running (?:unittests )?(\S+)")
RESULT = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)")
BLOCK = re.compile(r"^---- (\S+) stdout ----$")


def binary_of(path):
    return re.sub(r"\.rs$", "", path.rsplit("/", 1)[-1])


def read(log):
    """(results, messages): test -> 'ok'|'FAILED'|'ignored'; test -> the
    first lines of its panic message."""
    results, messages = {}, {}
    binary, current, lines = "", None, []
    for line in log.read_text(errors="replace").splitlines():
        m = RUNNING.match(line)
        if m:
            binary = binary_of(m.group(1))
            continue
        m = RESULT.match(line)
        if m:
            results[f"{binary}::{m.group(1)}"] = m.group(2)
            continue
        m = BLOCK.match(line)
        if m:
            current, lines = f"{binary}::{m.group(1)}", []
            messages[current] = lines
            continue
        if current is not None:
            if line.startswith("failures:") or line.startswith("---- "):
                current = None
            elif "panicked at" in line or lines:
                if len(lines) < 3:
                    lines.append(line.strip()[:300])
    return results, messages


def main(paths):
    modes = []
    tally = collections.defaultdict(lambda: collections.Counter())
    failures = []
    runs = collections.Counter()
    for p in map(pathlib.Path, paths):
        mode = p.stem.rsplit("-", 1)[0]
        if mode not in modes:
            modes.append(mode)
        runs[mode] += 1
        results, messages = read(p)
        for test, outcome in results.items():
            tally[test][(mode, outcome)] += 1
            if outcome == "FAILED":
                failures.append((test, p.name, " / ".join(messages.get(test, ["(no message)"]))))
    if not tally:
        print("no test ran", file=sys.stderr)
        return 1
    width = max(len(t) for t in tally)
    head = "".join(f" | {m} ({runs[m]} runs)" for m in modes)
    print(f"{'test':<{width}}{head}")
    print("-" * width + "".join(" | " + "-" * (len(m) + 9) for m in modes))
    for test in sorted(tally):
        cells = ""
        for m in modes:
            ok, bad = tally[test][(m, "ok")], tally[test][(m, "FAILED")]
            cell = f"{ok} pass, {bad} fail" if (ok or bad) else "-"
            cells += f" | {cell:<{len(m) + 9}}"
        print(f"{test:<{width}}{cells}")
    passed = sum(c[(m, "ok")] for c in tally.values() for m in modes)
    failed = len(failures)
    ignored = sum(1 for c in tally.values() if all(o == "ignored" for _, o in c))
    print(
        f"\n{len(tally)} tests ({ignored} ignored in every run), "
        f"{passed + failed} results: {passed} passed, {failed} failed"
    )
    for test, log, message in failures:
        print(f"FAILED {test} in {log}: {message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
