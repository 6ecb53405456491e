//! The operator session every front end drives, on each transport: replies paired with
//! what they answer, `help` learnt quietly into the catalogue, undeliverable messages
//! with a suggestion, permission answers that come too late. The console and page tests
//! (`cli.rs`, `web.rs`) show the same through the front ends.

use std::{sync::Arc, time::Instant};

use agency_operator::{command, session::Event, Command, Permissions, Session, TooLate};
use agency_runtime::{AgentSpec, Subscription};
use agency_tests::{for_each_transport, open_space, PATIENCE};
use serde_json::json;

for_each_transport!(a_session_pairs_replies_and_learns_quietly);

/// The next events `session` makes of its agent's messages, until `done` holds of the
/// last one (or [`PATIENCE`] passes, which fails the test).
fn events_until(
    session: &Session,
    incoming: &Subscription,
    done: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + PATIENCE;
    let mut events = Vec::new();
    while Instant::now() < deadline {
        let Some(message) = incoming.recv_timeout(deadline - Instant::now()) else {
            break;
        };
        events.extend(session.on_message(message));
        if events.last().is_some_and(&done) {
            return events;
        }
    }
    panic!("the awaited event never came; events so far: {events:#?}");
}

/// Sends a typed line through the session.
fn send_line(session: &Session, line: &str) -> agency_operator::Sent {
    let Ok(Command::Send(message)) = command::parse(line) else {
        panic!("{line:?} is a message");
    };
    session.send(message).expect("sent")
}

fn a_session_pairs_replies_and_learns_quietly(transport: &str) {
    let space = Arc::new(open_space(transport));
    space
        .add(&AgentSpec::new("Calculator", "Calculator"))
        .unwrap();
    let me = space
        .add_foreground(&AgentSpec::untyped("Operator").ignoring_own_broadcasts())
        .unwrap();
    let permissions = Permissions::install(&space);
    let session = Session::new(space.clone(), me, permissions, "test");
    let incoming = session.me().subscribe();

    // A quiet `help` broadcast fills the catalogue and shows nothing.
    session.learn_all();
    let learnt = events_until(&session, &incoming, |e| matches!(e, Event::Learned(_)));
    assert!(
        matches!(learnt.as_slice(), [Event::Learned(id)] if id == "Calculator"),
        "{learnt:#?}"
    );
    assert!(session.catalogue().actions("Calculator").contains(&"add"));
    assert_eq!(session.catalogue().args("Calculator", "add"), ["a", "b"]);
    assert_eq!(session.awaiting(), 0, "a quiet request is not awaited");

    // A reply is paired with what it answers.
    let sent = send_line(&session, "/Calculator.add a:1 b:2");
    assert!(sent.expects_reply);
    let reply = events_until(&session, &incoming, |_| true);
    match reply.as_slice() {
        [Event::Reply {
            message,
            asked,
            result,
        }] => {
            assert_eq!(message.meta.parent_id.as_deref(), Some(sent.id.as_str()));
            assert_eq!(asked.as_deref(), Some("add"));
            assert_eq!(result.as_ref().unwrap(), &json!(3.0));
        }
        other => panic!("expected one reply, got {other:#?}"),
    }
    assert_eq!(session.awaiting(), 0);

    // An asked `help` is shown and learnt.
    send_line(&session, "/Calculator.help");
    let help = events_until(&session, &incoming, |e| matches!(e, Event::Reply { .. }));
    assert!(
        matches!(help.as_slice(), [Event::Learned(_), Event::Reply { asked: Some(a), .. }] if a == "help"),
        "{help:#?}"
    );

    // A message for nobody comes back with the nearest id.
    send_line(&session, "/Calculatr.add a:1 b:2");
    let returned = events_until(&session, &incoming, |_| true);
    match returned.as_slice() {
        [Event::Undeliverable {
            message,
            did_you_mean,
            ..
        }] => {
            assert_eq!(message.from, "Calculatr");
            assert_eq!(did_you_mean.as_deref(), Some("Calculator"));
        }
        other => panic!("expected an undeliverable message, got {other:#?}"),
    }
    assert_eq!(session.awaiting(), 0);

    // A broadcast awaits no reply.
    assert!(!send_line(&session, "hello everyone").expects_reply);
    assert_eq!(session.awaiting(), 0);

    assert_eq!(
        session.answer(99, true).unwrap_err(),
        TooLate::NeverAsked(99)
    );
    space.destroy();
}
