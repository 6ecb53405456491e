//! The [`Agent`] trait (construction and callbacks), the registry of agent types, and the
//! dispatcher that turns host operations into calls on an agent value.

use std::{
    borrow::Cow,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use agency_protocol::{
    boundary::{AgentCore, HostLink},
    message::Action,
    spec::AgentTypeSpec,
};

use crate::{ActionError, Context, Kind};

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
        let args = if self.args.is_null() {
            Value::Object(Map::new())
        } else {
            self.args.clone()
        };
        serde_json::from_value(args).map_err(|e| {
            ActionError::of(
                Kind::Type,
                format!("invalid args for agent {:?}: {e}", self.id),
            )
        })
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

    /// Called before an existing, permitted action runs; the message is
    /// `ctx.current_message()`. An agent that keeps this default is not called for it.
    fn before_action(&mut self, ctx: &mut Context) {
        ctx.kept_default();
    }

    /// Called after every action that ran, with what it returned (if anything) or the
    /// error it raised. An agent that keeps this default is not called for it.
    fn after_action(&mut self, ctx: &mut Context, _outcome: Result<Option<&Value>, &ActionError>) {
        ctx.kept_default();
    }

    /// Receives `[response]` values that no pending request was waiting for.
    fn handle_action_value(&mut self, _ctx: &mut Context, _value: &Value) {}

    /// Receives `[error]` replies that no pending request was waiting for.
    fn handle_action_error(&mut self, _ctx: &mut Context, _error: &ActionError) {}

    /// Decides whether the `requested` action in `ctx.current_message()` may run. By
    /// default asks the space's permission prompt (the console asks y/n); without one the
    /// answer is no.
    fn request_permission(&mut self, ctx: &mut Context) -> bool {
        ctx.ask_permission()
    }
}

/// An agent whose actions may run in parallel: up to the concurrency its
/// `#[actions(concurrency = k)]` block declares, each message on a pool thread of its own,
/// as in Python Agency. Its actions and callbacks take `&self` (the type is `Sync`: state
/// that changes goes behind atomics or locks). A request cycle through such an agent
/// answers while one of its handles is free.
///
/// Ordering: messages *start* in arrival order but may finish in any order; `after_add`
/// runs before any message and `before_remove` after all of them; `before_action` and
/// `after_action` run on the same thread as their action, beside other messages' actions.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use agency_sdk::prelude::*;
///
/// /// Counts visits from any number of senders at once.
/// pub struct Counter { visits: AtomicU64 }
///
/// impl agency_sdk::ConcurrentAgent for Counter {
///     fn new(_init: &Init) -> Result<Self, ActionError> {
///         Ok(Counter { visits: AtomicU64::new(0) })
///     }
/// }
///
/// #[actions(concurrency = 8)]
/// impl Counter {
///     /// Counts one visit; returns the visits so far.
///     #[action]
///     fn visit(&self) -> u64 {
///         self.visits.fetch_add(1, Ordering::Relaxed) + 1
///     }
/// }
/// ```
///
/// An action of such an agent that takes `&mut self` does not compile (the attribute
/// says the actions of a concurrent agent take `&self`):
///
/// ```compile_fail
/// use agency_sdk::prelude::*;
///
/// pub struct Counter { visits: u64 }
///
/// impl agency_sdk::ConcurrentAgent for Counter {
///     fn new(_init: &Init) -> Result<Self, ActionError> {
///         Ok(Counter { visits: 0 })
///     }
/// }
///
/// #[actions(concurrency = 8)]
/// impl Counter {
///     #[action]
///     fn visit(&mut self) -> u64 {
///         self.visits += 1;
///         self.visits
///     }
/// }
/// ```
pub trait ConcurrentAgent: Sized + Send + Sync + 'static {
    /// Builds the agent from its id and configuration.
    fn new(init: &Init) -> Result<Self, ActionError>;

    /// Called once the agent is in the space, before any message; it may send.
    fn after_add(&self, _ctx: &mut Context) {}

    /// Called before the agent leaves the space, after every message.
    fn before_remove(&self, _ctx: &mut Context) {}

    /// Called before an existing, permitted action runs, on its thread. An agent that
    /// keeps this default is not called for it.
    fn before_action(&self, ctx: &mut Context) {
        ctx.kept_default();
    }

    /// Called after every action that ran, on its thread. An agent that keeps this
    /// default is not called for it.
    fn after_action(&self, ctx: &mut Context, _outcome: Result<Option<&Value>, &ActionError>) {
        ctx.kept_default();
    }

    /// Receives `[response]` values that no pending request was waiting for.
    fn handle_action_value(&self, _ctx: &mut Context, _value: &Value) {}

    /// Receives `[error]` replies that no pending request was waiting for.
    fn handle_action_error(&self, _ctx: &mut Context, _error: &ActionError) {}

    /// Decides whether the `requested` action in `ctx.current_message()` may run (by
    /// default, the space's permission prompt).
    fn request_permission(&self, ctx: &mut Context) -> bool {
        ctx.ask_permission()
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

/// The action table of a concurrent agent type; implemented by [`crate::actions`].
#[doc(hidden)]
pub trait ConcurrentActions: ConcurrentAgent {
    /// The type's name, the description of its actions and its concurrency.
    fn type_spec() -> AgentTypeSpec;
    /// Runs action `name`; `None` when there is no such action.
    fn dispatch(
        &self,
        ctx: &mut Context,
        name: &str,
        args: &Map<String, Value>,
    ) -> Option<Result<Option<Value>, ActionError>>;
}

/// Builds an agent's handles from its init data, how many handles it gets (its
/// concurrency; an ordinary agent gets one) and its link to the host.
pub type CreateAgent =
    fn(&Init, usize, Arc<dyn HostLink>) -> Result<Vec<Box<dyn AgentCore>>, ActionError>;

/// A registered agent type: what [`crate::actions`] submits for each `impl` block, in a
/// plugin library or in the host binary alike.
pub struct AgentType {
    /// The type's name.
    pub name: &'static str,
    /// Describes the type and its actions.
    pub spec: fn() -> AgentTypeSpec,
    /// Creates an instance's handles for the host to drive.
    pub create: CreateAgent,
}

inventory::collect!(AgentType);

/// Every agent type compiled into the current library or binary.
pub fn agent_types() -> impl Iterator<Item = &'static AgentType> {
    inventory::iter::<AgentType>.into_iter()
}

/// Creates an `A` and wraps it for the host (one handle); used by [`AgentType::create`].
#[doc(hidden)]
pub fn create_agent<A: Actions>(
    init: &Init,
    _handles: usize,
    host: Arc<dyn HostLink>,
) -> Result<Vec<Box<dyn AgentCore>>, ActionError> {
    let agent = catch_panic(|| A::new(init))?;
    Ok(vec![Box::new(Dispatcher {
        agent,
        ctx: Context::new(init.id.clone(), host),
    })])
}

/// Creates a concurrent `A` and `handles` handles on it, each with a context of its own;
/// used by [`AgentType::create`].
#[doc(hidden)]
pub fn create_concurrent_agent<A: ConcurrentActions>(
    init: &Init,
    handles: usize,
    host: Arc<dyn HostLink>,
) -> Result<Vec<Box<dyn AgentCore>>, ActionError> {
    let shared = catch_panic(|| Shared::<A>::new(init))?;
    Ok((0..handles.max(1))
        .map(|_| -> Box<dyn AgentCore> {
            Box::new(Dispatcher {
                agent: Shared(shared.0.clone()),
                ctx: Context::new(init.id.clone(), host.clone()),
            })
        })
        .collect())
}

/// One handle on a concurrent agent: an [`Agent`] whose calls go to the shared value.
struct Shared<A>(Arc<A>);

impl<A: ConcurrentActions> Agent for Shared<A> {
    fn new(init: &Init) -> Result<Self, ActionError> {
        A::new(init).map(|agent| Shared(Arc::new(agent)))
    }
    fn after_add(&mut self, ctx: &mut Context) {
        self.0.after_add(ctx);
    }
    fn before_remove(&mut self, ctx: &mut Context) {
        self.0.before_remove(ctx);
    }
    fn before_action(&mut self, ctx: &mut Context) {
        self.0.before_action(ctx);
    }
    fn after_action(&mut self, ctx: &mut Context, outcome: Result<Option<&Value>, &ActionError>) {
        self.0.after_action(ctx, outcome);
    }
    fn handle_action_value(&mut self, ctx: &mut Context, value: &Value) {
        self.0.handle_action_value(ctx, value);
    }
    fn handle_action_error(&mut self, ctx: &mut Context, error: &ActionError) {
        self.0.handle_action_error(ctx, error);
    }
    fn request_permission(&mut self, ctx: &mut Context) -> bool {
        self.0.request_permission(ctx)
    }
}

impl<A: ConcurrentActions> Actions for Shared<A> {
    fn type_spec() -> AgentTypeSpec {
        A::type_spec()
    }
    fn dispatch(
        &mut self,
        ctx: &mut Context,
        name: &str,
        args: &Map<String, Value>,
    ) -> Option<Result<Option<Value>, ActionError>> {
        self.0.dispatch(ctx, name, args)
    }
}

/// Drives one agent value: runs the host's calls on it, with its [`Context`] set to the
/// message at hand.
struct Dispatcher<A> {
    agent: A,
    ctx: Context,
}

/// The part of a message an action needs; the rest is skipped, not allocated.
#[derive(serde::Deserialize)]
struct ActionPart<'a> {
    #[serde(borrow)]
    action: ActionRef<'a>,
}

/// A message's action, its name borrowed from the text when it holds no escape.
#[derive(serde::Deserialize)]
struct ActionRef<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    args: Map<String, Value>,
}

impl<A: Actions> Dispatcher<A> {
    /// Runs `f` on the agent with `message` (if any) as the current message; a panic
    /// becomes an error of kind `Panic`.
    fn with<T>(
        &mut self,
        message: Option<&str>,
        f: impl FnOnce(&mut A, &mut Context) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        self.ctx.set_current_json(message);
        catch_panic(|| f(&mut self.agent, &mut self.ctx))
    }

    /// Runs `f` on the agent with `message` and the action it carries.
    fn with_action<T>(
        &mut self,
        message: &str,
        f: impl FnOnce(&mut A, &mut Context, ActionRef) -> Result<T, ActionError>,
    ) -> Result<T, ActionError> {
        self.with(Some(message), |agent, ctx| {
            let part: ActionPart = serde_json::from_str(message)
                .map_err(|e| ActionError::of(Kind::Type, format!("invalid message: {e}")))?;
            f(agent, ctx, part.action)
        })
    }
}

impl<A: Actions> AgentCore for Dispatcher<A> {
    fn after_add(&mut self) -> Result<(), ActionError> {
        self.with(None, |agent, ctx| {
            agent.after_add(ctx);
            Ok(())
        })
    }

    fn before_remove(&mut self) -> Result<(), ActionError> {
        self.with(None, |agent, ctx| {
            agent.before_remove(ctx);
            Ok(())
        })
    }

    fn request_permission(&mut self, message: &str) -> Result<bool, ActionError> {
        self.with(
            Some(message),
            |agent, ctx| Ok(agent.request_permission(ctx)),
        )
    }

    fn before_action(&mut self, message: &str) -> Result<(), ActionError> {
        self.with(Some(message), |agent, ctx| {
            agent.before_action(ctx);
            ctx.took_default("before_action")
        })
    }

    fn action(&mut self, message: &str) -> Result<Option<Value>, ActionError> {
        self.with_action(message, |agent, ctx, ActionRef { name, args }| {
            agent
                .dispatch(ctx, &name, &args)
                .unwrap_or_else(|| Err(ActionError::unknown_action(&name, ctx.id())))
        })
    }

    fn after_action(
        &mut self,
        outcome: &Result<Option<Value>, ActionError>,
    ) -> Result<(), ActionError> {
        // The current message stays the one the action ran.
        let outcome = outcome.as_ref().map(Option::as_ref);
        catch_panic(|| {
            self.agent.after_action(&mut self.ctx, outcome);
            self.ctx.took_default("after_action")
        })
    }

    fn handle_action_value(&mut self, message: &str) -> Result<(), ActionError> {
        self.handle_reply(message)
    }

    fn handle_action_error(&mut self, message: &str) -> Result<(), ActionError> {
        self.handle_reply(message)
    }
}

impl<A: Actions> Dispatcher<A> {
    /// Hands a reply no request waited for to the agent's handler for its kind.
    fn handle_reply(&mut self, message: &str) -> Result<(), ActionError> {
        self.with_action(message, |agent, ctx, ActionRef { name, args }| {
            let action = Action {
                name: name.into_owned(),
                args,
            };
            match action.reply() {
                Some(Ok(value)) => agent.handle_action_value(ctx, &value),
                Some(Err(error)) => agent.handle_action_error(ctx, &error),
                None => {}
            }
            Ok(())
        })
    }
}

/// Runs `f`, turning a panic into an `ActionError` of kind `Panic`.
fn catch_panic<T>(f: impl FnOnce() -> Result<T, ActionError>) -> Result<T, ActionError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(ActionError::new(
            "Panic",
            agency_abi::panic_message(&*panic),
        ))
    })
}
