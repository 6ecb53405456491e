//! The space's traffic for the page: a bounded ring of recent messages, sampled to each
//! page.
//!
//! Invariant: **watching from a page never holds the space back, and its memory is
//! bounded whatever the rate.** While at least one page is open, one thread reads a
//! runtime tap ([`Space::tap`], which drops and counts copies it has no room for) and
//! analyses at most [`ANALYSED_PER_SECOND`] copies a second into [`RING`] entries (the
//! rest stay in the tap and are dropped there, counted). Each page takes a sample every
//! [`TICK`](crate::routes::TICK): the newest [`SAMPLE`] entries its filter keeps, and how
//! many it skipped (dropped by the tap, overwritten in the ring, or beyond the sample).
//! With no page open, no tap is attached and the space pays nothing.
//!
//! Each entry says who sent what to whom, pairs a reply with its request (`re`, the
//! action it answers, the latency seen here), marks dead letters, and carries the message's
//! JSON text (cut at [`BODY_LIMIT`]). Messages per second per sender are counted over
//! the last whole second.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use agency_operator::traffic::{Analyser, Observed};
use agency_runtime::{
    tap::{self, Tap},
    Space,
};
use serde_json::{json, Value};

/// How many recent messages are kept.
pub const RING: usize = 2_000;
/// How many entries one sample carries at most.
pub const SAMPLE: usize = 200;
/// How many copies a second are analysed at most.
pub const ANALYSED_PER_SECOND: usize = 20_000;
/// How long a new view waits for the reader to attach its tap.
pub const ATTACH_PATIENCE: Duration = Duration::from_secs(1);
/// How many copies the tap holds for the reader.
const TAP_CAPACITY: usize = 4_096;
/// The longest message text an entry carries.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The traffic of one space, as pages see it. Clones share it.
#[derive(Clone)]
pub struct Traffic {
    shared: Arc<Shared>,
}

struct Shared {
    ring: Mutex<Ring>,
    /// How many pages view the traffic; the tap is attached while there is one.
    viewers: Mutex<usize>,
    viewers_changed: Condvar,
    /// Whether the reader's tap is attached.
    tapping: Mutex<bool>,
    tapping_changed: Condvar,
    /// Copies the tap dropped, so far.
    dropped: AtomicU64,
    /// Bumped each time `rates` is recomputed.
    rates_version: AtomicUsize,
    rates: Mutex<Value>,
    closed: AtomicBool,
}

struct Ring {
    entries: VecDeque<Entry>,
    /// The sequence number the next entry gets.
    next: u64,
}

/// One message as the traffic view shows it.
#[derive(Default)]
struct Entry {
    seq: u64,
    from: String,
    to: String,
    action: String,
    /// For a reply: the action of the request it answers, if seen.
    answers: Option<String>,
    /// The entry as the page receives it (a JSON object).
    json: String,
}

/// What a page wants to see: messages from or to `agent`, of `action` (or replies to
/// it); empty fields keep everything.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Filter {
    /// Keep messages from or to this agent.
    #[serde(default)]
    pub agent: String,
    /// Keep messages of this action, and the replies to them.
    #[serde(default)]
    pub action: String,
}

impl Filter {
    /// The same filter as every view of the traffic reads it.
    fn shared(&self) -> agency_operator::traffic::Filter {
        let one = |text: &str| {
            let text = text.trim();
            (!text.is_empty())
                .then(|| text.to_owned())
                .into_iter()
                .collect()
        };
        agency_operator::traffic::Filter {
            agents: one(&self.agent),
            actions: one(&self.action),
        }
    }
}

/// One page's view: where its last sample ended, and its filter. Dropping it stops
/// counting it as a viewer.
pub struct Viewer {
    shared: Arc<Shared>,
    /// The first sequence number not sampled yet.
    next: u64,
    dropped_seen: u64,
    rates_seen: usize,
    /// The filter pages set with `{"filter": {...}}`.
    pub filter: Filter,
}

impl Traffic {
    /// The traffic of `space`, read by a thread while a page views it.
    pub fn start(space: Arc<Space>) -> Self {
        let shared = Arc::new(Shared::new());
        let reader = shared.clone();
        std::thread::Builder::new()
            .name("web page traffic".into())
            .spawn(move || reader.read(&space))
            .expect("the system can start a thread");
        Self { shared }
    }

    /// A new page's view: it samples from the next message on. Returns once the tap is
    /// attached (at most [`ATTACH_PATIENCE`] later), so that every message sent after
    /// this returns is seen.
    pub fn view(&self) -> Viewer {
        *self.shared.viewers.lock().unwrap() += 1;
        self.shared.viewers_changed.notify_all();
        let tapping = self.shared.tapping.lock().unwrap();
        let _attached = self
            .shared
            .tapping_changed
            .wait_timeout_while(tapping, ATTACH_PATIENCE, |tapping| !*tapping)
            .unwrap();
        Viewer {
            next: self.shared.ring.lock().unwrap().next,
            dropped_seen: self.shared.dropped.load(Ordering::Relaxed),
            rates_seen: 0,
            shared: self.shared.clone(),
            filter: Filter::default(),
        }
    }

    /// Stops the reader (and detaches its tap).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.viewers_changed.notify_all();
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        *self.shared.viewers.lock().unwrap() -= 1;
    }
}

impl Viewer {
    /// The next sample as a `traffic` event, or `None` when nothing happened since the
    /// last one.
    pub fn sample(&mut self) -> Option<String> {
        let (kept, mut skipped) = {
            let ring = self.shared.ring.lock().unwrap();
            let first = ring.entries.front().map_or(ring.next, |e| e.seq);
            // Overwritten before this page saw them.
            let mut skipped = first.saturating_sub(self.next);
            let filter = self.filter.shared();
            let keeps =
                |e: &Entry| filter.keeps_message(&e.from, &e.to, &e.action, e.answers.as_deref());
            let matching: Vec<&Entry> = ring
                .entries
                .iter()
                .filter(|e| e.seq >= self.next && keeps(e))
                .collect();
            let newest = matching.len().saturating_sub(SAMPLE);
            skipped += newest as u64;
            self.next = ring.next;
            let kept: Vec<&str> = matching[newest..].iter().map(|e| e.json.as_str()).collect();
            (format!("[{}]", kept.join(",")), skipped)
        };
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        skipped += dropped - self.dropped_seen;
        self.dropped_seen = dropped;
        let rates_version = self.shared.rates_version.load(Ordering::Acquire);
        if kept == "[]" && skipped == 0 && rates_version == self.rates_seen {
            return None;
        }
        self.rates_seen = rates_version;
        let rates = self.shared.rates.lock().unwrap().to_string();
        Some(format!(
            r#"{{"type":"traffic","entries":{kept},"skipped":{skipped},"rates":{rates}}}"#
        ))
    }
}

impl Shared {
    fn new() -> Self {
        Self {
            ring: Mutex::new(Ring {
                entries: VecDeque::with_capacity(RING),
                next: 0,
            }),
            viewers: Mutex::new(0),
            viewers_changed: Condvar::new(),
            tapping: Mutex::new(false),
            tapping_changed: Condvar::new(),
            dropped: AtomicU64::new(0),
            rates_version: AtomicUsize::new(0),
            rates: Mutex::new(json!([])),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether a page still views the traffic; if not, the tap is marked detached while
    /// the viewers are locked, so a page arriving now waits for a new tap.
    fn keep_tapping(&self) -> bool {
        let viewers = self.viewers.lock().unwrap();
        let keep = *viewers > 0 && !self.closed.load(Ordering::Acquire);
        if !keep {
            self.set_tapping(false);
        }
        drop(viewers);
        keep
    }

    fn set_tapping(&self, tapping: bool) {
        *self.tapping.lock().unwrap() = tapping;
        self.tapping_changed.notify_all();
    }

    /// Adds an entry to the ring (the oldest goes when it is full).
    fn push(&self, entry: Entry, mut json: Value) {
        let mut ring = self.ring.lock().unwrap();
        let seq = ring.next;
        ring.next += 1;
        if ring.entries.len() == RING {
            ring.entries.pop_front();
        }
        json["seq"] = seq.into();
        ring.entries.push_back(Entry {
            seq,
            json: json.to_string(),
            ..entry
        });
    }

    /// The reader: waits for a viewer, then reads a tap until none is left.
    fn read(&self, space: &Space) {
        loop {
            {
                let mut viewers = self.viewers.lock().unwrap();
                while *viewers == 0 && !self.closed.load(Ordering::Acquire) {
                    viewers = self.viewers_changed.wait(viewers).unwrap();
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let tap = space.tap(TAP_CAPACITY);
            self.set_tapping(true);
            self.analyse(tap);
        }
    }

    /// Turns the tap's copies into ring entries, at most [`ANALYSED_PER_SECOND`], while
    /// a page views them.
    fn analyse(&self, mut tap: Tap) {
        let mut analyser = Analyser::default();
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut second = Instant::now();
        let mut analysed = 0;
        let dropped_before = self.dropped.load(Ordering::Relaxed);
        let budget = ANALYSED_PER_SECOND / 10;
        let mut window = Instant::now();
        while self.keep_tapping() {
            if second.elapsed() >= Duration::from_secs(1) {
                self.publish_rates(&mut counts, second.elapsed());
                second = Instant::now();
            }
            if analysed >= budget {
                // The rest of this tenth of a second's copies wait (or drop) in the tap.
                std::thread::sleep(Duration::from_millis(100).saturating_sub(window.elapsed()));
            }
            if window.elapsed() >= Duration::from_millis(100) {
                window = Instant::now();
                analysed = 0;
            }
            self.dropped
                .store(dropped_before + tap.skipped(), Ordering::Relaxed);
            let copy = match tap.next_within(Duration::from_millis(100)) {
                Ok(copy) => copy,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            };
            analysed += 1;
            let (entry, json) = entry(&mut analyser, &copy);
            *counts.entry(entry.from.clone()).or_default() += 1;
            self.push(entry, json);
        }
    }

    /// Replaces the rates with the counts of the last `elapsed`, busiest first (at most
    /// 50 senders), and starts counting again.
    fn publish_rates(&self, counts: &mut HashMap<String, u64>, elapsed: Duration) {
        let mut rates: Vec<(String, u64)> = counts.drain().collect();
        rates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rates.truncate(50);
        let seconds = elapsed.as_secs_f64();
        let rates: Vec<Value> = rates
            .into_iter()
            .map(|(agent, count)| json!([agent, (count as f64 / seconds).round()]))
            .collect();
        let changed = {
            let mut current = self.rates.lock().unwrap();
            let new = Value::Array(rates);
            let changed = *current != new;
            *current = new;
            changed
        };
        if changed {
            self.rates_version.fetch_add(1, Ordering::Release);
        }
    }
}

/// The entry for one copy, and what the page receives of it (both without their `seq`).
fn entry(analyser: &mut Analyser, copy: &tap::Traffic) -> (Entry, Value) {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let cut = |body: &str| match body.char_indices().nth(BODY_LIMIT) {
        Some((cut, _)) => (body[..cut].to_owned(), true),
        None => (body.to_owned(), false),
    };
    let seen = match analyser.observe(copy) {
        Observed::Malformed { body, .. } => {
            let (text, truncated) = cut(body);
            let json = json!({"at": at, "kind": "malformed", "body": text,
                "truncated": truncated});
            return (Entry::default(), json);
        }
        Observed::Message(seen) => seen,
    };
    let (text, truncated) = cut(seen.body);
    let (message, dead, answers) = (seen.message, seen.undeliverable, seen.answers);
    let latency_ms = answers.as_ref().map(|a| a.after.as_secs_f64() * 1000.0);
    let answers = answers.map(|a| a.action);
    let json = json!({
        "at": at,
        "kind": if dead { "undeliverable" } else { "sent" },
        "id": message.meta.id,
        "parent_id": message.meta.parent_id,
        "from": message.from,
        "to": message.to,
        "action": message.action.name,
        "answers": answers,
        "latency_ms": latency_ms,
        "body": text,
        "truncated": truncated,
    });
    let entry = Entry {
        from: message.from,
        to: message.to,
        action: message.action.name,
        answers,
        ..Entry::default()
    };
    (entry, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request from `from` to `to`, and `to`'s reply.
    fn exchange(analyser: &mut Analyser, shared: &Shared, n: usize, from: &str, to: &str) {
        let id = format!("m{n}");
        let request = json!({"meta": {"id": id}, "from": from, "to": to,
            "action": {"name": "add", "args": {"a": n}}});
        let reply = json!({"meta": {"id": format!("r{n}"), "parent_id": id}, "from": to,
            "to": from, "action": {"name": "[response]", "args": {"value": n}}});
        for message in [request, reply] {
            let (entry, json) = entry(analyser, &tap::Traffic::Sent(message.to_string()));
            shared.push(entry, json);
        }
    }

    fn entries(sample: &str) -> (Vec<Value>, u64) {
        let event: Value = serde_json::from_str(sample).unwrap();
        (
            event["entries"].as_array().unwrap().clone(),
            event["skipped"].as_u64().unwrap(),
        )
    }

    /// Traffic with no reader thread (entries are pushed by hand), and a page's view of it.
    fn viewed() -> (Traffic, Viewer) {
        let traffic = Traffic {
            shared: Arc::new(Shared::new()),
        };
        traffic.shared.set_tapping(true); // as the reader does once its tap is attached
        let viewer = traffic.view();
        (traffic, viewer)
    }

    #[test]
    fn a_sample_carries_the_newest_entries_and_counts_every_other_one() {
        let (traffic, mut viewer) = viewed();
        assert_eq!(viewer.sample(), None, "nothing happened");
        let mut analyser = Analyser::default();
        let exchanges = RING; // twice as many messages as the ring holds
        for n in 0..exchanges {
            exchange(&mut analyser, &traffic.shared, n, "a", "b");
        }
        assert_eq!(traffic.shared.ring.lock().unwrap().entries.len(), RING);
        let (shown, skipped) = entries(&viewer.sample().unwrap());
        assert_eq!(shown.len(), SAMPLE);
        assert_eq!(skipped as usize, 2 * exchanges - SAMPLE);
        let last = shown.last().unwrap();
        assert_eq!(last["seq"], 2 * exchanges - 1);
        assert_eq!(last["answers"], "add", "a reply names what it answers");
        assert!(last["latency_ms"].is_number());
        assert_eq!(viewer.sample(), None, "everything was sampled");
    }

    #[test]
    fn filters_keep_an_agent_or_an_action_and_its_replies() {
        let (traffic, mut viewer) = viewed();
        let mut analyser = Analyser::default();
        exchange(&mut analyser, &traffic.shared, 1, "a", "b");
        exchange(&mut analyser, &traffic.shared, 2, "c", "d");
        viewer.filter.agent = "d".into();
        let (shown, _) = entries(&viewer.sample().unwrap());
        let pairs: Vec<(&str, &str)> = shown
            .iter()
            .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
            .collect();
        assert_eq!(pairs, [("c", "d"), ("d", "c")]);
        viewer.filter = Filter {
            agent: String::new(),
            action: "add".into(),
        };
        exchange(&mut analyser, &traffic.shared, 3, "a", "b");
        let (shown, _) = entries(&viewer.sample().unwrap());
        assert_eq!(shown.len(), 2, "the request and its reply: {shown:?}");
        let dead = json!({"meta": {"id": "x"}, "from": "a", "to": "nobody",
            "action": {"name": "add", "args": {}}});
        let (entry, json) = entry(
            &mut analyser,
            &tap::Traffic::Undeliverable(dead.to_string()),
        );
        traffic.shared.push(entry, json);
        let (shown, _) = entries(&viewer.sample().unwrap());
        assert_eq!(shown[0]["kind"], "undeliverable");
    }
}
