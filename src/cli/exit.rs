//! Every exit status of the `graylane` command line, in one table (README
//! "The two commands", docs/rollout.md "Commands and exit status"): the `cli` commands and
//! `rollout` use these constants and no other numbers.
//!
//! | status | `check`, `explain`, `schema`, `istio`, `completions` | `rollout PLAN`, `resume`, `promote` of a stopped rollout | `rollout status`, `abort` | `rollout plan` |
//! |---|---|---|---|---|
//! | 0 | valid (warnings allowed), or the command did its work | promoted | done (status: whatever the state; abort: 0 % delivered) | planned |
//! | 1 | the configuration is invalid | rolled back or aborted | — | — |
//! | 2 | bad command line, or a file that cannot be read | bad plan, config or delivery | no rollout of PLAN (abort: or it already ended) | bad plan, or no rate and an unreachable source |
//! | 3 | `explain`: its explanation and the filter's decision disagree (a bug) | paused or interrupted | — | — |

/// The configuration is valid (warnings allowed) / the command did its work.
pub const EXIT_OK: i32 = 0;
/// The configuration is invalid.
pub const EXIT_INVALID: i32 = 1;
/// Bad command line, or a file that cannot be read.
pub const EXIT_USAGE: i32 = 2;
/// `explain`: the explanation and the filter's decision disagree (a bug).
pub const EXIT_INTERNAL: i32 = 3;

/// Rollout: the version is promoted (ready to become base); also `status`
/// (any state), `abort` (the lane is at 0 %), `plan`, and `promote` of a
/// running rollout.
pub const EXIT_PROMOTED: i32 = 0;
/// Rollout: rolled back (by analysis or `abort`).
pub const EXIT_ROLLED_BACK: i32 = 1;
/// Rollout: bad plan, configuration or delivery.
pub const EXIT_BAD: i32 = 2;
/// Rollout: paused (a manual step, past a deadline, the lane's rule changed
/// by someone else) or interrupted.
pub const EXIT_PAUSED: i32 = 3;
/// Rollout stopped at a crash point (native tests only; the process itself
/// is killed there).
pub const EXIT_CRASHED: i32 = 137;
