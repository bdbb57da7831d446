//! The figures as Markdown tables (graylane-cost, scripts/bench.sh) and as
//! the JSON of the committed baseline (wasm-tests/cost-baseline.json).

use super::Figures;

fn num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// The figures as Markdown: a summary table, then host calls by name.
pub fn markdown(figures: &[Figures]) -> String {
    let mut s = String::new();
    s.push_str("| request kind | fuel (≈ Wasm instructions) / request | host calls / request | host→module allocations / request (bytes) | memory grown over the run | x-graylane written |\n");
    s.push_str("|---|---:|---:|---:|---:|---|\n");
    for f in figures {
        let fuel = if f.fuel_min == f.fuel_max {
            num(f.fuel)
        } else {
            format!("{} ({}–{})", num(f.fuel), f.fuel_min, f.fuel_max)
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} ({}) | {} B over {} requests | {} |\n",
            f.kind,
            fuel,
            num(f.host_calls_total),
            num(f.allocations),
            num(f.allocated_bytes),
            f.memory_growth,
            f.requests,
            f.last.request_header("x-graylane").unwrap_or("—"),
        ));
    }
    let mut names: Vec<&String> = figures.iter().flat_map(|f| f.host_calls.keys()).collect();
    names.sort();
    names.dedup();
    s.push_str("\n| host call / request |");
    for f in figures {
        s.push_str(&format!(" {} |", f.kind));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(figures.len()));
    s.push('\n');
    for name in names {
        s.push_str(&format!("| `{name}` |"));
        for f in figures {
            s.push_str(&format!(
                " {} |",
                f.host_calls.get(name).map_or("—".to_string(), |v| num(*v))
            ));
        }
        s.push('\n');
    }
    s.push_str("\nOnce per VM, not per request: `proxy_on_configure` of");
    for (i, f) in figures.iter().enumerate() {
        s.push_str(&format!(
            "{} {}'s config {} fuel, {} host calls",
            if i == 0 { "" } else { ";" },
            f.kind,
            f.configure.fuel,
            f.configure.total_host_calls()
        ));
    }
    s.push_str(".\n");
    for f in figures {
        if let Some(t) = &f.tick {
            s.push_str(&format!(
                "\nTick ({} config, every {} ms; not part of a request): {} fuel, {} host calls.\n",
                f.kind,
                f.tick_period_ms,
                t.fuel,
                t.total_host_calls()
            ));
        }
        if !f.fallbacks.is_empty() {
            s.push_str(&format!(
                "\n{}: imports answered by the generic fallback: {:?}\n",
                f.kind, f.fallbacks
            ));
        }
    }
    s
}

/// The figures as the JSON of the committed baseline.
pub fn to_json(figures: &[Figures], wasm_bytes: usize) -> serde_json::Value {
    let kinds: serde_json::Map<String, serde_json::Value> = figures
        .iter()
        .map(|f| {
            let mut k = serde_json::json!({
                "fuel": f.fuel,
                "host_calls": f.host_calls_total,
                "host_calls_by_name": f.host_calls,
                "allocations": f.allocations,
                "allocated_bytes": f.allocated_bytes,
                "configure_fuel": f.configure.fuel,
            });
            if let (Some(t), Some(obj)) = (&f.tick, k.as_object_mut()) {
                obj.insert("tick_fuel".into(), t.fuel.into());
                obj.insert("tick_host_calls".into(), t.total_host_calls().into());
            }
            (f.kind.clone(), k)
        })
        .collect();
    serde_json::json!({
        "meter": "wasm-tests/src/costhost/ (wasmi fuel, default operator costs)",
        "update": "GRAYLANE_COST_REBASE=1 cargo test -p graylane-wasm-tests --test cost -- --nocapture",
        "wasm_bytes": wasm_bytes,
        "kinds": kinds,
    })
}
