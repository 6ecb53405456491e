//! A complete agent plugin: the example of the README.
//!
//! Build it with `cargo build --release --example counter -p agency-sdk`; the library is
//! `target/release/examples/libcounter.so`.

use agency_sdk::prelude::*;

agency_sdk::export_plugin!(); // once per library

/// Keeps a running total.
pub struct Counter {
    total: f64,
}

impl Agent for Counter {
    fn new(init: &Init) -> Result<Self, ActionError> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Config {
            start: f64,
        }
        Ok(Counter {
            total: init.args::<Config>()?.start,
        })
    }
}

/// Keeps a running total.
#[actions]
impl Counter {
    /// Adds to the total.
    ///
    /// - amount: how much to add
    ///
    /// Returns: the new total
    #[action]
    fn add(&mut self, amount: f64) -> f64 {
        self.total += amount;
        self.total
    }

    /// Resets the total; only when the space's permission prompt says yes.
    #[action(access = "requested")]
    fn reset(&mut self, ctx: &Context) -> Result<(), ActionError> {
        self.total = 0.0;
        ctx.send_action("*", "say", json!({"content": "the counter was reset"}))?;
        Ok(())
    }
}
