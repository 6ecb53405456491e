//! [`Context`]: what an action or callback can do besides computing its result.

use std::{cell::OnceCell, sync::Arc, time::Duration};

use serde::Serialize;
use serde_json::Value;

use agency_protocol::boundary::HostLink;

use crate::{ActionError, Kind, Message};

/// The agent's view of the space while it handles a message.
///
/// Actions take it as a `&mut Context` (or `&Context`) parameter; callbacks receive it.
pub struct Context {
    id: String,
    host: Arc<dyn HostLink>,
    current: Option<Current>,
    /// Set by a callback's default body: the agent does not implement it.
    kept_default: bool,
}

/// The largest buffer a context keeps for the next message's text when that text is
/// shorter.
const KEPT_BUFFER: usize = 4096;

/// The message being handled: its text, parsed only when someone looks at it.
struct Current {
    json: String,
    parsed: OnceCell<Option<Message>>,
}

impl Context {
    /// A context for agent `id` backed by `host`.
    pub(crate) fn new(id: impl Into<String>, host: Arc<dyn HostLink>) -> Self {
        Self {
            id: id.into(),
            host,
            current: None,
            kept_default: false,
        }
    }

    /// Marks the callback running as the SDK's default body (see [`crate::Agent`]).
    pub(crate) fn kept_default(&mut self) {
        self.kept_default = true;
    }

    /// Whether the callback `name` just ran its default body: then it answers
    /// "unsupported", and the host stops calling it (its default does nothing).
    pub(crate) fn took_default(&mut self, name: &str) -> Result<(), ActionError> {
        if std::mem::take(&mut self.kept_default) {
            return Err(ActionError::unsupported(name));
        }
        Ok(())
    }

    /// This agent's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The message being handled, if any.
    pub fn current_message(&self) -> Option<&Message> {
        let current = self.current.as_ref()?;
        current
            .parsed
            .get_or_init(|| Message::from_json(&current.json).ok())
            .as_ref()
    }

    /// The JSON text of the message being handled, if any.
    pub(crate) fn current_json(&self) -> Option<&str> {
        self.current.as_ref().map(|current| current.json.as_str())
    }

    /// Makes the message with this text the current one (kept if it already is). The
    /// text is copied into the last one's buffer unless that buffer is larger than both
    /// the text and [`KEPT_BUFFER`]: one large message does not stay allocated.
    pub(crate) fn set_current_json(&mut self, json: Option<&str>) {
        match (json, &mut self.current) {
            (Some(json), Some(current)) if current.json == json => {}
            (Some(json), Some(current))
                if current.json.capacity() <= json.len().max(KEPT_BUFFER) =>
            {
                current.json.clear();
                current.json.push_str(json);
                current.parsed = OnceCell::new();
            }
            (Some(json), _) => {
                self.current = Some(Current {
                    json: json.to_owned(),
                    parsed: OnceCell::new(),
                })
            }
            (None, _) => self.current = None,
        }
    }

    /// The message this agent sent that the current message answers, if it is still in the
    /// agent's bounded log.
    pub fn parent_message(&self) -> Option<Message> {
        let parent_id = self.current_message()?.meta.parent_id.as_ref()?;
        let text = self.host.sent_message(parent_id).ok()??;
        Message::from_json(&text).ok()
    }

    /// Sends a message without waiting; `from` and `meta.id` are filled in. Returns the id.
    ///
    /// ```no_run
    /// # fn demo(ctx: &agency_sdk::Context) -> Result<(), agency_sdk::ActionError> {
    /// ctx.send(serde_json::json!({
    ///     "to": "Chatty",
    ///     "action": {"name": "say", "args": {"content": "hello"}}
    /// }))?;
    /// # Ok(()) }
    /// ```
    pub fn send(&self, message: impl Serialize) -> Result<String, ActionError> {
        self.host.send(&serde_json::to_string(&message)?)
    }

    /// Sends action `name` with `args` to agent `to` (or `*`); answers the message id.
    ///
    /// ```no_run
    /// # fn demo(ctx: &agency_sdk::Context) -> Result<(), agency_sdk::ActionError> {
    /// ctx.send_action("Chatty", "say", serde_json::json!({"content": "hello"}))?;
    /// # Ok(()) }
    /// ```
    pub fn send_action(
        &self,
        to: &str,
        name: &str,
        args: impl Serialize,
    ) -> Result<String, ActionError> {
        self.send(OutgoingAction::new(to, name, args))
    }

    /// Requests action `name` with `args` from agent `to` and waits for the value, as
    /// [`Context::request`] does.
    pub fn request_action(
        &self,
        to: &str,
        name: &str,
        args: impl Serialize,
        timeout: Duration,
    ) -> Result<Value, ActionError> {
        self.request(OutgoingAction::new(to, name, args), timeout)
    }

    /// Sends a message and waits for its `[response]` value or `[error]`.
    ///
    /// Fails with kind `TimeoutError` after `timeout`, or with the kind the other agent
    /// reported. The reply reaches this call directly, never queued behind the running
    /// action. A request to this agent itself times out: its actions run one at a time.
    pub fn request(
        &self,
        message: impl Serialize,
        timeout: Duration,
    ) -> Result<Value, ActionError> {
        self.host
            .request_text(&serde_json::to_string(&message)?, timeout.as_secs_f64())
    }

    /// Sends every message at once, then waits up to `timeout` in all for their replies:
    /// each request's outcome, in order, as [`Context::request`] would answer it. Requests
    /// to different agents run side by side, so the wait is the slowest one's, not the
    /// sum.
    ///
    /// ```no_run
    /// # fn demo(ctx: &agency_sdk::Context) {
    /// use serde_json::json;
    /// let sums = ctx.request_all(
    ///     [
    ///         json!({"to": "Calculator", "action": {"name": "add", "args": {"a": 1, "b": 2}}}),
    ///         json!({"to": "Abacus", "action": {"name": "add", "args": {"a": 3, "b": 4}}}),
    ///     ],
    ///     std::time::Duration::from_secs(5),
    /// );
    /// # }
    /// ```
    pub fn request_all<M: Serialize>(
        &self,
        messages: impl IntoIterator<Item = M>,
        timeout: Duration,
    ) -> Vec<Result<Value, ActionError>> {
        let messages: Vec<Result<Value, ActionError>> = messages
            .into_iter()
            .map(|message| Ok(serde_json::to_value(message)?))
            .collect();
        let valid = messages.iter().flatten().cloned().collect();
        let mut outcomes = self
            .host
            .request_all(valid, timeout.as_secs_f64())
            .into_iter();
        messages
            .into_iter()
            .map(|message| {
                message.and_then(|_| {
                    outcomes.next().unwrap_or_else(|| {
                        Err(ActionError::of(Kind::Runtime, "the host lost a request"))
                    })
                })
            })
            .collect()
    }

    /// Sends a `[response]` with `value` to the sender of the current message.
    /// May be called any number of times.
    pub fn respond_with(&self, value: impl Serialize) -> Result<(), ActionError> {
        let reply = self
            .current_or_err()?
            .response(serde_json::to_value(value)?);
        self.send(reply).map(drop)
    }

    /// Sends an `[error]` with `error` to the sender of the current message.
    pub fn raise_with(&self, error: impl Into<ActionError>) -> Result<(), ActionError> {
        let reply = self.current_or_err()?.error_reply(&error.into());
        self.send(reply).map(drop)
    }

    /// Asks the space's permission prompt (for example the console's y/n question) whether
    /// the current message may run. Without a prompt, or a current message, the answer is
    /// no. This is what [`crate::Agent::request_permission`] does unless overridden.
    pub fn ask_permission(&self) -> bool {
        self.current_json()
            .is_some_and(|json| self.host.ask_permission(json).unwrap_or(false))
    }

    fn current_or_err(&self) -> Result<&Message, ActionError> {
        self.current_message()
            .ok_or_else(|| ActionError::of(Kind::Runtime, "no message is being handled"))
    }
}

/// `{"to", "action": {"name", "args"}}`, serialised without building a JSON value first.
#[derive(Serialize)]
struct OutgoingAction<'a, A> {
    to: &'a str,
    action: ActionBody<'a, A>,
}

#[derive(Serialize)]
struct ActionBody<'a, A> {
    name: &'a str,
    args: A,
}

impl<'a, A: Serialize> OutgoingAction<'a, A> {
    fn new(to: &'a str, name: &'a str, args: A) -> Self {
        Self {
            to,
            action: ActionBody { name, args },
        }
    }
}
