#!/usr/bin/env python3
"""Prints the Markdown report of scripts/bench.sh (target/bench/results.md,
without the cost tables that bench.sh appends) from the rounds it measured
(rounds.tsv: one row per mode, round and variant)."""
import argparse
import csv
import random
import statistics as st

med = st.median


def names(alt_wasm):
    return {"a": "(a) no filter", "b": "(b) empty proxy-wasm filter (Rust SDK 0.2.5)",
            "c": "(c) graylane, 20 lanes", "d": "(d) Envoy Lua filter, same job as (c)",
            "e": "(e) graylane, 1,000 lanes",
            "f": "(f) empty filter, only its callbacks exported",
            "g": "(g) graylane as (c), " + ("the build in BENCH_ALT_WASM" if alt_wasm
                                             else "linker output without wasm-opt")}


def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:.{nd}f}"


def verdict(ok):
    return "met" if ok else "MISSED"


def header(args):
    print("# graylane gateway benchmark\n")
    print(f"Command: `{args.cmdline}`  ")
    print(f"Envoy {args.envoy_version}; {args.cpu_model}; CLK_TCK {args.clk_tck}; "
          f"filters: {args.wasm_sizes}  ")
    print(f"Gateway: 1 worker pinned to CPU 0; wrk (1 thread) and the proxy-mode backend Envoy on CPU 1. "
          f"Load average before/after: {args.load_before} / {args.load_after}; "
          f"measuring took {args.elapsed} s.\n")
    print("CPU µs/req = gateway Envoy utime+stime during the round / requests completed. "
          "'above (a)' is the median over rounds of the paired difference with (a) of the same round. "
          "Latency columns: medians over rounds of wrk's p50/p99. "
          "'Gateway busy' = the gateway's CPU time as a share of the round: below ~95 % the gateway "
          "was not the bottleneck (wrk and the backend share CPU 1), so rps there says little about the filter. "
          "'Other load on CPU 0' = CPU 0 busy time not spent by the gateway (other processes of this "
          "shared machine; they fill the gateway's idle time, or take from it). "
          "'One-core rps' = 10⁶ / CPU µs per request: the rate the gateway would reach with CPU 0 to itself.\n")


def metrics(rows, hz):
    """variant -> round -> the figures of that round."""
    by = {}
    for r in rows:
        n = int(r["requests"])
        secs = int(r["duration_us"]) / 1e6
        by.setdefault(r["variant"], {})[int(r["round"])] = {
            "rps": n / secs if secs else 0.0,
            "p50": int(r["p50_us"]) / 1000, "p99": int(r["p99_us"]) / 1000,
            "cpu": int(r["gw_ticks"]) * 1e6 / hz / n if n else float("nan"),
            "be": int(r["be_ticks"]) * 1e6 / hz / n if n else float("nan"),
            "other": max(0, int(r["cpu0_busy_ticks"]) - int(r["gw_ticks"])) / hz / secs * 100,
            "busy": int(r["gw_ticks"]) / hz / secs * 100,
            "errors": int(r["errors"]) + int(r["non2xx"]),
        }
    return by


class Rounds:
    """The rounds every variant of one mode completed, and figures over them."""

    def __init__(self, by):
        self.by = by
        self.rounds = sorted(set.intersection(*(set(v) for v in by.values())))

    def series(self, v, k):
        return [self.by[v][i][k] for i in self.rounds if v in self.by]

    def paired(self, v, w, k, op):
        return [op(self.by[v][i][k], self.by[w][i][k]) for i in self.rounds]

    def above(self, v, w="a"):
        """Median over rounds of v's CPU µs/req minus w's in the same round."""
        return med(self.paired(v, w, "cpu", lambda x, y: x - y))

    def spread(self):
        """How well this run pins (c−a)/(b−a) down: the ratio over rounds
        drawn with replacement (fixed seed, so a rerun of the report agrees).
        Too few rounds say nothing about it."""
        draws = []
        pick = random.Random(1)
        for _ in range(1000 if len(self.rounds) >= 3 else 0):
            sample = [pick.choice(self.rounds) for _ in self.rounds]
            c_a = med([self.by["c"][i]["cpu"] - self.by["a"][i]["cpu"] for i in sample])
            b_a = med([self.by["b"][i]["cpu"] - self.by["a"][i]["cpu"] for i in sample])
            if b_a > 0:
                draws.append(c_a / b_a)
        draws.sort()
        return (draws[len(draws) // 10], draws[len(draws) * 9 // 10]) if len(draws) >= 100 else None


def variant_table(mode, r, variant_names):
    print("| variant | rps (median) | rps / (a) | p50 ms | p99 ms | gateway CPU µs/req | above (a) µs/req | one-core rps (10⁶ / CPU µs) | gateway busy | other load on CPU 0 | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in "abcdefg":
        if v not in r.by:
            continue
        rps = med(r.series(v, "rps"))
        rel = med(r.paired(v, "a", "rps", lambda x, y: x / y if y else 0))
        above = r.above(v)
        print(f"| {variant_names[v]} | {rps:,.0f} | {rel:.2f} | {med(r.series(v, 'p50')):.2f} | {med(r.series(v, 'p99')):.2f} "
              f"| {med(r.series(v, 'cpu')):.1f} | {'—' if v == 'a' else f'{above:+.1f}'} "
              f"| {1e6 / med(r.series(v, 'cpu')):,.0f} "
              f"| {med(r.series(v, 'busy')):.0f} % | {med(r.series(v, 'other')):.0f} % | {sum(r.series(v, 'errors'))} |")
    if mode == "proxy":
        print(f"\nBackend Envoy CPU µs/req (median, variant (a)): {med(r.series('a', 'be')):.1f}")


def ratio_table(r):
    ca, ba, da = r.above("c"), r.above("b"), r.above("d")
    r_cb = ca / ba if ba > 0 else None
    spread = r.spread()
    r_ec = med(r.paired("e", "c", "cpu", lambda x, y: x / y))
    r_cd = med(r.paired("c", "d", "rps", lambda x, y: x / y))
    r_cd_cpu = med(r.paired("c", "d", "cpu", lambda x, y: y / x))
    r_da = da / ba if ba > 0 else None
    print("\n| ratio | value | target | |")
    print("|---|---:|---|---|")
    print(f"| (c−a)/(b−a): graylane CPU above no filter, relative to the empty filter | {fmt(r_cb, 2)} | ≤ 2.0 (aim 1.5) | {verdict(r_cb is not None and r_cb <= 2.0)} |")
    if spread:
        print(f"| (c−a)/(b−a), 80 % of 1,000 resamplings of the rounds (how well this run pins it down) | {spread[0]:.2f} – {spread[1]:.2f} | | |")
    print(f"| (e)/(c): gateway CPU per request, 1,000 lanes vs 20 | {r_ec:.2f} | ≤ 1.10 | {verdict(r_ec <= 1.10)} |")
    print(f"| (c)/(d): rps, graylane vs Lua, as measured | {r_cd:.2f} | ≥ 1.15 (aim 1.25) | {verdict(r_cd >= 1.15)} |")
    print(f"| (c)/(d): one-core rps, graylane vs Lua (= CPU µs/req of d / c; not moved by other load on CPU 0) | {r_cd_cpu:.2f} | ≥ 1.15 (aim 1.25) | {verdict(r_cd_cpu >= 1.15)} |")
    print(f"| (d−a)/(b−a): Lua CPU above no filter, relative to the empty filter (for reference) | {fmt(r_da, 2)} | — | |")
    if "f" in r.by and "g" in r.by:
        fa, ga = r.above("f"), r.above("g")
        print(f"| (f−a)/(b−a): empty filter with only its callbacks exported vs all SDK exports | {fmt(fa / ba if ba > 0 else None, 2)} | < 1 saves | |")
        print(f"| (c−a)/(g−a): graylane as shipped vs (g) | {fmt(ca / ga if ga > 0 else None, 2)} | < 1: shipped is cheaper | |")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rounds_tsv")
    parser.add_argument("--clk-tck", type=int, required=True)
    parser.add_argument("--cmdline", required=True)
    parser.add_argument("--elapsed", required=True, help="seconds the measuring took")
    parser.add_argument("--load-before", required=True)
    parser.add_argument("--load-after", required=True)
    parser.add_argument("--envoy-version", required=True)
    parser.add_argument("--cpu-model", required=True)
    parser.add_argument("--wasm-sizes", required=True)
    parser.add_argument("--alt-wasm", default="", help="BENCH_ALT_WASM, if set")
    args = parser.parse_args()
    with open(args.rounds_tsv) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    variant_names = names(args.alt_wasm)

    header(args)
    for mode in ("direct", "proxy"):
        mrows = [r for r in rows if r["mode"] == mode]
        if not mrows:
            continue
        r = Rounds(metrics(mrows, args.clk_tck))
        title = "direct_response at the gateway" if mode == "direct" else "proxying to the backend Envoy"
        print(f"## {mode}: {title} ({len(r.rounds)} rounds)\n")
        variant_table(mode, r, variant_names)
        ratio_table(r)
        print()


if __name__ == "__main__":
    main()
