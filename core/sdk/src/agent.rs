//! The [`Agent`] trait (construction and callbacks), the registry of agent types, and the
//! dispatcher that turns host operations into calls on an agent value.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{
    boundary::{AgentCore, HostLink},
    protocol::{agent_op, ActionOutcome, AfterAction, AgentTypeSpec, UNSUPPORTED},
    ActionError, Context, Message,
};

/// What an agent is created from: its id and the `args` given in `agency.toml` or
/// `Space::add`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Init {
    /// The agent's id in the space.
    pub id: String,
    /// Its configuration (a JSON object, `{}` when none was given).
    #[serde(default)]
    pub args: Value,
}

impl Init {
    /// Deserialises the whole `args` object into a configuration type.
    ///
    /// ```
    /// #[derive(serde::Deserialize, Default)]
    /// #[serde(default)]
    /// struct Config { greeting: String }
    /// let init = agency_sdk::Init { id: "a".into(), args: serde_json::json!({"greeting": "hi"}) };
    /// assert_eq!(init.args::<Config>().unwrap().greeting, "hi");
    /// ```
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, ActionError> {
        let args = if self.args.is_null() { Value::Object(Map::new()) } else { self.args.clone() };
        serde_json::from_value(args)
            .map_err(|e| ActionError::new("TypeError", format!("invalid args for agent {:?}: {e}", self.id)))
    }
}

/// An agent: how it is built and how it reacts around its actions.
///
/// Its actions come from an `impl` block marked [`crate::actions`]. Every callback has a
/// default that does nothing.
///
/// ```
/// use agency_sdk::prelude::*;
///
/// /// Greets people.
/// pub struct Greeter { greeting: String }
///
/// impl Agent for Greeter {
///     fn new(init: &Init) -> Result<Self, ActionError> {
///         Ok(Self { greeting: "Hello".into() })
///     }
/// }
///
/// #[actions]
/// impl Greeter {
///     /// Greets someone by name.
///     ///
///     /// - name: who to greet
///     ///
///     /// Returns: the greeting
///     #[action]
///     fn greet(&mut self, name: String) -> String {
///         format!("{}, {name}!", self.greeting)
///     }
/// }
/// ```
pub trait Agent: Sized + Send + 'static {
    /// Builds the agent from its id and configuration.
    fn new(init: &Init) -> Result<Self, ActionError>;

    /// Called once the agent is in the space; it may send (but not request).
    fn after_add(&mut self, _ctx: &mut Context) {}

    /// Called before the agent leaves the space.
    fn before_remove(&mut self, _ctx: &mut Context) {}

    /// Called before an existing, permitted action runs.
    fn before_action(&mut self, _ctx: &mut Context, _message: &Message) {}

    /// Called after every action, with what it returned or the error it raised.
    fn after_action(
        &mut self,
        _ctx: &mut Context,
        _message: &Message,
        _value: Option<&Value>,
        _error: Option<&str>,
    ) {
    }

    /// Receives `[response]` values that no pending request was waiting for.
    fn handle_action_value(&mut self, _ctx: &mut Context, _value: &Value) {}

    /// Receives `[error]` texts that no pending request was waiting for.
    fn handle_action_error(&mut self, _ctx: &mut Context, _error: &str) {}

    /// Decides whether a `requested` action may run. By default asks the space's
    /// permission prompt (the console asks y/n); without one the answer is no.
    fn request_permission(&mut self, ctx: &mut Context, message: &Message) -> bool {
        ctx.ask_permission(message)
    }
}

/// The action table of an agent type; implemented by [`crate::actions`], not by hand.
#[doc(hidden)]
pub trait Actions: Agent {
    /// The type's name and the description of its actions.
    fn type_spec() -> AgentTypeSpec;
    /// Runs action `name`; `None` when there is no such action.
    fn dispatch(
        &mut self,
        ctx: &mut Context,
        name: &str,
        args: &Map<String, Value>,
    ) -> Option<Result<Option<Value>, ActionError>>;
}

/// A registered agent type: what [`crate::actions`] submits for each `impl` block, in a
/// plugin library or in the host binary alike.
pub struct AgentType {
    /// The type's name.
    pub name: &'static str,
    /// Describes the type and its actions.
    pub spec: fn() -> AgentTypeSpec,
    /// Creates an instance for the host to drive.
    pub create: fn(&Init, Arc<dyn HostLink>) -> Result<Box<dyn AgentCore>, ActionError>,
}

inventory::collect!(AgentType);

/// Every agent type compiled into the current library or binary.
pub fn agent_types() -> impl Iterator<Item = &'static AgentType> {
    inventory::iter::<AgentType>.into_iter()
}

/// Creates an `A` and wraps it for the host; used by [`AgentType::create`].
#[doc(hidden)]
pub fn create_agent<A: Actions>(
    init: &Init,
    host: Arc<dyn HostLink>,
) -> Result<Box<dyn AgentCore>, ActionError> {
    let agent = catch_panic(|| A::new(init))?;
    Ok(Box::new(Dispatcher { agent, ctx: Context::new(init.id.clone(), host), current_json: String::new() }))
}

/// Drives one agent value: decodes host operations, calls the agent, encodes the answer.
struct Dispatcher<A> {
    agent: A,
    ctx: Context,
    /// The JSON text of the context's current message, to skip re-parsing it when
    /// `before_action`, `action` and `request_permission` carry the same message.
    current_json: String,
}

impl<A: Actions> AgentCore for Dispatcher<A> {
    fn call(&mut self, op: &str, payload: &str) -> Result<String, String> {
        catch_panic(|| self.run(op, payload)).map_err(|e| e.to_string())
    }
}

impl<A: Actions> Dispatcher<A> {
    fn run(&mut self, op: &str, payload: &str) -> Result<String, ActionError> {
        let done = || Ok("null".to_owned());
        match op {
            agent_op::AFTER_ADD | agent_op::BEFORE_REMOVE => {
                self.ctx.set_current(None);
                self.current_json.clear();
                if op == agent_op::AFTER_ADD {
                    self.agent.after_add(&mut self.ctx);
                } else {
                    self.agent.before_remove(&mut self.ctx);
                }
            }
            agent_op::AFTER_ACTION => {
                let after: AfterAction = serde_json::from_str(payload)?;
                let message = self.current()?;
                let (value, error) = (after.value.as_ref(), after.error.as_deref());
                self.agent.after_action(&mut self.ctx, &message, value, error);
            }
            agent_op::ACTION => {
                let message = self.load(payload)?;
                let outcome = self
                    .agent
                    .dispatch(&mut self.ctx, &message.action.name, &message.action.args)
                    .unwrap_or_else(|| Err(unknown_action(&message, self.ctx.id())))?;
                return Ok(serde_json::to_string(&ActionOutcome { value: outcome })?);
            }
            agent_op::REQUEST_PERMISSION => {
                let message = self.load(payload)?;
                return Ok(self.agent.request_permission(&mut self.ctx, &message).to_string());
            }
            agent_op::BEFORE_ACTION => {
                let message = self.load(payload)?;
                self.agent.before_action(&mut self.ctx, &message);
            }
            agent_op::HANDLE_ACTION_VALUE => {
                let message = self.load(payload)?;
                let value = message.action.args.get("value").cloned().unwrap_or(Value::Null);
                self.agent.handle_action_value(&mut self.ctx, &value);
            }
            agent_op::HANDLE_ACTION_ERROR => {
                let message = self.load(payload)?;
                let error = message.action.args.get("error").and_then(Value::as_str).unwrap_or("");
                self.agent.handle_action_error(&mut self.ctx, error);
            }
            _ => return Err(ActionError::new("RuntimeError", format!("{UNSUPPORTED} {op:?}"))),
        }
        done()
    }

    /// Makes the message in `payload` the current one (parsing it only if it changed).
    fn load(&mut self, payload: &str) -> Result<Arc<Message>, ActionError> {
        if self.current_json != payload || self.ctx.current().is_none() {
            let message = Message::from_json(payload).map_err(|e| ActionError::new("TypeError", e))?;
            self.ctx.set_current(Some(Arc::new(message)));
            self.current_json.clear();
            self.current_json.push_str(payload);
        }
        self.current()
    }

    fn current(&self) -> Result<Arc<Message>, ActionError> {
        self.ctx.current().cloned().ok_or_else(|| ActionError::new("RuntimeError", "no current message"))
    }
}

/// The error for an action an agent does not have, worded as in Python Agency.
pub fn unknown_action(message: &Message, agent_id: &str) -> ActionError {
    ActionError::new(
        "AttributeError",
        format!("\"{}\" not found on \"{agent_id}\"", message.action.name),
    )
}

/// Runs `f`, turning a panic into an `ActionError` of kind `Panic`.
fn catch_panic<T>(f: impl FnOnce() -> Result<T, ActionError>) -> Result<T, ActionError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(ActionError::new("Panic", agency_abi::panic_message(&*panic)))
    })
}
