//! What a rollout shows (docs/rollout.md "Staged rollout", "A rollout in the demo"): a live view on
//! a terminal (stderr, indicatif), plain lines on stderr otherwise, or one
//! JSON event per line on stdout with `--json`; and the Markdown report of
//! every window.

use super::analysis::{Action, Verdict};
use super::state::{Numbers, State, WindowRecord};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Where the rollout's events go.
pub enum Events {
    /// `--json`: one event per line on stdout.
    Json,
    /// A person: lines on stderr; with a live line when stderr is a terminal.
    Human(Option<ProgressBar>),
    /// Nothing shown (native tests of the driver).
    Quiet,
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2} %")).unwrap_or_else(|| "-".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn numbers(n: &Numbers) -> String {
    format!(
        "{} req, 5xx {}, p99 {}",
        n.requests,
        pct(n.error_pct),
        ms(n.p99_ms)
    )
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Continue => "continue",
        Verdict::Insufficient => "insufficient data",
    }
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Advance => "advance",
        Action::Extend => "extend the step",
        Action::Rollback => "ROLL BACK",
        Action::Pause => "pause",
    }
}

impl Events {
    pub fn new(json: bool) -> Events {
        if json {
            return Events::Json;
        }
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Events::Human(bar)
    }

    fn line(&self, text: &str) {
        match self {
            Events::Human(Some(bar)) => bar.println(text),
            Events::Human(None) => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
            Events::Json | Events::Quiet => {}
        }
    }

    fn event(&self, event: &str, mut body: Value) {
        if let (Events::Json, Some(obj)) = (self, body.as_object_mut()) {
            obj.insert("event".into(), json!(event));
            obj.insert("time".into(), json!(super::state::now()));
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{body}");
            let _ = out.flush();
        }
    }

    /// A message with its event.
    pub fn say(&self, event: &str, text: &str, body: Value) {
        self.line(text);
        let mut body = body;
        if let Some(obj) = body.as_object_mut() {
            obj.insert("message".into(), json!(text));
        }
        self.event(event, body);
    }

    /// The live line (terminal only): where the window stands.
    pub fn progress(&self, text: &str) {
        if let Events::Human(Some(bar)) = self {
            bar.set_message(text.to_string());
        }
    }

    pub fn window(&self, w: &WindowRecord, of_steps: usize) {
        let mut text = format!(
            "step {}/{} ({} %) window: step {} -> {}\n  window: lane {}; base {}; admitted {} of {} decided",
            w.step + 1,
            of_steps,
            w.percent,
            verdict_word(w.verdict),
            action_word(w.action),
            numbers(&w.lane),
            numbers(&w.base),
            w.admitted,
            w.decided
        );
        for c in &w.checks {
            text.push_str(&format!(
                "\n  {} {}: {}",
                c.name,
                verdict_word(c.verdict),
                c.reason
            ));
        }
        for n in &w.notes {
            text.push_str(&format!("\n  note: {n}"));
        }
        self.line(&text);
        self.event("window", json!(w));
    }

    /// Clears the live line (it may be called more than once).
    pub fn finish(&self) {
        if let Events::Human(Some(bar)) = self {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}

/// The Markdown report of every window.
pub fn report(state: &State, steps: &[f64]) -> String {
    let mut out = format!(
        "# Rollout of lane `{}`\n\nPlan: `{}`  \nOutcome: **{}**{}\n\nSteps: {}\n\n",
        state.lane,
        state.plan.display(),
        state.status.as_str(),
        state
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        steps
            .iter()
            .map(|s| format!("{s} %"))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    out.push_str("## Deliveries\n\n| at (unix s) | step | percent | why |\n|---|---|---|---|\n");
    for d in &state.deliveries {
        out.push_str(&format!(
            "| {:.1} | {} | {} | {} |\n",
            d.at,
            d.step
                .map(|s| (s + 1).to_string())
                .unwrap_or_else(|| "-".into()),
            d.percent,
            match d.wave {
                Some(w) if w > 0 => format!("{} (wave {})", d.why, w + 1),
                _ => d.why.clone(),
            }
        ));
    }
    if state.windows.is_empty() {
        out.push_str(
            "\n## Windows\n\nNo analysis window ended before the rollout stopped: nothing was judged.\n",
        );
        return out;
    }
    out.push_str(
        "\n## Windows\n\n| # | step | percent | seconds | lane requests | lane 5xx | lane p99 | base requests | base 5xx | base p99 | admitted / decided | verdict | action |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (i, w) in state.windows.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |\n",
            i + 1,
            w.step + 1,
            w.percent,
            w.end - w.start,
            w.lane.requests,
            pct(w.lane.error_pct),
            ms(w.lane.p99_ms),
            w.base.requests,
            pct(w.base.error_pct),
            ms(w.base.p99_ms),
            w.admitted,
            w.decided,
            verdict_word(w.verdict),
            action_word(w.action)
        ));
    }
    out.push_str("\n## Checks\n\n");
    for (i, w) in state.windows.iter().enumerate() {
        out.push_str(&format!("Window {}:\n", i + 1));
        for c in &w.checks {
            out.push_str(&format!(
                "- `{}` {}: {} (threshold: {})\n",
                c.name,
                verdict_word(c.verdict),
                c.reason,
                c.threshold
            ));
        }
        for n in &w.notes {
            out.push_str(&format!("- note: {n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rollout aborted before its first window ended says so, instead of
    /// an empty table.
    #[test]
    fn a_report_without_windows_says_nothing_was_judged() {
        let state: State = serde_json::from_value(json!({
            "plan": "/p/plan.yaml", "planDigest": "d", "lane": "gray", "status": "aborted",
            "reason": "aborted by `graylane rollout abort`", "step": 0, "percent": 0.0,
            "stepStarted": 1.0, "deadlineFrom": 0, "promoteRequested": null, "pid": null,
            "started": 1.0, "updated": 2.0, "deliveries": [], "windows": []
        }))
        .unwrap();
        let text = report(&state, &[10.0, 100.0]);
        assert!(
            text.contains("No analysis window ended before the rollout stopped"),
            "{text}"
        );
        assert!(!text.contains("| # | step"), "{text}");
    }
}
