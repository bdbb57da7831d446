//! The staged rollout, `graylane rollout` (docs/rollout.md "Staged rollout"): one
//! lane's split `percent` grows in steps while its version is compared with
//! base over the same windows; a bad version is rolled back by itself.
//!
//! - [`plan`]: the plan file, parsed and checked;
//! - [`delivery`]: the configuration at a percent, into ECDS files and
//!   Istio / Envoy Gateway manifests;
//! - [`metrics`]: counters from Envoy's admin or Prometheus, per window;
//! - [`analysis`]: the verdicts, pure functions of a step's numbers;
//! - [`sequential`]: the confidence sequences behind them;
//! - [`planner`]: requests and time each step needs (`rollout plan`);
//! - [`state`]: the state file, for `status`, `promote`, `abort`, `resume`;
//! - [`driver`]: the state machine;
//! - [`view`]: the live view, JSON events and the Markdown report.
//!
//! Native only: the filter does not contain any of it.

pub mod analysis;
pub mod delivery;
pub mod driver;
pub mod metrics;
pub mod plan;
pub mod planner;
pub mod sequential;
#[cfg(test)]
mod simulation_tests;
pub mod state;
pub mod view;
