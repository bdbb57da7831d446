//! The VM driver: the filter loaded in wasmi with fuel metering, started
//! and driven the way Envoy drives a filter, and what each call cost.

use super::host::{HostState, Import};
use super::Headers;
use std::collections::BTreeMap;
use wasmi::{CompilationMode, Config, Engine, ExternType, Instance, Linker, Module, Store, Val};

/// Fuel given before each call into the module; far more than any call uses.
const FUEL_TANK: u64 = 1 << 50;
const ROOT_CONTEXT_ID: u32 = 1;

/// What one call (or one request) cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cost {
    pub fuel: u64,
    pub host_calls: BTreeMap<String, u64>,
    /// Buffers the host allocated in the module to return data.
    pub allocations: u64,
    pub allocated_bytes: u64,
}

impl Cost {
    pub fn total_host_calls(&self) -> u64 {
        self.host_calls.values().sum()
    }

    pub(super) fn add(&mut self, other: &Cost) {
        self.fuel += other.fuel;
        for (name, n) in &other.host_calls {
            *self.host_calls.entry(name.clone()).or_default() += n;
        }
        self.allocations += other.allocations;
        self.allocated_bytes += other.allocated_bytes;
    }
}

/// One request's result: its cost and what the filter left behind.
#[derive(Clone, Debug)]
pub struct Trace {
    pub cost: Cost,
    /// The request headers after `proxy_on_request_headers`.
    pub request_headers: Headers,
    /// The response headers after `proxy_on_response_headers`.
    pub response_headers: Headers,
    /// Actions returned by the two header callbacks (0 = Continue).
    pub actions: Vec<i64>,
    /// Properties the stream set (path parts joined by '.'), as text.
    pub properties: BTreeMap<String, String>,
}

impl Trace {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The filter loaded in a fresh VM with one plugin configuration.
pub struct CostHost {
    store: Store<HostState>,
    instance: Instance,
    next_context: u32,
    /// What `proxy_on_configure` cost (once per VM, not per request).
    pub configure: Cost,
}

impl CostHost {
    /// Loads the module, links every import it declares, and starts it as
    /// Envoy does: `_start`/`_initialize`, `proxy_on_context_create(root, 0)`,
    /// `proxy_on_vm_start`, `proxy_on_configure`.
    pub fn new(wasm: &[u8], plugin_config: &[u8]) -> Result<CostHost, String> {
        let mut config = Config::default();
        config
            .consume_fuel(true)
            .compilation_mode(CompilationMode::Eager);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm).map_err(|e| format!("load module: {e}"))?;
        let mut store = Store::new(&engine, HostState::new(plugin_config.to_vec()));
        let mut linker = <Linker<HostState>>::new(&engine);
        for import in module.imports() {
            let (m, n) = (import.module().to_string(), import.name().to_string());
            let ExternType::Func(ty) = import.ty() else {
                return Err(format!(
                    "import {m}.{n}: only function imports are supported"
                ));
            };
            let import = Import::new(&m, &n);
            linker
                .func_new(&m, &n, ty.clone(), move |mut caller, params, results| {
                    import.call(&mut caller, params, results)
                })
                .map_err(|e| format!("link {m}.{n}: {e}"))?;
        }
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| format!("instantiate: {e}"))?;
        let mut host = CostHost {
            store,
            instance,
            next_context: ROOT_CONTEXT_ID + 1,
            configure: Cost::default(),
        };
        for start in ["_start", "_initialize"] {
            host.call(start, &[])?;
        }
        let vm_config_len = host.store.data().vm_config.len() as u32;
        let config_len = plugin_config.len() as u32;
        // proxy-wasm-cpp-host creates the root context before it calls
        // proxy_on_vm_start (ContextBase::onStart), then configures it.
        host.call("proxy_on_context_create", &[ROOT_CONTEXT_ID, 0])?;
        if let Some(0) = host.call("proxy_on_vm_start", &[ROOT_CONTEXT_ID, vm_config_len])? {
            return Err(format!("proxy_on_vm_start failed; {}", host.log_text()));
        }
        let mut configure = Cost::default();
        let accepted = host.metered(
            "proxy_on_configure",
            &[ROOT_CONTEXT_ID, config_len],
            &mut configure,
        )?;
        host.configure = configure;
        if let Some(0) = accepted {
            return Err(format!(
                "proxy_on_configure rejected the configuration; {}",
                host.log_text()
            ));
        }
        Ok(host)
    }

    /// Lets time pass on the host's clock (a tick is due after a period).
    pub(super) fn pass_time(&mut self, nanos: u64) {
        self.store.data_mut().clock_nanos += nanos;
    }

    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    /// Whether the module exports a function of that name.
    pub fn exports(&self, name: &str) -> bool {
        self.instance.get_func(&self.store, name).is_some()
    }

    /// Linear memory size in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.instance
            .get_memory(&self.store, "memory")
            .map_or(0, |m| m.size(&self.store) * 65_536)
    }

    /// The tick period the module asked for (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    fn log_text(&self) -> String {
        let lines: Vec<String> = self
            .store
            .data()
            .logs
            .iter()
            .map(|(level, text)| format!("[{level}] {text}"))
            .collect();
        format!("module log: {}", lines.join(" | "))
    }

    /// Calls an export if it exists, with as many of `args` as it takes;
    /// returns its first result.
    fn call(&mut self, name: &str, args: &[u32]) -> Result<Option<i64>, String> {
        let Some(func) = self.instance.get_func(&self.store, name) else {
            return Ok(None);
        };
        let ty = func.ty(&self.store);
        let params: Vec<Val> = ty
            .params()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let v = args.get(i).copied().unwrap_or(0);
                match t {
                    wasmi::ValType::I64 => Val::I64(i64::from(v)),
                    _ => Val::I32(v as i32),
                }
            })
            .collect();
        let mut results: Vec<Val> = ty
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect();
        self.store
            .set_fuel(FUEL_TANK)
            .map_err(|e| format!("set fuel: {e}"))?;
        let outcome = func.call(&mut self.store, &params, &mut results);
        if let Err(e) = outcome {
            // `_start` of a command module ends with proc_exit(0).
            if e.i32_exit_status() == Some(0) {
                return Ok(None);
            }
            return Err(format!("{name} trapped: {e}; {}", self.log_text()));
        }
        Ok(results.first().map(|v| match v {
            Val::I32(x) => i64::from(*x),
            Val::I64(x) => *x,
            _ => 0,
        }))
    }

    /// Fuel and host work of one export call.
    fn metered(
        &mut self,
        name: &str,
        args: &[u32],
        cost: &mut Cost,
    ) -> Result<Option<i64>, String> {
        if !self.exports(name) {
            return Ok(None);
        }
        let before = self.snapshot();
        let result = self.call(name, args)?;
        let fuel_left = self.store.get_fuel().map_err(|e| format!("fuel: {e}"))?;
        let after = self.snapshot();
        let mut step = Cost {
            fuel: FUEL_TANK - fuel_left,
            ..Cost::default()
        };
        for (name, n) in &after.host_calls {
            let d = n - before.host_calls.get(name).copied().unwrap_or(0);
            if d > 0 {
                step.host_calls.insert(name.clone(), d);
            }
        }
        step.allocations = after.allocations - before.allocations;
        step.allocated_bytes = after.allocated_bytes - before.allocated_bytes;
        cost.add(&step);
        Ok(result)
    }

    fn snapshot(&self) -> Cost {
        let s = self.store.data();
        Cost {
            fuel: 0,
            host_calls: s.calls.clone(),
            allocations: s.allocations,
            allocated_bytes: s.allocated_bytes,
        }
    }

    /// One HTTP stream, as Envoy runs it for a request answered without a
    /// body (end_of_stream on both header callbacks).
    pub fn request(
        &mut self,
        request: &[(String, String)],
        response: &[(String, String)],
    ) -> Result<Trace, String> {
        let ctx = self.next_context;
        self.next_context += 1;
        {
            let s = self.store.data_mut();
            s.maps = Default::default();
            s.maps[0] = request.to_vec();
            s.maps[2] = response.to_vec();
            s.stream_properties.clear();
        }
        let mut cost = Cost::default();
        let mut actions = Vec::new();
        self.metered(
            "proxy_on_context_create",
            &[ctx, ROOT_CONTEXT_ID],
            &mut cost,
        )?;
        let n = request.len() as u32;
        if let Some(a) = self.metered("proxy_on_request_headers", &[ctx, n, 1], &mut cost)? {
            actions.push(a);
        }
        let request_headers = self.store.data().maps[0].clone();
        let n = response.len() as u32;
        if let Some(a) = self.metered("proxy_on_response_headers", &[ctx, n, 1], &mut cost)? {
            actions.push(a);
        }
        let response_headers = self.store.data().maps[2].clone();
        self.metered("proxy_on_done", &[ctx], &mut cost)?;
        self.metered("proxy_on_log", &[ctx], &mut cost)?;
        self.metered("proxy_on_delete", &[ctx], &mut cost)?;
        let properties = self
            .store
            .data()
            .stream_properties
            .iter()
            .map(|(k, v)| {
                let key: Vec<u8> = k.iter().map(|&b| if b == 0 { b'.' } else { b }).collect();
                (
                    String::from_utf8_lossy(&key).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        Ok(Trace {
            cost,
            request_headers,
            response_headers,
            actions,
            properties,
        })
    }

    /// The root context's end, as when Envoy stops the VM:
    /// `proxy_on_done(root)`, then `proxy_on_delete(root)`.
    pub fn stop(&mut self) -> Result<(), String> {
        let mut cost = Cost::default();
        self.metered("proxy_on_done", &[ROOT_CONTEXT_ID], &mut cost)?;
        self.metered("proxy_on_delete", &[ROOT_CONTEXT_ID], &mut cost)?;
        Ok(())
    }

    /// One `proxy_on_tick` of the root context, if the module asked for a
    /// tick period and exports the callback.
    pub fn tick(&mut self) -> Result<Option<Cost>, String> {
        if self.tick_period_ms() == 0 || !self.exports("proxy_on_tick") {
            return Ok(None);
        }
        let mut cost = Cost::default();
        self.metered("proxy_on_tick", &[ROOT_CONTEXT_ID], &mut cost)?;
        Ok(Some(cost))
    }
}
