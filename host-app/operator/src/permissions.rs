//! Permission questions shared by every front end of one host: the first answer wins.
//!
//! A `requested` action whose agent does not decide by itself asks the space's permission
//! prompt. [`Permissions::install`] makes that prompt a question put to every front end
//! listening (the console, each open web page): each gets [`Notice::Asked`], any of them
//! may [`Permissions::answer`], and the first answer decides. Every listener then gets
//! [`Notice::Decided`], naming who answered, so the others stop asking and show the outcome.
//!
//! Invariant: **a question is decided exactly once, and never left waiting with nobody to
//! answer it.** Asked with no listener, it is refused at once; when the last listener
//! goes, the questions still open are refused (by `"nobody left to answer"`).

use std::{
    collections::BTreeMap,
    sync::{
        mpsc::{self, Receiver, Sender},
        Arc, Condvar, Mutex,
    },
};

use agency_protocol::Message;
use agency_runtime::Space;

/// One permission question: may `message` run `agent`'s `requested` action?
#[derive(Debug)]
pub struct Question {
    /// Its number, unique in this process (answers name it).
    pub id: u64,
    /// The agent whose action would run.
    pub agent: String,
    /// The message asking for it (its `from`, action and exact args).
    pub message: Message,
}

/// What a listener is told.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A new question is open.
    Asked(Arc<Question>),
    /// Question `id` was decided: `allowed` or not, by `by` (a front end's name).
    Decided {
        /// The question's number.
        id: u64,
        /// Whether the action may run.
        allowed: bool,
        /// Who answered: `"console"`, `"web page"`, or `"nobody left to answer"`.
        by: String,
    },
}

/// How a question was decided, for an answer that came too late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the action may run.
    pub allowed: bool,
    /// Who answered first.
    pub by: String,
}

/// Shown as `allowed by the web page`, `refused by the console`.
impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} by the {}", verdict(self.allowed), self.by)
    }
}

/// Why an answer to a permission question was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TooLate {
    /// Another answer came first.
    Decided(Decision),
    /// No question of that number was asked.
    NeverAsked(u64),
}

/// `already allowed by the console`, `no question 7 was asked`.
impl std::fmt::Display for TooLate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Decided(decision) => write!(f, "already {decision}"),
            Self::NeverAsked(id) => write!(f, "no question {id} was asked"),
        }
    }
}

impl std::error::Error for TooLate {}

/// A verdict in words: `allowed` or `refused`.
pub fn verdict(allowed: bool) -> &'static str {
    if allowed {
        "allowed"
    } else {
        "refused"
    }
}

/// The permission questions of one host, and the front ends listening for them. Clones
/// share the same questions.
///
/// ```
/// use agency_operator::{Notice, Permissions};
///
/// let permissions = Permissions::default();
/// let console = permissions.listen();
/// // Nobody asked yet: answering an unknown question says so.
/// assert!(permissions.answer(7, true, "console").is_err());
/// drop(console);
/// ```
#[derive(Clone, Default)]
pub struct Permissions {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    decided: Condvar,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Questions not decided yet, by number.
    open: BTreeMap<u64, Arc<Question>>,
    /// The latest decisions (up to [`REMEMBERED`]), for their askers and for answers
    /// that come too late.
    decisions: BTreeMap<u64, Decision>,
    next_listener: u64,
    listeners: Vec<(u64, Sender<Notice>)>,
}

/// A front end's end of [`Permissions`]: its notices, in order. Dropping it stops
/// listening (and, if it was the last listener, refuses the questions still open).
pub struct Listener {
    id: u64,
    notices: Receiver<Notice>,
    permissions: Permissions,
}

impl Listener {
    /// The notices, in the order they happened; the iterator ends only with the hub.
    pub fn notices(&self) -> &Receiver<Notice> {
        &self.notices
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut state = self.permissions.shared.state.lock().unwrap();
        state.listeners.retain(|(id, _)| *id != self.id);
        if state.listeners.is_empty() {
            let open: Vec<u64> = state.open.keys().copied().collect();
            for id in open {
                decide(&mut state, id, false, "nobody left to answer");
            }
            self.permissions.shared.decided.notify_all();
        }
    }
}

impl Permissions {
    /// A hub that asks the questions of `space`'s permission prompt.
    pub fn install(space: &Space) -> Self {
        let permissions = Self::default();
        let asker = permissions.clone();
        space.set_permission_prompt(move |agent, message| asker.ask(agent, message));
        permissions
    }

    /// Starts listening: the questions already open come first, as [`Notice::Asked`].
    pub fn listen(&self) -> Listener {
        let (sender, notices) = mpsc::channel();
        let mut state = self.shared.state.lock().unwrap();
        for question in state.open.values() {
            let _ = sender.send(Notice::Asked(question.clone()));
        }
        state.next_listener += 1;
        let id = state.next_listener;
        state.listeners.push((id, sender));
        Listener {
            id,
            notices,
            permissions: self.clone(),
        }
    }

    /// Asks every listener whether `message` may run `agent`'s action, and waits for the
    /// first answer; refused at once when nobody listens.
    pub fn ask(&self, agent: &str, message: &Message) -> bool {
        let mut state = self.shared.state.lock().unwrap();
        if state.listeners.is_empty() {
            return false;
        }
        state.next_id += 1;
        let id = state.next_id;
        let question = Arc::new(Question {
            id,
            agent: agent.to_owned(),
            message: message.clone(),
        });
        state.open.insert(id, question.clone());
        notify(&mut state, Notice::Asked(question));
        loop {
            if let Some(decision) = state.decisions.get(&id) {
                return decision.allowed;
            }
            state = self.shared.decided.wait(state).unwrap();
        }
    }

    /// Answers question `id` for front end `by`; fails with the decision already taken
    /// when this answer came too late.
    pub fn answer(&self, id: u64, allowed: bool, by: &str) -> Result<(), TooLate> {
        let mut state = self.shared.state.lock().unwrap();
        if !state.open.contains_key(&id) {
            let earlier = state.decisions.get(&id).cloned().or_else(|| {
                (id <= state.next_id).then(|| Decision {
                    allowed: false,
                    by: "an earlier answer".into(),
                })
            });
            return Err(earlier.map_or(TooLate::NeverAsked(id), TooLate::Decided));
        }
        decide(&mut state, id, allowed, by);
        self.shared.decided.notify_all();
        Ok(())
    }

    /// The questions open now, oldest first.
    pub fn open(&self) -> Vec<Arc<Question>> {
        self.shared
            .state
            .lock()
            .unwrap()
            .open
            .values()
            .cloned()
            .collect()
    }
}

/// How many decisions are remembered.
const REMEMBERED: usize = 1024;

/// Closes question `id` with a decision and tells every listener.
fn decide(state: &mut State, id: u64, allowed: bool, by: &str) {
    if state.open.remove(&id).is_none() {
        return;
    }
    let by = by.to_owned();
    if state.decisions.len() >= REMEMBERED {
        state.decisions.pop_first();
    }
    state.decisions.insert(
        id,
        Decision {
            allowed,
            by: by.clone(),
        },
    );
    notify(state, Notice::Decided { id, allowed, by });
}

/// Sends `notice` to every listener (one that went away is forgotten at its drop).
fn notify(state: &mut State, notice: Notice) {
    for (_, listener) in &state.listeners {
        let _ = listener.send(notice.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        serde_json::from_value(serde_json::json!({
            "meta": {"id": "m1"}, "from": "User", "to": "Host",
            "action": {"name": "run_command", "args": {"command": "ls"}}
        }))
        .unwrap()
    }

    #[test]
    fn the_first_answer_wins_and_everyone_hears_it() {
        let permissions = Permissions::default();
        let (console, page) = (permissions.listen(), permissions.listen());
        let asker = {
            let permissions = permissions.clone();
            std::thread::spawn(move || permissions.ask("Host", &message()))
        };
        let Notice::Asked(question) = page.notices().recv().unwrap() else {
            panic!("a question first")
        };
        assert!(matches!(console.notices().recv(), Ok(Notice::Asked(_))));
        permissions.answer(question.id, true, "web page").unwrap();
        let late = permissions.answer(question.id, false, "console");
        assert_eq!(
            late.unwrap_err(),
            TooLate::Decided(Decision {
                allowed: true,
                by: "web page".into()
            })
        );
        assert_eq!(
            permissions.answer(1000, true, "console").unwrap_err(),
            TooLate::NeverAsked(1000)
        );
        assert!(asker.join().unwrap());
        for listener in [&console, &page] {
            assert!(matches!(
                listener.notices().recv(),
                Ok(Notice::Decided { allowed: true, .. })
            ));
        }
    }

    #[test]
    fn nobody_listening_refuses_and_the_last_listener_leaving_refuses_what_is_open() {
        let permissions = Permissions::default();
        assert!(!permissions.ask("Host", &message()));
        let listener = permissions.listen();
        let asker = {
            let permissions = permissions.clone();
            std::thread::spawn(move || permissions.ask("Host", &message()))
        };
        assert!(matches!(listener.notices().recv(), Ok(Notice::Asked(_))));
        drop(listener);
        assert!(!asker.join().unwrap());
        assert!(permissions.open().is_empty());
    }
}
