//! The plugin boundary's encoding, in one place.
//!
//! The ABI (`agency-abi`) carries every call as an operation name and a JSON text. Here,
//! and nowhere else, each call of the [`crate::boundary`] traits becomes one value of
//! [`AgentCall`] (host → agent) or [`HostCall`] (agent → host), is encoded to that pair and
//! decoded back; answers are encoded per call. Errors cross as `"<Kind>: <text>"` and come
//! back as the same [`ActionError`]; a call a side does not know is answered with
//! [`ActionError::unsupported`], so old plugins keep working with newer hosts and back.
//!
//! The wrappers put a trait object behind an ABI box (`export_*`, for the side that
//! implements the trait) and an ABI box behind the trait (`Imported*`, for the side that
//! calls it). Every exported method body runs under [`guarded`]: a panic becomes an error.

use std::{
    borrow::Cow,
    sync::{Arc, OnceLock},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RStr, RString},
};
use agency_abi::{
    guarded, AgentBox, AgentObj, AgentObj_TO, CallResult, HostBox, HostObj, HostObj_TO, SinkBox,
    SinkObj, SinkObj_TO, TransportBox, TransportObj, TransportObj_TO,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    boundary::{AgentCore, HostLink, Inbound, LogRecord, TransportError, TransportSpace},
    spec::PluginMetrics,
    ActionError, Kind,
};

/// A call the host makes on an agent. Messages are the JSON text they arrived as.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentCall<'a> {
    /// [`AgentCore::after_add`]
    AfterAdd,
    /// [`AgentCore::before_remove`]
    BeforeRemove,
    /// [`AgentCore::request_permission`]
    RequestPermission(&'a str),
    /// [`AgentCore::before_action`]
    BeforeAction(&'a str),
    /// [`AgentCore::action`]
    Action(&'a str),
    /// [`AgentCore::after_action`]
    AfterAction(Cow<'a, Result<Option<Value>, ActionError>>),
    /// [`AgentCore::handle_action_value`]
    HandleActionValue(&'a str),
    /// [`AgentCore::handle_action_error`]
    HandleActionError(&'a str),
}

/// The payload of [`AgentCall::AfterAction`] (`value` as in [`ActionOutcome`]).
#[derive(Serialize, Deserialize)]
struct AfterActionPayload {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    value: Option<Value>,
    error: Option<String>,
}

/// The answer to [`AgentCall::Action`]: `value` is absent when the action returns nothing
/// and `null` when it returns `null`.
#[derive(Serialize, Deserialize)]
struct ActionOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    value: Option<Value>,
}

/// Reads a field that is present as `Some`, even when it is `null`.
mod present {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(value: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        value.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Value::deserialize(d).map(Some)
    }
}

/// The JSON text of an answer that carries nothing.
const NOTHING: &str = "null";

impl<'a> AgentCall<'a> {
    /// The operation name and JSON payload this call crosses the ABI as.
    pub fn encode(&self) -> (&'static str, Cow<'a, str>) {
        match self {
            Self::AfterAdd => ("after_add", "{}".into()),
            Self::BeforeRemove => ("before_remove", "{}".into()),
            Self::RequestPermission(message) => ("request_permission", (*message).into()),
            Self::BeforeAction(message) => ("before_action", (*message).into()),
            Self::Action(message) => ("action", (*message).into()),
            Self::AfterAction(outcome) => {
                let payload = AfterActionPayload {
                    value: outcome.as_ref().as_ref().ok().cloned().flatten(),
                    error: outcome.as_ref().as_ref().err().map(ToString::to_string),
                };
                ("after_action", json(&payload).into())
            }
            Self::HandleActionValue(message) => ("handle_action_value", (*message).into()),
            Self::HandleActionError(message) => ("handle_action_error", (*message).into()),
        }
    }

    /// The call an operation name and payload stand for.
    pub fn decode(op: &str, payload: &'a str) -> Result<Self, ActionError> {
        Ok(match op {
            "after_add" => Self::AfterAdd,
            "before_remove" => Self::BeforeRemove,
            "request_permission" => Self::RequestPermission(payload),
            "before_action" => Self::BeforeAction(payload),
            "action" => Self::Action(payload),
            "after_action" => {
                let after: AfterActionPayload = parse(payload)?;
                Self::AfterAction(Cow::Owned(match after.error {
                    Some(error) => Err(ActionError::parse(&error)),
                    None => Ok(after.value),
                }))
            }
            "handle_action_value" => Self::HandleActionValue(payload),
            "handle_action_error" => Self::HandleActionError(payload),
            _ => return Err(ActionError::unsupported(op)),
        })
    }

    /// Runs the call on `agent`; answers the JSON text the ABI carries back.
    fn run(self, agent: &mut dyn AgentCore) -> Result<String, ActionError> {
        let done = |result: Result<(), ActionError>| result.map(|()| NOTHING.to_owned());
        match self {
            Self::AfterAdd => done(agent.after_add()),
            Self::BeforeRemove => done(agent.before_remove()),
            Self::RequestPermission(message) => agent.request_permission(message).map(json),
            Self::BeforeAction(message) => done(agent.before_action(message)),
            Self::Action(message) => agent
                .action(message)
                .map(|value| json(&ActionOutcome { value })),
            Self::AfterAction(outcome) => done(agent.after_action(&outcome)),
            Self::HandleActionValue(message) => done(agent.handle_action_value(message)),
            Self::HandleActionError(message) => done(agent.handle_action_error(message)),
        }
    }
}

/// A call an agent makes on its host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCall<'a> {
    /// [`HostLink::send`]
    Send(&'a str),
    /// [`HostLink::request`]: the message and the timeout in seconds.
    Request(Value, f64),
    /// [`HostLink::request_text`]: the message's text and the timeout in seconds.
    RequestText(&'a str, f64),
    /// [`HostLink::request_all`]: the messages and the timeout in seconds.
    RequestAll(Vec<Value>, f64),
    /// [`HostLink::ask_permission`]
    AskPermission(&'a str),
    /// [`HostLink::sent_message`]
    SentMessage(Cow<'a, str>),
    /// [`HostLink::log`]
    Log(Cow<'a, LogRecord>),
    /// [`HostLink::report_metrics`]
    Metrics(Cow<'a, PluginMetrics>),
}

/// The payload of [`HostCall::Request`].
#[derive(Serialize, Deserialize)]
struct RequestPayload {
    message: Value,
    timeout: f64,
}

/// The payload of [`HostCall::RequestText`]: the message is kept as it was written.
#[derive(Deserialize)]
struct RequestTextPayload<'a> {
    #[serde(borrow)]
    message: &'a serde_json::value::RawValue,
    timeout: f64,
}

/// The payload of [`HostCall::RequestAll`].
#[derive(Serialize, Deserialize)]
struct RequestAllPayload {
    messages: Vec<Value>,
    timeout: f64,
}

/// One request's outcome in the answer of [`HostCall::RequestAll`]: `{"value": ...}` or
/// `{"error": "Kind: text"}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RequestOutcome {
    Value(Value),
    Error(String),
}

impl From<Result<Value, ActionError>> for RequestOutcome {
    fn from(outcome: Result<Value, ActionError>) -> Self {
        match outcome {
            Ok(value) => Self::Value(value),
            Err(error) => Self::Error(error.to_string()),
        }
    }
}

impl From<RequestOutcome> for Result<Value, ActionError> {
    fn from(outcome: RequestOutcome) -> Self {
        match outcome {
            RequestOutcome::Value(value) => Ok(value),
            RequestOutcome::Error(text) => Err(ActionError::parse(&text)),
        }
    }
}

/// The payload of [`HostCall::SentMessage`].
#[derive(Serialize, Deserialize)]
struct SentMessagePayload<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

impl<'a> HostCall<'a> {
    /// The operation name and JSON payload this call crosses the ABI as.
    pub fn encode(&self) -> (&'static str, Cow<'a, str>) {
        match self {
            Self::Send(message) => ("send", (*message).into()),
            Self::Request(message, timeout) => {
                let payload = RequestPayload {
                    message: message.clone(),
                    timeout: *timeout,
                };
                ("request", json(&payload).into())
            }
            Self::RequestText(message, timeout) => {
                // The message is JSON text already: written in, not encoded again.
                let payload = format!(r#"{{"message":{message},"timeout":{}}}"#, json(timeout));
                ("request_text", payload.into())
            }
            Self::RequestAll(messages, timeout) => {
                let payload = RequestAllPayload {
                    messages: messages.clone(),
                    timeout: *timeout,
                };
                ("request_all", json(&payload).into())
            }
            Self::AskPermission(message) => ("ask_permission", (*message).into()),
            Self::SentMessage(id) => (
                "sent_message",
                json(&SentMessagePayload { id: id.clone() }).into(),
            ),
            Self::Log(record) => ("log", json(record).into()),
            Self::Metrics(metrics) => ("metrics", json(metrics).into()),
        }
    }

    /// The call an operation name and payload stand for.
    pub fn decode(op: &str, payload: &'a str) -> Result<Self, ActionError> {
        Ok(match op {
            "send" => Self::Send(payload),
            "request" => {
                let RequestPayload { message, timeout } = parse(payload)?;
                Self::Request(message, timeout)
            }
            "request_text" => {
                let RequestTextPayload { message, timeout } = parse(payload)?;
                Self::RequestText(message.get(), timeout)
            }
            "request_all" => {
                let RequestAllPayload { messages, timeout } = parse(payload)?;
                Self::RequestAll(messages, timeout)
            }
            "ask_permission" => Self::AskPermission(payload),
            "sent_message" => Self::SentMessage(parse::<SentMessagePayload>(payload)?.id),
            "log" => Self::Log(Cow::Owned(parse(payload)?)),
            "metrics" => Self::Metrics(Cow::Owned(parse(payload)?)),
            _ => return Err(ActionError::unsupported(op)),
        })
    }

    /// Runs the call on `host`; answers the JSON text the ABI carries back.
    fn run(self, host: &dyn HostLink) -> Result<String, ActionError> {
        match self {
            Self::Send(message) => host.send(message).map(json),
            Self::Request(message, timeout) => host.request(message, timeout).map(json),
            Self::RequestText(message, timeout) => host.request_text(message, timeout).map(json),
            Self::RequestAll(messages, timeout) => {
                let outcomes: Vec<RequestOutcome> = host
                    .request_all(messages, timeout)
                    .into_iter()
                    .map(RequestOutcome::from)
                    .collect();
                Ok(json(outcomes))
            }
            Self::AskPermission(message) => host.ask_permission(message).map(json),
            Self::SentMessage(id) => host
                .sent_message(&id)
                .map(|sent| sent.unwrap_or_else(|| NOTHING.to_owned())),
            Self::Log(record) => host.log(&record).map(|()| NOTHING.to_owned()),
            Self::Metrics(metrics) => host.report_metrics(&metrics).map(|()| NOTHING.to_owned()),
        }
    }
}

/// `value` as JSON text (the types encoded here always serialise).
fn json(value: impl Serialize) -> String {
    serde_json::to_string(&value).expect("boundary payloads serialise")
}

/// Reads a payload or an answer; a malformed one is a `TypeError`.
fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ActionError> {
    serde_json::from_str(text).map_err(|e| {
        ActionError::of(
            Kind::Type,
            format!("malformed data across the plugin boundary: {e}"),
        )
    })
}

fn to_call_result(result: Result<String, ActionError>) -> CallResult {
    result
        .map(RString::from)
        .map_err(|e| RString::from(e.to_string()))
        .into()
}

/// The answer the ABI carried back: its JSON text, or the error it reported.
fn from_call_result(result: CallResult) -> Result<String, ActionError> {
    result
        .into_result()
        .map(RString::into_string)
        .map_err(|e| ActionError::parse(&e))
}

// ---- host services ----------------------------------------------------------------------

/// Puts host services behind the ABI, for a plugin (host side).
pub fn export_host(host: Arc<dyn HostLink>) -> HostBox {
    HostObj_TO::from_ptr(RArc::new(ExportedHost(host)), TD_Opaque)
}

struct ExportedHost(Arc<dyn HostLink>);

impl HostObj for ExportedHost {
    fn call(&self, op: RStr<'_>, payload: RStr<'_>) -> CallResult {
        guarded(|| {
            to_call_result(
                HostCall::decode(op.as_str(), payload.as_str()).and_then(|call| call.run(&*self.0)),
            )
        })
    }
}

/// Host services as a plugin sees them (plugin side).
pub struct ImportedHost {
    host: HostBox,
    /// Whether the host knows [`HostCall::RequestText`], once asked.
    reads_request_text: OnceLock<bool>,
}

impl ImportedHost {
    /// The host services behind `host`.
    pub fn new(host: HostBox) -> Self {
        Self {
            host,
            reads_request_text: OnceLock::new(),
        }
    }

    fn call(&self, call: HostCall<'_>) -> Result<String, ActionError> {
        let (op, payload) = call.encode();
        from_call_result(self.host.call(op.into(), payload.as_ref().into()))
    }

    /// Whether the host knows `request_text`: asked once, with an empty payload, which a
    /// host that knows it refuses as malformed and an older one as unsupported. (A
    /// request's own error cannot tell: any peer may answer "unsupported".)
    fn reads_request_text(&self) -> bool {
        *self.reads_request_text.get_or_init(|| {
            let answer = from_call_result(self.host.call("request_text".into(), "".into()));
            !matches!(answer, Err(error) if error.is_unsupported())
        })
    }
}

impl HostLink for ImportedHost {
    fn send(&self, message: &str) -> Result<String, ActionError> {
        parse(&self.call(HostCall::Send(message))?)
    }

    fn request(&self, message: Value, timeout_secs: f64) -> Result<Value, ActionError> {
        parse(&self.call(HostCall::Request(message, timeout_secs))?)
    }

    /// Falls back to [`HostLink::request`] on a host from before `request_text`.
    fn request_text(&self, message: &str, timeout_secs: f64) -> Result<Value, ActionError> {
        if !self.reads_request_text() {
            return self.request(parse(message)?, timeout_secs);
        }
        parse(&self.call(HostCall::RequestText(message, timeout_secs))?)
    }

    /// Falls back to one request at a time on a host from before `request_all`.
    fn request_all(
        &self,
        messages: Vec<Value>,
        timeout_secs: f64,
    ) -> Vec<Result<Value, ActionError>> {
        let count = messages.len();
        let answer = self
            .call(HostCall::RequestAll(messages.clone(), timeout_secs))
            .and_then(|text| parse::<Vec<RequestOutcome>>(&text));
        match answer {
            Ok(outcomes) if outcomes.len() == count => {
                outcomes.into_iter().map(Into::into).collect()
            }
            Ok(outcomes) => vec![
                Err(ActionError::of(
                    Kind::Type,
                    format!(
                        "the host answered {} outcomes for {count} requests",
                        outcomes.len()
                    ),
                ));
                count
            ],
            Err(error) if error.is_unsupported() => {
                crate::boundary::one_by_one(self, messages, timeout_secs)
            }
            Err(error) => vec![Err(error); count],
        }
    }

    fn ask_permission(&self, message: &str) -> Result<bool, ActionError> {
        parse(&self.call(HostCall::AskPermission(message))?)
    }

    fn sent_message(&self, id: &str) -> Result<Option<String>, ActionError> {
        let text = self.call(HostCall::SentMessage(id.into()))?;
        Ok((text.trim() != NOTHING).then_some(text))
    }

    fn log(&self, record: &LogRecord) -> Result<(), ActionError> {
        self.call(HostCall::Log(Cow::Borrowed(record))).map(drop)
    }

    fn report_metrics(&self, metrics: &PluginMetrics) -> Result<(), ActionError> {
        self.call(HostCall::Metrics(Cow::Borrowed(metrics)))
            .map(drop)
    }
}

// ---- agents -----------------------------------------------------------------------------

/// The init text of the root module's `new_agent`: the agent's id and args and, for an
/// agent that handles several messages at once, which share of it is asked for.
///
/// Such an agent is one value behind several boxes (the ABI's agent calls take
/// `&mut self`, so one box serves one message at a time). The host asks `new_agent` once
/// per handle with the same [`Share`]: the first call creates the agent and all its
/// handles and answers one, the others answer the rest. Plugins from before `share`
/// ignore it; they have no concurrent types, so the host asks them once.
///
/// ```
/// use agency_protocol::ffi::{NewAgent, Share};
/// let init = NewAgent { id: "p".into(), args: serde_json::json!({}), share: Some(Share { key: 7, handles: 4 }) };
/// assert_eq!(
///     serde_json::to_string(&init).unwrap(),
///     r#"{"id":"p","args":{},"share":{"key":7,"handles":4}}"#
/// );
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewAgent {
    /// The agent's id.
    pub id: String,
    /// Its configuration.
    #[serde(default)]
    pub args: Value,
    /// Which concurrent agent this handle belongs to; absent for an ordinary agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Share>,
}

/// The handles of one concurrent agent, as [`NewAgent::share`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Chosen by the host, the same for every handle of one agent and unique in the
    /// process.
    pub key: u64,
    /// How many handles the agent gets.
    pub handles: u32,
}

/// Puts an agent behind the ABI, for the host (plugin side).
pub fn export_agent(agent: Box<dyn AgentCore>) -> AgentBox {
    AgentObj_TO::from_value(ExportedAgent(agent), TD_Opaque)
}

struct ExportedAgent(Box<dyn AgentCore>);

impl AgentObj for ExportedAgent {
    fn call(&mut self, op: RStr<'_>, payload: RStr<'_>) -> CallResult {
        guarded(|| {
            to_call_result(
                AgentCall::decode(op.as_str(), payload.as_str())
                    .and_then(|call| call.run(&mut *self.0)),
            )
        })
    }
}

/// An agent living in a plugin, as the host drives it (host side).
pub struct ImportedAgent(pub AgentBox);

impl ImportedAgent {
    fn call(&mut self, call: AgentCall<'_>) -> Result<String, ActionError> {
        let (op, payload) = call.encode();
        from_call_result(self.0.call(op.into(), payload.as_ref().into()))
    }

    fn call_done(&mut self, call: AgentCall<'_>) -> Result<(), ActionError> {
        self.call(call).map(drop)
    }
}

impl AgentCore for ImportedAgent {
    fn after_add(&mut self) -> Result<(), ActionError> {
        self.call_done(AgentCall::AfterAdd)
    }

    fn before_remove(&mut self) -> Result<(), ActionError> {
        self.call_done(AgentCall::BeforeRemove)
    }

    fn request_permission(&mut self, message: &str) -> Result<bool, ActionError> {
        parse(&self.call(AgentCall::RequestPermission(message))?)
    }

    fn before_action(&mut self, message: &str) -> Result<(), ActionError> {
        self.call_done(AgentCall::BeforeAction(message))
    }

    fn action(&mut self, message: &str) -> Result<Option<Value>, ActionError> {
        let outcome: ActionOutcome = parse(&self.call(AgentCall::Action(message))?)?;
        Ok(outcome.value)
    }

    fn after_action(
        &mut self,
        outcome: &Result<Option<Value>, ActionError>,
    ) -> Result<(), ActionError> {
        self.call_done(AgentCall::AfterAction(Cow::Borrowed(outcome)))
    }

    fn handle_action_value(&mut self, message: &str) -> Result<(), ActionError> {
        self.call_done(AgentCall::HandleActionValue(message))
    }

    fn handle_action_error(&mut self, message: &str) -> Result<(), ActionError> {
        self.call_done(AgentCall::HandleActionError(message))
    }
}

// ---- transports and sinks ---------------------------------------------------------------

/// Puts an open transport space behind the ABI, for the host (plugin side).
pub fn export_transport(space: Box<dyn TransportSpace>) -> TransportBox {
    TransportObj_TO::from_value(ExportedTransport(space), TD_Opaque)
}

struct ExportedTransport(Box<dyn TransportSpace>);

impl TransportObj for ExportedTransport {
    fn attach(&self, agent_id: RStr<'_>, sink: SinkBox) -> RResult<(), RString> {
        guarded(|| {
            self.0
                .attach(agent_id.as_str(), Arc::new(ImportedSink(sink)))
                .map_err(|error| RString::from(error.to_string()))
                .into()
        })
    }

    fn detach(&self, agent_id: RStr<'_>) {
        let _ = guarded(|| {
            self.0.detach(agent_id.as_str());
            RResult::ROk(())
        });
    }

    fn publish(&self, to: RStr<'_>, body: RStr<'_>) -> RResult<(), RString> {
        guarded(|| {
            self.0
                .publish(to.as_str(), body.as_str())
                .map_err(|error| RString::from(error.to_string()))
                .into()
        })
    }

    fn close(&self) {
        let _ = guarded(|| {
            self.0.close();
            RResult::ROk(())
        });
    }
}

/// A transport living in a plugin, as the host uses it (host side).
pub struct ImportedTransport(pub TransportBox);

impl TransportSpace for ImportedTransport {
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), TransportError> {
        let sink = SinkObj_TO::from_ptr(RArc::new(ExportedSink(sink)), TD_Opaque);
        self.0
            .attach(agent_id.into(), sink)
            .into_result()
            .map_err(|text| TransportError::read(agent_id, &text))
    }

    fn detach(&self, agent_id: &str) {
        self.0.detach(agent_id.into());
    }

    fn publish(&self, to: &str, body: &str) -> Result<(), TransportError> {
        self.0
            .publish(to.into(), body.into())
            .into_result()
            .map_err(|text| TransportError::Failed(text.into_string()))
    }

    fn close(&self) {
        self.0.close();
    }
}

struct ExportedSink(Arc<dyn Inbound>);

impl SinkObj for ExportedSink {
    fn deliver(&self, body: RStr<'_>) {
        let _ = guarded(|| {
            self.0.deliver(body.as_str());
            RResult::ROk(())
        });
    }
}

struct ImportedSink(SinkBox);

impl Inbound for ImportedSink {
    fn deliver(&self, body: &str) {
        self.0.deliver(body.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_decodes_to_itself() {
        let message = r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x"}}"#;
        let failed = Err(ActionError::new("ValueError", "no"));
        for call in [
            AgentCall::AfterAdd,
            AgentCall::BeforeRemove,
            AgentCall::RequestPermission(message),
            AgentCall::BeforeAction(message),
            AgentCall::Action(message),
            AgentCall::AfterAction(Cow::Owned(Ok(Some(Value::Null)))),
            AgentCall::AfterAction(Cow::Owned(failed)),
            AgentCall::HandleActionValue(message),
            AgentCall::HandleActionError(message),
        ] {
            let (op, payload) = call.encode();
            assert_eq!(AgentCall::decode(op, &payload).unwrap(), call);
        }
        let record = LogRecord {
            level: "warn".into(),
            target: "t".into(),
            message: "m".into(),
        };
        for call in [
            HostCall::Send(message),
            HostCall::Request(serde_json::json!({"to": "b"}), 1.5),
            HostCall::RequestText(r#"{"to": "b"}"#, 1.5),
            HostCall::RequestAll(vec![serde_json::json!({"to": "b"}), Value::Null], 2.0),
            HostCall::AskPermission(message),
            HostCall::SentMessage("1".into()),
            HostCall::Log(Cow::Owned(record)),
            HostCall::Metrics(Cow::Owned(PluginMetrics::default())),
        ] {
            let (op, payload) = call.encode();
            assert_eq!(HostCall::decode(op, &payload).unwrap(), call);
        }
    }

    /// A host that answers a request with its `to`, or fails it when `to` is `fail`.
    struct Echo;

    impl HostLink for Echo {
        fn send(&self, _message: &str) -> Result<String, ActionError> {
            Err(ActionError::unsupported("send"))
        }
        fn request(&self, message: Value, _timeout_secs: f64) -> Result<Value, ActionError> {
            match &message["to"] {
                Value::String(to) if to == "fail" => Err(ActionError::new("TimeoutError", "late")),
                to => Ok(to.clone()),
            }
        }
        fn ask_permission(&self, _message: &str) -> Result<bool, ActionError> {
            Ok(false)
        }
        fn sent_message(&self, _id: &str) -> Result<Option<String>, ActionError> {
            Ok(None)
        }
        fn log(&self, _record: &LogRecord) -> Result<(), ActionError> {
            Ok(())
        }
    }

    /// A host from before `request_all` and `request_text`: it knows every other call.
    struct OldHost(HostBox);

    impl HostObj for OldHost {
        fn call(&self, op: RStr<'_>, payload: RStr<'_>) -> CallResult {
            if ["request_all", "request_text"].contains(&op.as_str()) {
                return to_call_result(Err(ActionError::unsupported(op.as_str())));
            }
            self.0.call(op, payload)
        }
    }

    /// The host behind `host` as a plugin sees it, or as it sees a host from before
    /// `request_all` and `request_text`.
    fn imported(host: impl HostLink + 'static, old: bool) -> ImportedHost {
        let exported = export_host(Arc::new(host));
        ImportedHost::new(match old {
            false => exported,
            true => HostObj_TO::from_ptr(RArc::new(OldHost(exported)), TD_Opaque),
        })
    }

    #[test]
    fn a_request_crosses_as_its_text_or_as_a_value_on_an_older_host() {
        for old in [false, true] {
            let host = imported(Echo, old);
            assert_eq!(host.reads_request_text(), !old);
            assert_eq!(
                host.request_text(r#"{"to": "b"}"#, 1.0),
                Ok(Value::from("b"))
            );
            assert_eq!(
                host.request_text(r#"{"to": "fail"}"#, 1.0),
                Err(ActionError::new("TimeoutError", "late")),
                "a request's error is its own, never taken for an older host's"
            );
            let error = host.request_text("{", 1.0).unwrap_err();
            assert_eq!(error.kind(), "TypeError", "{error}");
        }
    }

    #[test]
    fn several_requests_cross_as_one_call_or_one_by_one_on_an_older_host() {
        let messages = vec![
            serde_json::json!({"to": "a"}),
            serde_json::json!({"to": "fail"}),
            serde_json::json!({"to": "b"}),
        ];
        let expected = vec![
            Ok(Value::from("a")),
            Err(ActionError::new("TimeoutError", "late")),
            Ok(Value::from("b")),
        ];
        assert_eq!(
            imported(Echo, false).request_all(messages.clone(), 1.0),
            expected
        );
        assert_eq!(imported(Echo, true).request_all(messages, 1.0), expected);
    }

    #[test]
    fn unknown_calls_are_unsupported_by_kind() {
        assert!(AgentCall::decode("teleport", "{}")
            .unwrap_err()
            .is_unsupported());
        assert!(HostCall::decode("teleport", "{}")
            .unwrap_err()
            .is_unsupported());
    }

    #[test]
    fn a_null_action_value_is_kept_apart_from_no_value() {
        let text = |value| json(&ActionOutcome { value });
        assert_eq!(text(None), "{}");
        assert_eq!(text(Some(Value::Null)), r#"{"value":null}"#);
        let read = |text: &str| parse::<ActionOutcome>(text).unwrap().value;
        assert_eq!(read("{}"), None);
        assert_eq!(read(r#"{"value":null}"#), Some(Value::Null));
    }
}
