//! Unit tests of the runtime's own parts, in process and fast: no plugin library is
//! built or loaded. [`Loopback`] is an in-process transport double; [`Echo`] is an agent
//! type compiled into the test binary, so `Catalog::builtin()` has it.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use agency_sdk::{
    prelude::*,
    transport::{sender_of, Inbound, TransportError, TransportSpace, BROADCAST},
};

use crate::{
    handover,
    mailbox::{mailbox, never_wait_here, MAILBOX_LIMIT},
    metrics::FOREGROUND_TYPE,
    AgentSpec, Catalog, Space, SpaceError,
};

/// A transport double: delivers on the publishing thread, as `local` does, and keeps
/// every body it was asked to publish. Clones share it: a test keeps one to publish
/// what no agent would send.
#[derive(Default, Clone)]
struct Loopback {
    sinks: Arc<Mutex<HashMap<String, Arc<dyn Inbound>>>>,
    published: Arc<Mutex<Vec<(String, String)>>>,
}

impl TransportSpace for Loopback {
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), TransportError> {
        let mut sinks = self.sinks.lock().unwrap();
        if sinks.contains_key(agent_id) {
            return Err(TransportError::DuplicateId {
                id: agent_id.into(),
                detail: None,
            });
        }
        sinks.insert(agent_id.into(), sink);
        Ok(())
    }

    fn detach(&self, agent_id: &str) {
        self.sinks.lock().unwrap().remove(agent_id);
    }

    fn publish(&self, to: &str, body: &str) -> Result<(), TransportError> {
        self.published
            .lock()
            .unwrap()
            .push((to.into(), body.into()));
        let sinks: Vec<Arc<dyn Inbound>> = {
            let sinks = self.sinks.lock().unwrap();
            match to {
                BROADCAST => sinks.values().cloned().collect(),
                // A body for nobody goes back to its sender, as the trait asks.
                _ => sinks
                    .get(to)
                    .or_else(|| sinks.get(&sender_of(body)?))
                    .cloned()
                    .into_iter()
                    .collect(),
            }
        };
        sinks.iter().for_each(|sink| sink.deliver(body));
        Ok(())
    }

    fn close(&self) {}
}

/// A space on a [`Loopback`], and a handle on that loopback.
fn loopback_space() -> (Space, Loopback) {
    let transport = Loopback::default();
    let space = Space::open(Box::new(transport.clone()), Catalog::builtin());
    (space, transport)
}

/// Answers what it is asked.
pub struct Echo;

impl Agent for Echo {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Echo)
    }
}

/// Answers what it is asked.
#[actions]
impl Echo {
    /// Answers `text`.
    #[action]
    fn echo(&mut self, text: String) -> String {
        text
    }

    /// Asks every agent of `to` to echo `text`, all at once, waiting up to 0.5 s; answers
    /// their answers, errors as `error: ...`.
    #[action]
    fn echo_all(&mut self, ctx: &Context, to: Vec<String>, text: String) -> Vec<String> {
        let requests = to
            .iter()
            .map(|to| json!({"to": to, "action": {"name": "echo", "args": {"text": text}}}));
        ctx.request_all(requests, Duration::from_millis(500))
            .into_iter()
            .map(|outcome| match outcome {
                Ok(value) => value.to_string(),
                Err(error) => format!("error: {}", error.kind()),
            })
            .collect()
    }
}

/// Counts bumps from any number of senders at once: a concurrent type built into the
/// test binary.
pub struct Tally {
    bumps: AtomicU64,
}

/// How many `Tally` values were made.
static TALLIES: AtomicU64 = AtomicU64::new(0);

impl ConcurrentAgent for Tally {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        TALLIES.fetch_add(1, Ordering::SeqCst);
        Ok(Tally {
            bumps: AtomicU64::new(0),
        })
    }
}

/// Counts bumps from any number of senders at once.
#[actions(concurrency = 3)]
impl Tally {
    /// Counts one; returns the count so far.
    #[action]
    fn bump(&self) -> u64 {
        std::thread::sleep(Duration::from_millis(1));
        self.bumps.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Counts its callbacks around actions: both overridden, so both are called for every
/// action (defaults kept by other agents are skipped after the first message).
pub struct Around;

/// How many times `Around`'s `before_action` and `after_action` ran.
static AROUND: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

impl Agent for Around {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Around)
    }

    fn before_action(&mut self, _ctx: &mut Context) {
        AROUND[0].fetch_add(1, Ordering::SeqCst);
    }

    fn after_action(&mut self, _ctx: &mut Context, _outcome: Result<Option<&Value>, &ActionError>) {
        AROUND[1].fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts its callbacks around actions.
#[actions]
impl Around {
    /// Answers 1.
    #[action]
    fn ping(&mut self) -> u64 {
        1
    }
}

/// Requests other agents and says on which thread each side ran: for hand-offs (see
/// [`crate::direct`]).
pub struct Relay;

impl Agent for Relay {
    fn new(_init: &Init) -> Result<Self, ActionError> {
        Ok(Relay)
    }
}

/// This thread's name and id, to compare.
fn this_thread() -> String {
    format!("{:?}", std::thread::current().id())
}

/// Requests other agents; says on which thread it runs.
#[actions]
impl Relay {
    /// Answers the thread it runs on.
    #[action]
    fn thread(&mut self) -> String {
        this_thread()
    }

    /// Sleeps `ms` milliseconds, then answers them.
    #[action]
    fn nap(&mut self, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    /// Requests `name` with `args` from `to`, waiting up to `ms` milliseconds; answers
    /// `{"value": ...}` or `{"error": kind}`, and the thread this action ran on.
    #[action]
    fn ask(&mut self, ctx: &Context, to: String, name: String, args: Value, ms: u64) -> Value {
        let outcome = ctx.request_action(&to, &name, args, Duration::from_millis(ms));
        let thread = this_thread();
        match outcome {
            Ok(value) => json!({"value": value, "thread": thread}),
            Err(error) => json!({"error": error.kind(), "thread": thread}),
        }
    }
}

fn request(
    me: &crate::Foreground,
    to: &str,
    action: &str,
    args: Value,
) -> Result<Value, ActionError> {
    me.request(
        json!({"to": to, "action": {"name": action, "args": args}}),
        Duration::from_secs(5),
    )
}

#[test]
fn a_request_is_answered_and_the_rules_hold_in_process() {
    let (space, wire) = loopback_space();
    space.add(&AgentSpec::new("Echo", "echo")).unwrap();
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    assert_eq!(
        request(&me, "echo", "echo", json!({"text": "hi"})).unwrap(),
        "hi"
    );
    let error = request(&me, "echo", "shout", json!({})).unwrap_err();
    assert_eq!(
        error.to_string(),
        "AttributeError: \"shout\" not found on \"echo\""
    );
    let help = request(&me, "echo", "help", json!({})).unwrap();
    assert!(help["echo"]["args"]["text"].is_object(), "{help}");
    assert!(matches!(
        space.add(&AgentSpec::new("Echo", "echo")),
        Err(SpaceError::DuplicateId(_))
    ));
    let sent = wire.published.lock().unwrap().clone();
    let first: Message = serde_json::from_str(&sent[0].1).unwrap();
    assert_eq!((first.from.as_str(), first.to.as_str()), ("me", "echo"));
    assert!(!first.meta.id.is_empty(), "the host filled in meta.id");
    space.destroy();
}

#[test]
fn callbacks_an_agent_implements_run_around_every_action_beside_one_keeping_defaults() {
    let (space, _) = loopback_space();
    space.add(&AgentSpec::new("Around", "around")).unwrap();
    space.add(&AgentSpec::new("Echo", "echo")).unwrap();
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    for n in 0..3 {
        assert_eq!(request(&me, "around", "ping", json!({})).unwrap(), json!(1));
        let text = format!("hello {n}");
        assert_eq!(
            request(&me, "echo", "echo", json!({"text": text})).unwrap(),
            json!(text)
        );
    }
    let counts = AROUND.each_ref().map(|count| count.load(Ordering::SeqCst));
    assert_eq!(counts, [3, 3]);
    space.destroy();
}

/// Requests made together are all sent before any reply is waited for, and each gets
/// its own outcome in order: a value, a dead letter, a request cycle (to the asking
/// agent itself), a timeout (an agent that never answers) within the one shared timeout.
#[test]
fn requests_made_together_each_get_their_own_outcome() {
    let (space, wire) = loopback_space();
    for id in ["a", "b"] {
        space.add(&AgentSpec::new("Echo", id)).unwrap();
    }
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    let _idle = space.add_foreground(&AgentSpec::untyped("idle")).unwrap();
    let answers = request(
        &me,
        "a",
        "echo_all",
        json!({"to": ["b", "nobody", "a", "idle", "b"], "text": "hi"}),
    )
    .unwrap();
    let expected = [
        "\"hi\"",
        "error: UndeliverableError",
        "error: DeadlockError",
        "error: TimeoutError",
        "\"hi\"",
    ];
    assert_eq!(answers, json!(expected));
    let from_a: Vec<Message> = wire
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_str::<Message>(body).unwrap())
        .filter(|m| m.from == "a" && !m.is_reply())
        .collect();
    assert_eq!(from_a.len(), 5);
    let chain = json!(["me", "a"]);
    assert!(from_a
        .iter()
        .all(|m| m.meta.extra["request_chain"] == chain));
    space.destroy();
}

/// An agent added with `announce` broadcasts its `help` answer once it joined, as an
/// announcement (a `[response]` to `help_request`); other agents do not.
#[test]
fn an_announcing_agent_tells_the_space_what_it_can_do() {
    let (space, _wire) = loopback_space();
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    space.add(&AgentSpec::new("Echo", "quiet")).unwrap();
    // As `agency.toml` writes it (`announce = true`); `AgentSpec::announcing` is the same.
    let loud: AgentSpec =
        serde_json::from_value(json!({"type": "Echo", "id": "loud", "announce": true})).unwrap();
    assert_eq!(loud, AgentSpec::new("Echo", "loud").announcing());
    space.add(&loud).unwrap();
    assert!(me.wait_for(Duration::from_secs(5), |got| !got.is_empty()));
    let got = me.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let announcement = &got[0];
    assert_eq!(announcement.from, "loud");
    assert!(announcement.is_broadcast() && announcement.action.name == "[response]");
    assert_eq!(announcement.meta.parent_id.as_deref(), Some("help_request"));
    let help = announcement.reply().unwrap().unwrap();
    assert!(help["echo"]["args"]["text"].is_object(), "{help}");
    space.destroy();
}

/// A concurrent type compiled into the host gets its handles as a plugin's does: one
/// agent value behind all three, every message answered once.
/// A request to an idle agent that answered the same action quickly before takes the
/// callee's turn on the requester's thread; a request for an action never handled, or
/// handled slowly since, does not, and so times out on time.
#[test]
fn a_quick_callee_takes_its_turn_on_the_requesters_thread_and_a_slow_one_never_delays_a_timeout() {
    let (space, _) = loopback_space();
    space.add(&AgentSpec::new("Relay", "asker")).unwrap();
    space.add(&AgentSpec::new("Relay", "callee")).unwrap();
    space.add(&AgentSpec::new("Relay", "napper")).unwrap();
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    let ask_of = |to: &str, name: &str, args: Value, ms: u64| {
        let args = json!({"to": to, "name": name, "args": args, "ms": ms});
        request(&me, "asker", "ask", args).unwrap()
    };
    let ask = |name: &str, args: Value, ms: u64| ask_of("callee", name, args, ms);
    let same_thread: Vec<bool> = (0..20)
        .map(|_| {
            let answer = ask("thread", json!({}), 5_000);
            answer["value"] == answer["thread"]
        })
        .collect();
    assert!(
        !same_thread[0],
        "first handled elsewhere: not known quick yet"
    );
    let handed_off = same_thread.iter().filter(|&&same| same).count();
    // A callee still ending its turn on another thread when asked is not handed off.
    assert!(handed_off >= 15, "{same_thread:?}");

    // Never handled: queued, and the requester gives up at its timeout. (A handed-off
    // nap would hold the requester until it ends, and answer its value instead: the
    // outcome tells, no clock needed.)
    assert_eq!(
        ask("nap", json!({"ms": 1_600}), 1_100)["error"],
        "TimeoutError"
    );
    // Quick, then slow once (handed off): never handed off again, so the timeout fires
    // on time.
    for ms in [0, 0, 30] {
        assert_eq!(
            ask_of("napper", "nap", json!({"ms": ms}), 5_000)["value"],
            ms
        );
    }
    let answer = ask_of("napper", "nap", json!({"ms": 1_600}), 1_100);
    assert_eq!(answer["error"], "TimeoutError", "{answer}");
    space.destroy();
}

#[test]
fn a_builtin_concurrent_agent_is_one_value_behind_its_handles() {
    let (space, _wire) = loopback_space();
    space.add(&AgentSpec::new("Tally", "tally")).unwrap();
    assert_eq!(TALLIES.load(Ordering::SeqCst), 1);
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    for _ in 0..100 {
        me.send(json!({"to": "tally", "action": {"name": "bump"}}))
            .unwrap();
    }
    assert!(me.wait_for(Duration::from_secs(30), |got| got.len() >= 100));
    let mut counts: Vec<u64> = me
        .received()
        .iter()
        .map(|m| m.reply().unwrap().unwrap().as_u64().unwrap())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=100).collect::<Vec<u64>>());
    space.remove("tally").unwrap();
}

#[test]
fn misaddressed_and_malformed_deliveries_are_counted_and_dropped() {
    let (space, wire) = loopback_space();
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    wire.publish("me", "not json").unwrap();
    let other = json!({"meta": {"id": "1"}, "from": "x", "to": "someone", "action": {"name": "a"}});
    wire.publish("me", &other.to_string()).unwrap();
    assert!(me.received().is_empty());
    assert_eq!(me.endpoint.dropped.total(), 2);
}

#[test]
fn a_full_mailbox_holds_outside_deliveries_until_there_is_room() {
    let (sender, receiver) = mailbox::<u32>();
    for n in 0..MAILBOX_LIMIT as u32 {
        assert!(sender.put(n));
    }
    let delivered = Arc::new(AtomicBool::new(false));
    let (flag, outside) = (delivered.clone(), sender.clone());
    let waiting = std::thread::spawn(move || {
        assert!(outside.put(u32::MAX));
        flag.store(true, Ordering::Release);
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!delivered.load(Ordering::Acquire), "it waits for room");
    assert_eq!(receiver.next(Duration::ZERO), Some(0));
    waiting.join().unwrap();
    assert!(delivered.load(Ordering::Acquire));
    // A thread that drains a mailbox never waits, full or not.
    std::thread::spawn(move || {
        never_wait_here();
        assert!(sender.put(7));
        drop(receiver);
        assert!(!sender.put(8), "the receiving side is gone");
    })
    .join()
    .unwrap();
}

#[test]
fn a_handed_over_message_is_found_only_by_its_own_text() {
    let message: Message = serde_json::from_value(
        json!({"meta": {"id": "1"}, "from": "a", "to": "b", "action": {"name": "x"}}),
    )
    .unwrap();
    let body = message.to_json();
    let same_text = body.clone();
    handover::offering(&body, message.clone(), || {
        assert!(
            handover::take(&same_text).is_none(),
            "equal text elsewhere is not it"
        );
        assert_eq!(handover::take(&body).unwrap().meta.id, "1");
        assert!(
            handover::take(&body).is_none(),
            "taken once by its one recipient"
        );
    });
    assert!(
        handover::take(&body).is_none(),
        "nothing on offer after publishing"
    );
}

#[test]
fn a_tap_sees_every_message_and_dead_letter_and_never_holds_the_space_back() {
    use crate::tap::Traffic;
    let (space, _wire) = loopback_space();
    space.add(&AgentSpec::new("Echo", "echo")).unwrap();
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    let mut tap = space.tap(4);
    let within = Duration::from_secs(5);
    assert_eq!(
        request(&me, "echo", "echo", json!({"text": "hi"})).unwrap(),
        "hi"
    );
    let Some(Traffic::Sent(request_body)) = tap.next_within(within).ok() else {
        panic!("no copy of the request");
    };
    let Some(Traffic::Sent(reply_body)) = tap.next_within(within).ok() else {
        panic!("no copy of the reply");
    };
    let (asked, answered): (Message, Message) = (
        serde_json::from_str(&request_body).unwrap(),
        serde_json::from_str(&reply_body).unwrap(),
    );
    assert_eq!(
        answered.meta.parent_id.as_deref(),
        Some(asked.meta.id.as_str())
    );
    assert!(request(&me, "nobody", "echo", json!({})).is_err());
    assert!(matches!(tap.next_within(within), Ok(Traffic::Sent(_))));
    let Some(Traffic::Undeliverable(dead)) = tap.next_within(within).ok() else {
        panic!("no copy of the dead letter");
    };
    assert!(dead.contains("\"to\":\"nobody\""), "{dead}");
    // Nobody reads the tap: the space goes on, and the copies it had no room for are
    // counted.
    for n in 0..20 {
        assert_eq!(
            request(&me, "echo", "echo", json!({"text": n.to_string()})).unwrap(),
            n.to_string()
        );
    }
    assert_eq!(tap.skipped(), 40 - 4);
    drop(tap);
    assert_eq!(
        request(&me, "echo", "echo", json!({"text": "on"})).unwrap(),
        "on"
    );
    space.destroy();
}

/// What a space counts adds up, per type and per agent, and stays when an agent leaves;
/// a space opened without metrics counts nothing.
#[test]
fn a_space_counts_messages_errors_and_durations_per_type() {
    let (space, _wire) = loopback_space();
    for id in ["a", "b"] {
        space.add(&AgentSpec::new("Echo", id)).unwrap();
    }
    let me = space.add_foreground(&AgentSpec::untyped("me")).unwrap();
    for _ in 0..3 {
        request(&me, "a", "echo", json!({"text": "hi"})).unwrap();
    }
    request(&me, "a", "shout", json!({})).unwrap_err();
    let answers = request(
        &me,
        "a",
        "echo_all",
        json!({"to": ["b", "nobody"], "text": "x"}),
    );
    assert_eq!(
        answers.unwrap(),
        json!(["\"x\"", "error: UndeliverableError"])
    );

    // An agent counts a message handled after its reply has left: wait for the last.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let snapshot = loop {
        let snapshot = space.metrics(1, &["b"]);
        let echo = snapshot.types.iter().find(|t| t.name == "Echo").unwrap();
        if echo.counts.handled >= 6 || std::time::Instant::now() >= deadline {
            break snapshot;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let echo = snapshot.types.iter().find(|t| t.name == "Echo").unwrap();
    assert_eq!(echo.agents, 2);
    assert_eq!(
        echo.counts.handled, 6,
        "a: 3 echo, shout, echo_all; b: echo"
    );
    assert_eq!(echo.counts.errors, 1);
    assert_eq!(echo.errors.get("AttributeError"), Some(&1));
    assert_eq!(echo.action_seconds.count, 5, "shout never ran");
    assert_eq!(echo.request_seconds.count, 2);
    assert_eq!(echo.dead_letters, 1);
    let mine = snapshot
        .types
        .iter()
        .find(|t| t.name == FOREGROUND_TYPE)
        .unwrap();
    assert_eq!((mine.counts.sent, mine.request_seconds.count), (5, 5));
    let ids: Vec<_> = snapshot.agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "the busiest, then the one named");
    assert_eq!(snapshot.agents[0].counts.handled, 5);

    space.remove("a").unwrap();
    let after = space.metrics(0, &[]);
    let echo = after.types.iter().find(|t| t.name == "Echo").unwrap();
    assert_eq!(
        (echo.agents, echo.counts.handled),
        (1, 6),
        "a's counts stay"
    );
    assert!(after.agents.is_empty());
    space.destroy();

    let quiet = Space::open(Box::new(Loopback::default()), Catalog::builtin()).without_metrics();
    quiet.add(&AgentSpec::new("Echo", "a")).unwrap();
    let me = quiet.add_foreground(&AgentSpec::untyped("me")).unwrap();
    request(&me, "a", "echo", json!({"text": "hi"})).unwrap();
    assert!(quiet.metrics(10, &[]).types.is_empty());
    quiet.destroy();
}
