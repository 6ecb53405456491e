//! Agent types compiled into the host binary register the same way as plugin ones and run
//! through the same runtime, next to plugin agents, on a plugin transport.

use agency_runtime::AgentSpec;
use agency_sdk::prelude::*;
use agency_tests::{ask, driver, open_space};

/// Built into this test binary.
pub struct Echo;

impl Agent for Echo {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Echo)
    }
}

/// Built into this test binary.
#[actions]
impl Echo {
    /// Asks the plugin agent `Receiver` for its value and returns it doubled.
    ///
    /// Returns: twice the receiver's value
    #[action]
    fn double(&mut self, ctx: &Context) -> Result<i64, ActionError> {
        let value = ctx.request_action("Receiver", "value", json!({}), agency_tests::PATIENCE)?;
        Ok(2 * value.as_i64().unwrap_or_default())
    }
}

#[test]
fn builtin_agents_work_beside_plugin_agents() {
    let space = open_space("local");
    assert!(
        space.catalog().get("Echo").is_some(),
        "registered through inventory"
    );
    space.add(&AgentSpec::new("Receiver", "Receiver")).unwrap();
    space.add(&AgentSpec::new("Echo", "Echo")).unwrap();
    let sender = driver(&space, "Sender");
    assert_eq!(ask(&sender, "Echo", "double").unwrap(), 84);
    let help = ask(&sender, "Echo", "help").unwrap();
    assert_eq!(help["double"]["returns"]["type"], "number");
}
