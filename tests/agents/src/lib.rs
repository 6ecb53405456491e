//! Agents for the test suite, loaded from disk as a plugin like any third-party one.

use std::time::Duration;

use agency_sdk::prelude::*;

agency_sdk::export_plugin!();

/// A point in the plane: an argument of a struct type.
#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct Point {
    x: f64,
    y: f64,
}

/// Answers in every way an agent can: replies, responses, errors, silence, panics.
pub struct Receiver {
    grant: bool,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ReceiverConfig {
    /// What `request_permission` answers.
    grant: bool,
    /// How long the constructor takes, in seconds (a slow plugin).
    start_delay: f64,
}

impl Agent for Receiver {
    fn new(init: &Init) -> Result<Self, ActionError> {
        let config = init.args::<ReceiverConfig>()?;
        std::thread::sleep(Duration::from_secs_f64(config.start_delay));
        Ok(Receiver {
            grant: config.grant,
        })
    }

    fn request_permission(&mut self, _ctx: &mut Context) -> bool {
        self.grant
    }
}

fn sender(ctx: &Context) -> String {
    ctx.current_message()
        .map(|m| m.from.clone())
        .unwrap_or_default()
}

/// Answers in every way an agent can: replies, responses, errors, silence, panics.
#[actions]
impl Receiver {
    /// Says hello back to the sender with a `say` message.
    ///
    /// - content: what was said
    #[action]
    fn say(&mut self, ctx: &Context, content: String) -> Result<(), ActionError> {
        let _ = content;
        let to = sender(ctx);
        ctx.send(json!({"to": to, "action": {"name": "say", "args": {"content": format!("Hello, {to}!")}}}))?;
        Ok(())
    }

    /// Fails with `ValueError: Something went wrong`.
    #[action]
    fn fail(&mut self) -> Result<(), ActionError> {
        Err(ActionError::new("ValueError", "Something went wrong"))
    }

    /// Responds twice with `respond_with`, returning nothing.
    #[action]
    fn respond(&mut self, ctx: &Context) -> Result<(), ActionError> {
        ctx.respond_with(format!("Hello, {}!", sender(ctx)))?;
        ctx.respond_with("again")
    }

    /// Raises with `raise_with`, returning nothing.
    #[action]
    fn raise(&mut self, ctx: &Context) -> Result<(), ActionError> {
        ctx.raise_with(ActionError::new("ValueError", "Something went wrong"))
    }

    /// Returns 42.
    ///
    /// Returns: the answer
    #[action]
    fn value(&mut self) -> i64 {
        42
    }

    /// Never answers.
    #[action]
    fn ignore(&mut self) {}

    /// Returns the current message's `meta`.
    #[action]
    fn echo_meta(&mut self, ctx: &Context) -> Value {
        ctx.current_message()
            .map(|m| serde_json::to_value(&m.meta).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Adds two numbers.
    ///
    /// - a: a number
    /// - b: another number
    #[action]
    fn add(&mut self, a: f64, b: f64) -> f64 {
        a + b
    }

    /// The length of a vector.
    ///
    /// - p: the vector
    #[action]
    fn norm(&mut self, p: Point) -> f64 {
        p.x.hypot(p.y)
    }

    /// Answers its arguments as it got them: one of each kind a form can fill in.
    ///
    /// - name: a text
    /// - age: a whole number
    /// - admin: a switch
    /// - tags: a list of texts
    /// - home: a point (a nested object)
    /// - nickname: an optional text
    #[action]
    #[allow(clippy::too_many_arguments)]
    fn profile(
        &mut self,
        name: String,
        age: i64,
        admin: bool,
        tags: Vec<String>,
        home: Point,
        nickname: Option<String>,
    ) -> Value {
        serde_json::json!({
            "name": name, "age": age, "admin": admin, "tags": tags,
            "home": [home.x, home.y], "nickname": nickname,
        })
    }

    /// Nobody may run this.
    #[action(access = "denied")]
    fn forbidden(&mut self) -> &'static str {
        "ran"
    }

    /// Runs only if `request_permission` agrees.
    #[action(access = "requested")]
    fn guarded(&mut self) -> &'static str {
        "ran"
    }

    /// Has a help entry written by hand.
    #[action(help = r#"{"description": "custom help", "args": {}}"#)]
    fn custom(&mut self) {}

    /// Logs a warning through the `log` crate and one through `tracing`.
    ///
    /// - text: what to log
    #[action(name = "log")]
    fn write_logs(&mut self, text: String) {
        log::warn!("via log: {text}");
        tracing::warn!(%text, "via tracing");
    }

    /// Panics.
    #[action]
    fn explode(&mut self) {
        panic!("boom");
    }

    /// Sleeps, then answers.
    ///
    /// - seconds: how long
    #[action]
    fn sleep(&mut self, seconds: f64) -> &'static str {
        std::thread::sleep(Duration::from_secs_f64(seconds));
        "awake"
    }

    /// Requests `action` from agent `to` and returns what it answered (a request made
    /// from inside an action).
    ///
    /// - to: the agent to ask
    /// - action: the action to run
    #[action]
    fn ask(&mut self, ctx: &Context, to: String, action: String) -> Result<Value, ActionError> {
        ctx.request(
            json!({"to": to, "action": {"name": action}}),
            Duration::from_secs(2),
        )
    }

    /// Requests `chain` from the first agent of `path` with the rest of the path, or
    /// `value` from this agent once the path is empty: a request chain of any length, a
    /// cycle when the path comes back to an agent on it.
    ///
    /// - path: the agents to pass the request through
    #[action]
    fn chain(&mut self, ctx: &Context, path: Vec<String>) -> Result<Value, ActionError> {
        pass_along(ctx, &path)
    }

    /// Returns the message the current one answers, if any (via `parent_message`).
    #[action]
    fn parent(&mut self, ctx: &Context) -> Value {
        serde_json::to_value(ctx.parent_message()).unwrap_or_default()
    }
}

/// Requests `chain` from the first agent of `path` with the rest of the path; 42 once
/// the path is empty.
fn pass_along(ctx: &Context, path: &[String]) -> Result<Value, ActionError> {
    let Some((next, rest)) = path.split_first() else {
        return Ok(json!(42));
    };
    ctx.request(
        json!({"to": next, "action": {"name": "chain", "args": {"path": rest}}}),
        Duration::from_secs(60),
    )
}

/// Reports every callback to an observer agent as a `say` message.
pub struct Recorder {
    observer: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecorderConfig {
    /// The agent that gets told about each callback.
    observer: String,
}

impl Recorder {
    fn tell(&self, ctx: &Context, content: String) {
        let _ = ctx.send_action(&self.observer, "say", json!({ "content": content }));
    }
}

impl Agent for Recorder {
    fn new(init: &Init) -> Result<Self, ActionError> {
        Ok(Recorder {
            observer: init.args::<RecorderConfig>()?.observer,
        })
    }

    fn after_add(&mut self, ctx: &mut Context) {
        self.tell(ctx, "after_add".into());
    }

    fn before_remove(&mut self, ctx: &mut Context) {
        self.tell(ctx, "before_remove".into());
    }

    fn before_action(&mut self, ctx: &mut Context) {
        let name = ctx
            .current_message()
            .map(|m| m.action.name.clone())
            .unwrap_or_default();
        self.tell(ctx, format!("before_action {name}"));
    }

    fn after_action(&mut self, ctx: &mut Context, outcome: Result<Option<&Value>, &ActionError>) {
        let name = ctx
            .current_message()
            .map(|m| m.action.name.clone())
            .unwrap_or_default();
        let outcome = match outcome {
            Err(error) => format!("error {error}"),
            Ok(Some(value)) => format!("value {value}"),
            Ok(None) => "nothing".into(),
        };
        self.tell(ctx, format!("after_action {name} {outcome}"));
    }

    fn handle_action_value(&mut self, ctx: &mut Context, value: &Value) {
        self.tell(ctx, format!("handle_action_value {value}"));
    }

    fn handle_action_error(&mut self, ctx: &mut Context, error: &ActionError) {
        self.tell(ctx, format!("handle_action_error {error}"));
    }
}

/// Reports every callback to an observer agent as a `say` message.
#[actions]
impl Recorder {
    /// Returns 1.
    #[action]
    fn work(&mut self) -> i64 {
        1
    }

    /// Fails.
    #[action]
    fn broken(&mut self) -> Result<i64, ActionError> {
        Err(ActionError::new("ValueError", "broken"))
    }

    /// Sends `action` to agent `to` without waiting; its reply reaches the value/error
    /// callbacks.
    ///
    /// - to: the agent
    /// - action: the action
    #[action]
    fn poke(&mut self, ctx: &Context, to: String, action: String) -> Result<(), ActionError> {
        ctx.send(json!({"to": to, "action": {"name": action}}))
            .map(drop)
    }
}

/// An agent whose construction fails or panics, as its args say.
pub struct Fragile;

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FragileConfig {
    panic: bool,
}

impl Agent for Fragile {
    fn new(init: &Init) -> Result<Self, ActionError> {
        if init.args::<FragileConfig>()?.panic {
            panic!("constructor panicked on purpose");
        }
        Err(ActionError::new("ValueError", "cannot be built"))
    }
}

/// An agent whose construction fails or panics, as its args say.
#[actions]
impl Fragile {}

/// Drives the benchmark from inside a plugin: floods another agent, or ping-pongs with it.
pub struct Bench {
    ticks: u64,
}

impl Agent for Bench {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Bench { ticks: 0 })
    }
}

/// Drives the benchmark from inside a plugin: floods another agent, or ping-pongs with it.
#[actions]
impl Bench {
    /// Counts one message; answers nothing.
    ///
    /// - n: a payload number
    #[action]
    fn tick(&mut self, n: u64) {
        let _ = n;
        self.ticks += 1;
    }

    /// Answers how many ticks arrived since the last call, and resets the count.
    #[action]
    fn count(&mut self) -> u64 {
        std::mem::take(&mut self.ticks)
    }

    /// Answers at once.
    #[action]
    fn ping(&mut self) -> u64 {
        1
    }

    /// Sends `count` ticks to `to`, then asks it for its count (which arrives after all
    /// ticks, since an agent handles messages in order). Returns the seconds it took and
    /// the count.
    ///
    /// - to: the agent to flood
    /// - count: how many messages
    #[action]
    fn flood(&mut self, ctx: &Context, to: String, count: u64) -> Result<Value, ActionError> {
        let started = std::time::Instant::now();
        for n in 0..count {
            ctx.send_action(&to, "tick", json!({ "n": n }))?;
        }
        let received = ctx.request_action(&to, "count", json!({}), Duration::from_secs(120))?;
        Ok(json!({"seconds": started.elapsed().as_secs_f64(), "received": received}))
    }

    /// Makes `count` requests to `to`'s `ping`, one after the other; returns each round
    /// trip in microseconds.
    ///
    /// - to: the agent to ping
    /// - count: how many round trips
    #[action]
    fn round_trips(
        &mut self,
        ctx: &Context,
        to: String,
        count: u64,
    ) -> Result<Vec<f64>, ActionError> {
        (0..count)
            .map(|_| {
                let started = std::time::Instant::now();
                ctx.request_action(&to, "ping", json!({}), Duration::from_secs(10))?;
                Ok(started.elapsed().as_secs_f64() * 1e6)
            })
            .collect()
    }
}

/// Checks that each sender's numbers arrive exactly once and in order: a sender counts
/// from 0, and anything else than its previous number plus one is written down.
pub struct Sequence {
    expected: std::collections::HashMap<String, u64>,
    seen: std::collections::HashSet<(String, u64)>,
    answered: u64,
    out_of_order: Vec<String>,
}

impl Agent for Sequence {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Sequence {
            expected: Default::default(),
            seen: Default::default(),
            answered: 0,
            out_of_order: Vec::new(),
        })
    }
}

/// Checks that each sender's numbers arrive exactly once and in order.
#[actions]
impl Sequence {
    /// Takes the sender's next number; answers it.
    ///
    /// - n: the number (each sender counts from 0)
    #[action]
    fn next(&mut self, ctx: &Context, n: u64) -> u64 {
        let from = sender(ctx);
        let expected = self.expected.entry(from.clone()).or_insert(0);
        if n != *expected {
            self.out_of_order
                .push(format!("{from} sent {n} where {expected} was due"));
        }
        *expected = n + 1;
        self.seen.insert((from, n));
        self.answered += 1;
        n
    }

    /// Sleeps, while what is sent to it waits.
    ///
    /// - seconds: how long
    #[action]
    fn pause(&mut self, seconds: f64) {
        std::thread::sleep(Duration::from_secs_f64(seconds));
    }

    /// How many numbers arrived, how many distinct ones (fewer: some came twice), and
    /// which came out of order.
    #[action]
    fn tally(&mut self) -> Value {
        json!({
            "answered": self.answered,
            "distinct": self.seen.len(),
            "out_of_order": self.out_of_order,
        })
    }
}

/// An agent whose callbacks panic: `after_add`, `before_action`, `request_permission`.
pub struct Touchy;

impl Agent for Touchy {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Touchy)
    }

    fn after_add(&mut self, _ctx: &mut Context) {
        panic!("after_add panicked on purpose");
    }

    fn before_action(&mut self, _ctx: &mut Context) {
        panic!("before_action panicked on purpose");
    }

    fn request_permission(&mut self, _ctx: &mut Context) -> bool {
        panic!("request_permission panicked on purpose");
    }
}

/// An agent whose callbacks panic: `after_add`, `before_action`, `request_permission`.
#[actions]
impl Touchy {
    /// Answers 42.
    #[action]
    fn value(&mut self) -> i64 {
        42
    }

    /// Runs only with permission, and deciding it panics.
    #[action(access = "requested")]
    fn guarded(&mut self) -> &'static str {
        "ran"
    }
}

/// Handles up to four messages at once (a concurrent agent, as in Python Agency): a
/// request cycle through it answers, and `meet` shows that messages run side by side.
pub struct Parallel {
    room: std::sync::Mutex<Room>,
    changed: std::sync::Condvar,
    /// Callbacks run so far, by name.
    callbacks: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// Who is inside `meet` or `hold` now, and since the start.
#[derive(Default)]
struct Room {
    inside: usize,
    peak: usize,
    /// How many times `meet` gathered everyone it waited for.
    meetings: u64,
}

impl Parallel {
    fn count(&self, callback: &'static str) {
        *self.callbacks.lock().unwrap().entry(callback).or_default() += 1;
    }

    /// One more action inside; answers the room as it is then.
    fn enter(&self) -> std::sync::MutexGuard<'_, Room> {
        let mut room = self.room.lock().unwrap();
        room.inside += 1;
        room.peak = room.peak.max(room.inside);
        room
    }
}

impl ConcurrentAgent for Parallel {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Parallel {
            room: Default::default(),
            changed: Default::default(),
            callbacks: Default::default(),
        })
    }

    fn after_add(&self, _ctx: &mut Context) {
        self.count("after_add");
    }

    fn before_action(&self, _ctx: &mut Context) {
        self.count("before_action");
    }

    fn after_action(&self, _ctx: &mut Context, _outcome: Result<Option<&Value>, &ActionError>) {
        self.count("after_action");
    }
}

/// Handles up to four messages at once (a concurrent agent, as in Python Agency).
#[actions(concurrency = 4)]
impl Parallel {
    /// Answers 42.
    #[action]
    fn value(&self) -> i64 {
        42
    }

    /// Answers at once, as `Bench.ping` (for the round-trip benchmark).
    #[action]
    fn ping(&self) -> u64 {
        1
    }

    /// As `Receiver.chain`: passes the request along `path`, then answers 42.
    ///
    /// - path: the agents to pass the request through
    #[action]
    fn chain(&self, ctx: &Context, path: Vec<String>) -> Result<Value, ActionError> {
        pass_along(ctx, &path)
    }

    /// Waits (up to 60 s) until `n` actions are inside `meet` at once; returns whether
    /// they were.
    ///
    /// - n: how many to wait for
    #[action]
    fn meet(&self, n: usize) -> bool {
        let mut room = self.enter();
        let meeting = room.meetings;
        if room.inside >= n {
            room.meetings += 1;
            self.changed.notify_all();
        }
        let (mut room, waited) = self
            .changed
            .wait_timeout_while(room, Duration::from_secs(60), |room| {
                room.meetings == meeting
            })
            .unwrap();
        room.inside -= 1;
        !waited.timed_out()
    }

    /// Stays inside for `seconds`.
    ///
    /// - seconds: how long
    ///
    /// Returns: "held"
    #[action]
    fn hold(&self, seconds: f64) -> &'static str {
        drop(self.enter());
        std::thread::sleep(Duration::from_secs_f64(seconds));
        self.room.lock().unwrap().inside -= 1;
        "held"
    }

    /// Returns the most actions that were inside `meet` or `hold` at once.
    #[action]
    fn peak(&self) -> usize {
        self.room.lock().unwrap().peak
    }

    /// Returns how many times each callback ran so far.
    #[action]
    fn callbacks(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.callbacks.lock().unwrap().clone()
    }
}
