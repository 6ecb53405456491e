//! The Assistant's cost per tool call beside a direct request of the same action, in one
//! run: `cargo bench -p agency-tests --bench assistant`.
//!
//! The model is the tests' scripted chat-completions server on loopback (it also checks
//! each request). A `say` whose model asks for 16 `Calculator.add` calls in one turn and
//! one whose model asks for one both make two model calls, so their difference over 15 is
//! what one more tool call costs: the request itself, its JSON in and out, the tool message.

use std::time::{Duration, Instant};

use agency_runtime::AgentSpec;
use agency_tests::{
    action,
    chat_server::{ChatServer, Step},
    driver, open_space,
};
use serde_json::json;

const SAYS: usize = 50;
const CALLS: usize = 16;
const DIRECT: usize = 2_000;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let add = |n: usize| (format!("c{n}"), json!({"a": n, "b": 1}));
    let turn = |calls: usize| {
        let calls: Vec<(String, serde_json::Value)> = (0..calls).map(add).collect();
        let calls: Vec<(&str, &str, serde_json::Value)> = calls
            .iter()
            .map(|(id, args)| (id.as_str(), "Calculator__add", args.clone()))
            .collect();
        [Step::calls(&calls), Step::text("done")]
    };
    let mut script = Vec::new();
    for _ in 0..SAYS {
        script.extend(turn(CALLS));
        script.extend(turn(1));
    }
    let server = ChatServer::start(None, script);
    let space = open_space("local");
    space
        .add(&AgentSpec::new("Calculator", "Calculator"))
        .unwrap();
    space
        .add(&AgentSpec::new("Assistant", "Assistant").with_args(
            json!({"endpoint": server.endpoint(), "model": "scripted", "tools": ["Calculator.add"]}),
        ))
        .unwrap();
    let user = driver(&space, "user");
    while user
        .request(
            action("Assistant", "tools", json!({})),
            Duration::from_secs(5),
        )
        .unwrap()
        .as_array()
        .unwrap()
        .is_empty()
    {
        std::thread::sleep(Duration::from_millis(10));
    }

    let timed = |message: serde_json::Value| {
        let started = Instant::now();
        user.request(message, Duration::from_secs(30)).unwrap();
        started.elapsed().as_secs_f64() * 1e6
    };
    let direct: Vec<f64> = (0..DIRECT)
        .map(|n| timed(action("Calculator", "add", json!({"a": n, "b": 1}))))
        .collect();
    let (mut many, mut one) = (Vec::new(), Vec::new());
    for _ in 0..SAYS {
        many.push(timed(action("Assistant", "say", json!({"content": "add"}))));
        one.push(timed(action("Assistant", "say", json!({"content": "add"}))));
    }
    assert_eq!(server.problems(), Vec::<String>::new());
    let (many, one, direct) = (median(many), median(one), median(direct));
    let per_call = (many - one) / (CALLS - 1) as f64;
    println!("Assistant tool calls beside direct requests (local transport, medians)");
    println!("  direct request Calculator.add:              {direct:>9.1} µs ({DIRECT} requests)");
    println!("  say, model asks for 1 call (2 model calls):  {one:>9.1} µs ({SAYS} says)");
    println!("  say, model asks for {CALLS} calls (2 model calls): {many:>9.1} µs");
    println!(
        "  one more tool call:                          {per_call:>9.1} µs = {:.2}x a direct request",
        per_call / direct
    );
    space.destroy();
}
