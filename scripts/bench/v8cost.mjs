// The filter's own time per request under V8 (the engine Envoy embeds),
// without Envoy: a minimal proxy-wasm host in JavaScript feeds the cost
// meter's request kinds (scripts/bench/cost-spec.json) to one or more
// builds, alternating builds round by round so that machine noise hits
// each alike. Host functions do the least they can (the header map is
// serialized once per kind, writes are dropped), so what is timed is the
// module: VM entries, its allocator, the engine, and the host-call
// crossings themselves.
//
//   node scripts/bench/v8cost.mjs CASES.json A.wasm [B.wasm ...]
//
// CASES.json: scripts/bench/cost-spec.json (what `configs.py cost` prints).
// V8COST_ROUNDS (default 9), V8COST_REQUESTS per round (default 20000),
// V8COST_TIER turbofan (default) or liftoff, V8COST_LOG=1 prints the
// module's log lines. V8COST_THRASH_KB=N walks N KiB of other memory
// before every request and times each request alone: the module then runs
// with cold caches, as it does in a gateway between Envoy's own work.
// Prints, per kind, the median ns/request of each build over the rounds
// and each build's ratio to the first.

import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import v8 from "node:v8";

// In the gateway, what makes the engine dear is running between Envoy's own
// work with cold caches: scripts/bench/stages.sh times it there at 2 to 3
// times the same work repeated warm. V8COST_THRASH_KB models that here.
// V8COST_TIER=liftoff (`--liftoff-only`, V8's baseline tier) weighs
// instruction counts more than optimized code does: a second view for A/B
// of loop-heavy changes.
if ((process.env.V8COST_TIER || "turbofan") === "liftoff") v8.setFlagsFromString("--liftoff-only");

const [specPath, ...wasmPaths] = process.argv.slice(2);
if (!specPath || wasmPaths.length === 0) {
  console.error("usage: node v8cost.mjs CASES.json A.wasm [B.wasm ...]");
  process.exit(2);
}
const spec = JSON.parse(readFileSync(specPath, "utf8"));
const ROUNDS = Number(process.env.V8COST_ROUNDS || 9);
const REQUESTS = Number(process.env.V8COST_REQUESTS || 20000);
const enc = new TextEncoder();

/** `u32 count, (u32 name_len, u32 value_len)*, (name NUL value NUL)*`. */
function serialize(pairs) {
  const parts = pairs.map(([n, v]) => [enc.encode(n), enc.encode(v)]);
  let size = 4 + 8 * parts.length;
  for (const [n, v] of parts) size += n.length + v.length + 2;
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, parts.length, true);
  let at = 4 + 8 * parts.length;
  parts.forEach(([n, v], i) => {
    dv.setUint32(4 + 8 * i, n.length, true);
    dv.setUint32(8 + 8 * i, v.length, true);
    buf.set(n, at);
    at += n.length + 1;
    buf.set(v, at);
    at += v.length + 1;
  });
  return buf;
}

/** One VM: the module instantiated with a host answering from `state`. */
async function vm(bytes, configText) {
  const state = { request: null, response: null, calls: 0 };
  let mem = null;
  let ex = null;
  const u8 = () => new Uint8Array(mem.buffer);
  const dv = () => new DataView(mem.buffer);
  const give = (data, ptrOut, sizeOut) => {
    const p = ex.proxy_on_memory_allocate(data.length) >>> 0;
    u8().set(data, p);
    dv().setUint32(ptrOut, p, true);
    dv().setUint32(sizeOut, data.length, true);
    return 0;
  };
  const config = enc.encode(configText);
  let nextMetric = 1;
  const env = {
    proxy_log: (level, p, n) => {
      if (process.env.V8COST_LOG) console.error(level, new TextDecoder().decode(u8().slice(p, p + n)));
      return 0;
    },
    proxy_get_log_level: (out) => (dv().setUint32(out, 3, true), 0),
    proxy_define_metric: (_t, _p, _s, out) => (dv().setUint32(out, nextMetric++, true), 0),
    proxy_increment_metric: () => (state.calls++, 0),
    proxy_get_buffer_bytes: (type, _start, _max, ptrOut, sizeOut) =>
      type === 7 ? give(config, ptrOut, sizeOut) : 1,
    proxy_get_header_map_pairs: (type, ptrOut, sizeOut) => {
      state.calls++;
      return give(type === 0 ? state.request : state.response, ptrOut, sizeOut);
    },
    proxy_replace_header_map_value: () => (state.calls++, 0),
    proxy_remove_header_map_value: () => (state.calls++, 0),
    proxy_add_header_map_value: () => (state.calls++, 0),
    proxy_set_property: () => (state.calls++, 0),
    proxy_set_tick_period_milliseconds: () => 0,
    proxy_get_current_time_nanoseconds: (out) => (dv().setBigUint64(out, 0n, true), 0),
  };
  let seed = 0x2545f491;
  const wasi = {
    random_get: (p, n) => {
      const b = u8();
      for (let i = 0; i < n; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        b[p + i] = seed >>> 24;
      }
      return 0;
    },
    environ_get: () => 0,
    environ_sizes_get: (a, b) => (dv().setUint32(a, 0, true), dv().setUint32(b, 0, true), 0),
    clock_time_get: (_id, _prec, out) => (dv().setBigUint64(out, 0n, true), 0),
    fd_write: (_fd, _iov, _n, out) => (dv().setUint32(out, 0, true), 0),
    proc_exit: (code) => {
      throw new Error(`proc_exit(${code})`);
    },
  };
  const module = await WebAssembly.compile(bytes);
  const imports = { env: {}, wasi_snapshot_preview1: {} };
  for (const imp of WebAssembly.Module.imports(module)) {
    const table = imp.module === "env" ? env : wasi;
    const f = table[imp.name];
    if (!f) throw new Error(`no host function ${imp.module}.${imp.name}`);
    imports[imp.module][imp.name] = f;
  }
  const instance = await WebAssembly.instantiate(module, imports);
  ex = instance.exports;
  mem = ex.memory;
  if (ex._initialize) ex._initialize();
  const root = 1;
  ex.proxy_on_context_create?.(root, 0);
  ex.proxy_on_vm_start?.(root, 0);
  if (!ex.proxy_on_configure(root, config.length)) throw new Error("configuration rejected");
  let next = 2;
  /** One request: the callbacks Envoy makes on a direct-response GET. */
  const request = () => {
    const id = next++;
    ex.proxy_on_context_create?.(id, root);
    ex.proxy_on_request_headers(id, 0, 1);
    ex.proxy_on_response_headers?.(id, 0, 0);
    ex.proxy_on_log?.(id);
    ex.proxy_on_done?.(id);
    ex.proxy_on_delete?.(id);
  };
  return { state, request };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const THRASH = Number(process.env.V8COST_THRASH_KB || 0);
const junk = new Uint32Array((THRASH * 1024) / 4);
let junkSum = 0;
/** Touches every cache line of `junk`, evicting what the module left in the caches. */
function thrash() {
  for (let i = 0; i < junk.length; i += 16) junkSum = (junkSum + junk[i]++) | 0;
}

const builds = wasmPaths.map((p) => ({ path: p, bytes: readFileSync(p) }));
const rows = [];
for (const kind of spec.kinds) {
  const c = spec.configs[kind.config];
  const configText = typeof c === "string" ? c : JSON.stringify(c);
  const vms = [];
  for (const b of builds) {
    const v = await vm(b.bytes, configText);
    v.state.request = serialize(kind.request);
    v.state.response = serialize(spec.response);
    for (let i = 0; i < 5000; i++) v.request(); // warm-up: tier-up to TurboFan
    vms.push(v);
  }
  const times = builds.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    vms.forEach((v, i) => {
      if (THRASH) {
        let spent = 0;
        for (let n = 0; n < REQUESTS; n++) {
          thrash();
          const t0 = performance.now();
          v.request();
          spent += performance.now() - t0;
        }
        times[i].push((spent * 1e6) / REQUESTS);
        return;
      }
      const t0 = performance.now();
      for (let n = 0; n < REQUESTS; n++) v.request();
      times[i].push(((performance.now() - t0) * 1e6) / REQUESTS);
    });
  }
  const meds = times.map(median);
  rows.push({ kind: kind.kind, meds });
}
console.log(`| kind | ${builds.map((b) => `${b.path} ns/request`).join(" | ")} | ${builds.slice(1).map((_, i) => `ratio ${i + 2}/1`).join(" | ")} |`);
console.log(`|---|${builds.map(() => "---:").join("|")}|${builds.slice(1).map(() => "---:").join("|")}|`);
for (const { kind, meds } of rows) {
  const ratios = meds.slice(1).map((m) => (m / meds[0]).toFixed(3));
  console.log(`| ${kind} | ${meds.map((m) => m.toFixed(0)).join(" | ")} | ${ratios.join(" | ")} |`);
}
