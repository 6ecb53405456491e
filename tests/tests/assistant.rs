//! The Assistant, loaded from its plugin library, against a scripted chat-completions
//! server that checks every request it gets against the API
//! (`agency_tests::chat_server`): the model's tool calls run as requests to real agents,
//! and what comes back reaches the model.

use std::time::{Duration, Instant};

use agency_runtime::{AgentSpec, Foreground, Space};
use agency_tests::{
    action,
    broker::host_config,
    chat_server::{ChatServer, Step},
    driver, open_space, plugins_dir,
    process::{agency_run, config, Host},
    python, unique_name, BROKER_PATIENCE, PATIENCE,
};
use serde_json::{json, Value};

/// A space with `agents` (`(type, id)`) and an Assistant on `endpoint` (model
/// `scripted-model`), with `args` besides (which may name another model); answers it once
/// the Assistant knows `tools` tools.
fn space(
    endpoint: &str,
    agents: &[(&str, &str)],
    args: Value,
    tools: usize,
) -> (Space, Foreground) {
    let space = open_space("local");
    for (kind, id) in agents {
        space.add(&AgentSpec::new(kind, id)).unwrap();
    }
    let mut all = json!({"endpoint": endpoint, "model": "scripted-model"});
    all.as_object_mut()
        .unwrap()
        .extend(args.as_object().unwrap().clone());
    space
        .add(&AgentSpec::new("Assistant", "Assistant").with_args(all))
        .unwrap();
    let user = driver(&space, "user");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let known = user
            .request(action("Assistant", "tools", json!({})), PATIENCE)
            .unwrap();
        if known.as_array().unwrap().len() >= tools {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Assistant knows only {known}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (space, user)
}

fn say(user: &Foreground, content: &str) -> Result<Value, agency_sdk::ActionError> {
    user.request(
        action("Assistant", "say", json!({"content": content})),
        BROKER_PATIENCE,
    )
}

/// The `tool` messages of request `n`, as `(id, content)`.
fn tool_results(server: &ChatServer, n: usize) -> Vec<(String, String)> {
    server.requests()[n]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn assert_followed_the_api(server: &ChatServer) {
    assert_eq!(server.problems(), Vec::<String>::new());
}

#[test]
fn a_question_answered_with_one_tool_call() {
    let server = ChatServer::start(
        None,
        vec![
            Step::calls(&[("c1", "Calculator__add", json!({"a": 2, "b": 3}))]),
            Step::text("2 + 3 = 5"),
        ],
    );
    let (space, user) = space(
        &server.endpoint(),
        &[("Calculator", "Calculator")],
        json!({}),
        5,
    );
    assert_eq!(say(&user, "What is 2 + 3?").unwrap(), "2 + 3 = 5");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let add = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "Calculator__add")
        .expect("Calculator.add is a tool");
    assert_eq!(add["function"]["parameters"]["required"], json!(["a", "b"]));
    assert_eq!(
        requests[0]["messages"][0],
        json!({"role": "user", "content": "What is 2 + 3?"})
    );
    assert_eq!(tool_results(&server, 1), [("c1".into(), "5.0".into())]);
    assert_followed_the_api(&server);
    space.destroy();
}

#[test]
fn two_calls_in_one_turn_and_a_chain_across_two_agents() {
    let server = ChatServer::start(
        None,
        vec![
            Step::calls(&[
                ("c1", "Calculator__add", json!({"a": 1, "b": 2})),
                ("c2", "Calculator__multiply", json!({"a": 3, "b": 4})),
            ]),
            Step::calls(&[("c3", "Receiver__value", json!({}))]),
            Step::calls(&[("c4", "Calculator__add", json!({"a": 42, "b": 1}))]),
            Step::text("43"),
        ],
    );
    let agents = [("Calculator", "Calculator"), ("Receiver", "Receiver")];
    let (space, user) = space(
        &server.endpoint(),
        &agents,
        json!({"tools": ["Calculator.*", "Receiver.value"]}),
        6,
    );
    assert_eq!(say(&user, "Work it out.").unwrap(), "43");
    assert_eq!(
        tool_results(&server, 1),
        [("c1".into(), "3.0".into()), ("c2".into(), "12.0".into())]
    );
    assert_eq!(tool_results(&server, 2)[2], ("c3".into(), "42".into()));
    assert_eq!(tool_results(&server, 3)[3], ("c4".into(), "43.0".into()));
    // The patterns kept Receiver's other actions out.
    let names: Vec<Value> = server.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].clone())
        .collect();
    assert!(
        names.contains(&json!("Receiver__value")) && !names.contains(&json!("Receiver__add")),
        "{names:?}"
    );
    assert_followed_the_api(&server);
    space.destroy();
}

/// The calls of one model answer run at once: `Parallel.meet(2)` answers `true` only
/// when both calls are inside it together (one after the other, the first would wait
/// for the second until the tool timeout).
#[test]
fn the_calls_of_one_answer_run_at_once() {
    let server = ChatServer::start(
        None,
        vec![
            Step::calls(&[
                ("c1", "Parallel__meet", json!({"n": 2})),
                ("c2", "Parallel__meet", json!({"n": 2})),
            ]),
            Step::text("they met"),
        ],
    );
    let (space, user) = space(
        &server.endpoint(),
        &[("Parallel", "Parallel")],
        json!({"tools": ["Parallel.meet"], "timeout_secs": 5}),
        1,
    );
    assert_eq!(say(&user, "Meet.").unwrap(), "they met");
    assert_eq!(
        tool_results(&server, 1),
        [("c1".into(), "true".into()), ("c2".into(), "true".into())]
    );
    assert_followed_the_api(&server);
    space.destroy();
}

/// What the Assistant knows, as `Agent.action`.
fn tools(user: &Foreground) -> Vec<String> {
    let known = user
        .request(action("Assistant", "tools", json!({})), PATIENCE)
        .unwrap();
    serde_json::from_value(known).unwrap()
}

/// Agents that join after the Assistant are learnt when they announce themselves (our
/// `announce`, or Python Agency's `HelpMethods` shape), or when it is told to `learn`;
/// one that joins silently is not a tool until then.
#[test]
fn agents_that_join_later_are_learnt_from_their_announcements() {
    let server = ChatServer::start(
        None,
        vec![
            Step::calls(&[("c1", "Late__add", json!({"a": 2, "b": 2}))]),
            Step::text("4"),
        ],
    );
    let (space, user) = space(&server.endpoint(), &[], json!({}), 0);
    space.add(&AgentSpec::new("Calculator", "Silent")).unwrap();
    space
        .add(&AgentSpec::new("Calculator", "Late").announcing())
        .unwrap();
    let python_style = driver(&space, "Pythonic");
    python_style
        .send(json!({
            "meta": {"parent_id": "help_request"},
            "to": "*",
            "action": {"name": "[response]", "args": {"value": {
                "greet": {"description": "Greets.", "args": {"name": {"type": "string"}}}
            }}}
        }))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !(tools(&user).contains(&"Late.add".to_owned())
        && tools(&user).contains(&"Pythonic.greet".to_owned()))
    {
        assert!(
            Instant::now() < deadline,
            "it knows only {:?}",
            tools(&user)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!tools(&user).iter().any(|t| t.starts_with("Silent.")));
    assert_eq!(say(&user, "2 + 2?").unwrap(), "4");
    assert_eq!(tool_results(&server, 1), [("c1".into(), "4.0".into())]);
    user.request(action("Assistant", "learn", json!({})), PATIENCE)
        .unwrap();
    while !tools(&user).contains(&"Silent.add".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "it knows only {:?}",
            tools(&user)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_followed_the_api(&server);
    space.destroy();
}

#[test]
fn errors_refusals_and_unknown_tools_go_back_to_the_model_as_text() {
    let server = ChatServer::start(
        None,
        vec![
            Step::calls(&[
                ("c1", "Calculator__divide", json!({"a": 1, "b": 0})),
                ("c2", "Host__list_files", json!({"path": "."})),
                ("c3", "Nobody__nothing", json!({})),
                ("c4", "Calculator__add", json!({"a": "one", "b": 2})),
            ]),
            Step::text("None of that worked."),
        ],
    );
    let agents = [("Calculator", "Calculator"), ("Host", "Host")];
    let (space, user) = space(&server.endpoint(), &agents, json!({}), 9);
    assert_eq!(say(&user, "Try things.").unwrap(), "None of that worked.");
    let results = tool_results(&server, 1);
    assert!(
        results[0].1.starts_with("error: ZeroDivisionError"),
        "{results:?}"
    );
    // No permission prompt in this space: a `requested` action is refused, to the model too.
    assert!(
        results[1].1.starts_with("error: PermissionError"),
        "{results:?}"
    );
    assert_eq!(results[2].1, "error: there is no tool \"Nobody__nothing\"");
    assert!(results[3].1.starts_with("error: "), "{results:?}");
    assert_followed_the_api(&server);
    space.destroy();
}

#[test]
fn max_turns_stops_a_model_that_never_answers() {
    let server = ChatServer::start(
        None,
        vec![
            Step::calls(&[("c1", "Calculator__add", json!({"a": 1, "b": 1}))]),
            Step::calls(&[("c2", "Calculator__add", json!({"a": 2, "b": 2}))]),
        ],
    );
    let (space, user) = space(
        &server.endpoint(),
        &[("Calculator", "Calculator")],
        json!({"max_turns": 2}),
        5,
    );
    let error = say(&user, "Loop.").unwrap_err();
    assert_eq!(error.kind(), "MaxTurnsError", "{error}");
    assert_eq!(server.requests().len(), 2);
    assert_followed_the_api(&server);
    space.destroy();
}

#[test]
fn servers_that_bend_the_api_retry_or_fail_are_handled() {
    let server = ChatServer::start(
        None,
        vec![
            Step::text("first answer"),
            Step::Garbage("<html>not json</html>"),
            Step::Fail(429, r#"{"error": {"message": "slow down"}}"#),
            Step::Fail(503, "busy"),
            // Ollama's way: no id, arguments as an object, content null.
            Step::Answer(json!({"role": "assistant", "content": null, "tool_calls": [
                {"function": {"name": "Calculator__add", "arguments": {"a": 1, "b": 1}}}]})),
            Step::text("2"),
            Step::Fail(400, r#"{"error": {"message": "no such model"}}"#),
        ],
    );
    let (space, user) = space(
        &server.endpoint(),
        &[("Calculator", "Calculator")],
        json!({}),
        5,
    );
    assert_eq!(say(&user, "one").unwrap(), "first answer");
    let error = say(&user, "two").unwrap_err();
    assert_eq!(error.kind(), "ApiError");
    assert!(error.message().contains("not a chat completion"), "{error}");
    // 429 and 503 are tried again; the conversation before the malformed answer is kept.
    assert_eq!(say(&user, "three").unwrap(), "2");
    let requests = server.requests();
    let third = requests[2]["messages"].as_array().unwrap();
    assert_eq!(third[0]["content"], "one");
    assert_eq!(third[1]["content"], "first answer");
    assert_eq!(third[2]["content"], "three");
    assert_eq!(tool_results(&server, 5)[0].1, "2.0");
    let error = say(&user, "four").unwrap_err();
    assert_eq!(
        error.to_string(),
        "ApiError: the model's server answered 400: no such model"
    );
    assert_followed_the_api(&server);
    space.destroy();
}

#[test]
fn bad_configurations_are_refused_in_one_line() {
    let space = open_space("local");
    let cases = [
        (
            json!({"endpoint": "ftp://x", "model": "m"}),
            "not an http:// or https:// URL",
        ),
        (
            json!({"endpoint": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "AGENCY_TEST_NO_SUCH_VARIABLE"}),
            "environment variable AGENCY_TEST_NO_SUCH_VARIABLE (api_key_env) is not set",
        ),
        (
            json!({"endpoint": "http://127.0.0.1:9/v1", "model": "m", "max_turns": 0}),
            "max_turns",
        ),
        (json!({"endpoint": "http://127.0.0.1:9/v1"}), "model"),
    ];
    for (args, expected) in cases {
        let error = space
            .add(&AgentSpec::new("Assistant", "Assistant").with_args(args))
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected) && !error.contains('\n'), "{error}");
    }
    space.destroy();
}

/// In a real host: the key comes from the environment and is seen nowhere but in the
/// request's header, even at the most verbose log level; the model's call of a
/// `requested` action asks the console, which refuses it.
#[test]
fn in_a_host_the_key_stays_secret_and_the_console_decides_permissions() {
    const KEY: &str = "sk-test-0123456789-SECRET";
    let server = ChatServer::start(
        Some(KEY),
        vec![
            Step::calls(&[("c1", "Host__list_files", json!({"path": "."}))]),
            Step::text("I may not look."),
        ],
    );
    let text = format!(
        "transport = \"local\"\nconsole_id = \"User\"\n\n[[agents]]\ntype = \"Host\"\nid = \"Host\"\n\n\
         [[agents]]\ntype = \"Assistant\"\nid = \"Assistant\"\n\
         args = {{ endpoint = \"{}\", model = \"scripted-model\", api_key_env = \"AGENCY_TEST_ASSISTANT_KEY\" }}\n",
        server.endpoint()
    );
    let path = config(&text);
    let mut command = agency_run(plugins_dir(), &path, &[]);
    command
        .env("AGENCY_TEST_ASSISTANT_KEY", KEY)
        .env("RUST_LOG", "trace");
    let mut host = Host::running(&mut command);
    host.wait_until_started();
    host.type_line("/Assistant.say content:\"What files are there?\"");
    host.stdout
        .wait_for("permission: allow Assistant -> Host.list_files {\"path\":\".\"}?");
    host.type_line("n");
    host.stdout.wait_for("Assistant: I may not look.");
    let results = tool_results(&server, 1);
    assert!(
        results[0].1.starts_with("error: PermissionError"),
        "{results:?}"
    );
    assert_followed_the_api(&server);
    let (stdout, stderr) = (host.stdout.contents(), host.stderr.contents());
    host.finish();
    assert!(
        !stdout.contains(KEY) && !stderr.contains(KEY),
        "the key was shown"
    );
    assert!(!stderr.is_empty(), "trace logging was on");
}

/// On amqp, a Python Agency agent's action is a tool like any other: the Assistant learns
/// it from the Python agent's `help` answer and calls it.
#[test]
fn a_python_agency_agents_action_is_a_tool() {
    let exchange = unique_name("agency-test-assistant");
    let py = format!("py-{exchange}");
    let (mut python, python_err) = python::start_agent(&exchange, &py);
    let tool = format!("{py}__shout");
    let server = ChatServer::start(
        None,
        vec![
            Step::calls(&[("c1", &tool, json!({"text": "hello from the model"}))]),
            Step::text("It shouted back."),
        ],
    );
    let config = format!(
        "{}[[agents]]\ntype = \"Assistant\"\nid = \"Assistant\"\n\
         args = {{ endpoint = \"{}\", model = \"scripted-model\" }}\n",
        host_config(&exchange, "console", &[]),
        server.endpoint()
    );
    let mut host = Host::start(&config, &[]);
    host.wait_until_started();
    // The Python agent's help answer comes over the broker: ask until it is learnt.
    let deadline = Instant::now() + BROKER_PATIENCE;
    for asked in 1.. {
        host.type_line("/Assistant.tools");
        let screen = host.stdout.wait_for_count("Assistant: ", asked, PATIENCE);
        if screen.contains(&format!("{py}.shout")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Python agent's actions were never learnt"
        );
        host.type_line("/Assistant.learn");
        std::thread::sleep(Duration::from_millis(200));
    }
    host.type_line("/Assistant.say content:\"Shout something.\"");
    host.stdout.wait_for("Assistant: It shouted back.");
    assert_eq!(
        tool_results(&server, 1),
        [("c1".into(), "HELLO FROM THE MODEL".into())]
    );
    let tools = &server.requests()[0]["tools"];
    let shout = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == tool.as_str())
        .expect("the Python action is a tool");
    assert_eq!(
        shout["function"]["parameters"]["properties"]["text"]["type"], "string",
        "{shout}"
    );
    assert_followed_the_api(&server);
    drop(python.stdin.take());
    let status = python.wait().unwrap();
    assert!(status.success(), "{}", python_err.contents());
    host.finish();
}

/// Against a real OpenAI-compatible server, when `AGENCY_TEST_OPENAI_URL` names one (with
/// `AGENCY_TEST_OPENAI_MODEL`, and `AGENCY_TEST_OPENAI_KEY` if it takes a key): the
/// Calculator offered as tools, a question, an answer within `max_turns`. With a model
/// that calls tools, set `AGENCY_TEST_OPENAI_TOOLS=1` and the sum must be computed by the
/// Calculator. Without the variable this test does nothing (no provider is reachable from
/// the test machines) and says so.
#[test]
fn a_real_endpoint_when_one_is_given() {
    let Ok(endpoint) = std::env::var("AGENCY_TEST_OPENAI_URL") else {
        eprintln!("not run: AGENCY_TEST_OPENAI_URL names no OpenAI-compatible endpoint");
        return;
    };
    let model = std::env::var("AGENCY_TEST_OPENAI_MODEL").unwrap_or_else(|_| "default".into());
    let mut args = json!({
        "model": model, "max_turns": 4, "timeout_secs": 120,
        "system": "You are a calculator's front end. Use the tools for arithmetic.",
    });
    if std::env::var_os("AGENCY_TEST_OPENAI_KEY").is_some() {
        args["api_key_env"] = "AGENCY_TEST_OPENAI_KEY".into();
    }
    let (space, user) = space(&endpoint, &[("Calculator", "Calculator")], args, 5);
    let answer = user
        .request(
            action(
                "Assistant",
                "say",
                json!({"content": "What is 1234 + 4321?"}),
            ),
            Duration::from_secs(600),
        )
        .unwrap();
    println!("the model answered: {answer}");
    let answer = answer.as_str().expect("a text answer");
    if std::env::var_os("AGENCY_TEST_OPENAI_TOOLS").is_some() {
        assert!(answer.replace(',', "").contains("5555"), "{answer}");
    }
    space.destroy();
}
