//! ChattyAI, the language-model agent, as the host runs it: loaded from its plugin
//! library, on a real model (SmolLM2-135M-Instruct, fetched once into `target/models`),
//! beside ordinary agents. Its model code is checked against llama.cpp in the plugin's own
//! tests (`plugins/chatty-ai/tests`).

use std::time::{Duration, Instant};

use agency_runtime::AgentSpec;
use agency_tests::{
    action, broker::host_config, driver, for_each_transport, models::smollm2, open_space,
    process::Host, python, unique_name, PATIENCE,
};
use serde_json::{json, Value};

/// How long an answer of a few hundred tokens may take in a debug build on a busy machine.
const ANSWER_PATIENCE: Duration = Duration::from_secs(120);

/// A prompt whose greedy answer runs to the end of any `max_new_tokens` below 200.
const LONG_PROMPT: &str = "Tell me a long story about a dragon who learns to code.";

/// ChattyAI's arguments: the test model, greedy, answers of at most `max_new_tokens`.
fn chatty_args(max_new_tokens: u32) -> Value {
    json!({"model": smollm2(), "temperature": 0, "max_new_tokens": max_new_tokens})
}

fn chatty(id: &str, max_new_tokens: u32) -> AgentSpec {
    AgentSpec::new("ChattyAI", id).with_args(chatty_args(max_new_tokens))
}

/// A local space with a ChattyAI writing up to 200 tokens, a Calculator and a user.
fn chatty_beside_a_calculator() -> (agency_runtime::Space, agency_runtime::Foreground) {
    let space = open_space("local");
    space.add(&chatty("Chatty", 200)).unwrap();
    space
        .add(&AgentSpec::new("Calculator", "Calculator"))
        .unwrap();
    let user = driver(&space, "user");
    (space, user)
}

fn say(content: &str) -> Value {
    json!({"content": content})
}

for_each_transport!(chatty_answers_and_keeps_a_conversation_per_sender);

fn chatty_answers_and_keeps_a_conversation_per_sender(transport: &str) {
    let space = open_space(transport);
    space.add(&chatty("Chatty", 24)).unwrap();
    let (alice, bob) = (driver(&space, "alice"), driver(&space, "bob"));
    let question = "What is the capital of France?";
    let first = alice
        .request(action("Chatty", "say", say(question)), ANSWER_PATIENCE)
        .unwrap();
    let first = first.as_str().expect("a text answer");
    assert!(!first.trim().is_empty());
    // Greedy, and a conversation of its own: bob gets the same answer to the same question.
    let again = bob
        .request(action("Chatty", "say", say(question)), ANSWER_PATIENCE)
        .unwrap();
    assert_eq!(again, first);
    alice
        .request(
            action("Chatty", "say", say("And of Italy?")),
            ANSWER_PATIENCE,
        )
        .unwrap();
    let reset = |who: &agency_runtime::Foreground| {
        who.request(action("Chatty", "reset", json!({})), PATIENCE)
            .unwrap()
    };
    assert_eq!(reset(&alice), 4, "two questions and two answers");
    assert_eq!(reset(&bob), 2);
    assert_eq!(reset(&alice), 0);
    let help = alice
        .request(action("Chatty", "help", json!({})), PATIENCE)
        .unwrap();
    assert!(
        help.get("say").is_some() && help.get("reset").is_some(),
        "{help}"
    );
    space.destroy();
}

#[test]
fn a_long_answer_never_holds_up_the_space() {
    let (space, user) = chatty_beside_a_calculator();
    let story = user
        .send(action("Chatty", "say", say(LONG_PROMPT)))
        .unwrap();
    let sum = user
        .request(
            action("Calculator", "add", json!({"a": 1, "b": 2})),
            PATIENCE,
        )
        .unwrap();
    assert_eq!(sum, 3.0);
    let answered = user.wait_for(ANSWER_PATIENCE, |received| {
        received
            .iter()
            .any(|m| m.meta.parent_id.as_deref() == Some(story.as_str()))
    });
    assert!(answered, "Chatty answered within {ANSWER_PATIENCE:?}");
    let replies = user.received();
    let order: Vec<&str> = replies.iter().map(|m| m.from.as_str()).collect();
    assert_eq!(order, ["Calculator", "Chatty"], "the sum came first");
    let story = replies[1].action.args["value"].as_str().unwrap();
    assert!(
        story.len() > 400,
        "a long answer was being written: {story:?}"
    );
    space.destroy();
}

#[test]
fn a_request_that_outlives_its_timeout_fails_and_chatty_can_be_removed_mid_answer() {
    let (space, user) = chatty_beside_a_calculator();
    let error = user
        .request(
            action("Chatty", "say", say(LONG_PROMPT)),
            Duration::from_millis(200),
        )
        .unwrap_err();
    assert_eq!(error.kind(), "TimeoutError", "{error}");

    // Chatty is still writing that story: remove it now.
    let started = Instant::now();
    space.remove("Chatty").unwrap();
    assert!(
        started.elapsed() < ANSWER_PATIENCE,
        "remove waited for the answer"
    );
    let sum = user
        .request(
            action("Calculator", "add", json!({"a": 2, "b": 2})),
            PATIENCE,
        )
        .unwrap();
    assert_eq!(sum, 4.0);
    space.add(&chatty("Chatty", 8)).unwrap();
    let answer = user
        .request(action("Chatty", "say", say("hello")), ANSWER_PATIENCE)
        .unwrap();
    assert!(answer.as_str().is_some_and(|a| !a.is_empty()), "{answer}");
    space.destroy();
}

/// A GGUF file (version 3) with `metadata` (string values) and no tensors.
fn gguf(metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        bytes.extend((key.len() as u64).to_le_bytes());
        bytes.extend(key.as_bytes());
        bytes.extend(8u32.to_le_bytes()); // string
        bytes.extend((value.len() as u64).to_le_bytes());
        bytes.extend(value.as_bytes());
    }
    bytes
}

#[test]
fn a_model_file_it_cannot_run_is_refused_in_one_line() {
    let dir = agency_tests::scratch_dir("models");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let fifo = dir.join("fifo.gguf");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let cases = [
        (dir.join("missing.gguf"), "cannot read"),
        (dir.clone(), "not a regular file"),
        (fifo, "not a regular file"),
        (
            write("text.gguf", b"hello, I am not a model"),
            "not a GGUF model file",
        ),
        (
            write("gpt2.gguf", &gguf(&[("general.architecture", "gpt2")])),
            "architecture \"gpt2\" is not supported",
        ),
        (
            write(
                "spm.gguf",
                &gguf(&[
                    ("general.architecture", "llama"),
                    ("tokenizer.ggml.model", "llama"),
                ]),
            ),
            "tokenizer \"llama\" is not supported",
        ),
    ];
    let space = open_space("local");
    for (path, expected) in cases {
        let spec = AgentSpec::new("ChattyAI", "Chatty").with_args(json!({"model": path}));
        let error = space.add(&spec).unwrap_err().to_string();
        assert!(error.contains(expected), "{path:?}: {error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(!error.contains('\n'), "one line: {error:?}");
    }
    let bad = AgentSpec::new("ChattyAI", "Chatty")
        .with_args(json!({"model": smollm2(), "temperature": -1}));
    let error = space.add(&bad).unwrap_err().to_string();
    assert!(error.contains("temperature"), "{error}");
    // Nothing was left half-added: the id is free.
    space.add(&chatty("Chatty", 4)).unwrap();
    space.destroy();
}

/// A host with `count` ChattyAI agents on the test model, each of which has answered
/// once (so has run the model); its anonymous memory (the plugin libraries the loader
/// holds, the weights, the agents: no mapped files).
fn memory_with_agents(count: usize) -> u64 {
    let mut config = String::from("transport = \"local\"\nconsole_id = \"User\"\n");
    for n in 0..count {
        config += &format!(
            "\n[[agents]]\ntype = \"ChattyAI\"\nid = \"Chatty{n}\"\nargs = {{ model = {:?}, temperature = 0, max_new_tokens = 4 }}\n",
            smollm2().display().to_string()
        );
    }
    let mut host = Host::start(&config, &[]);
    host.wait_until_started();
    for n in 0..count {
        host.type_line(&format!("/Chatty{n}.say content:hi"));
        host.stdout
            .wait_for_count(&format!("Chatty{n}: "), 1, ANSWER_PATIENCE);
    }
    let kib = host.anonymous_kib();
    host.finish();
    kib
}

#[test]
fn ten_agents_on_one_model_file_share_one_copy_of_its_weights() {
    let file_kib = std::fs::metadata(smollm2()).unwrap().len() / 1024;
    let (none, one, ten) = (
        memory_with_agents(0),
        memory_with_agents(1),
        memory_with_agents(10),
    );
    println!(
        "anonymous memory: no ChattyAI {none} KiB, one {one} KiB, ten {ten} KiB (model file {file_kib} KiB)"
    );
    assert!(
        one > none + file_kib / 2,
        "the first agent holds the weights: {none} -> {one} KiB"
    );
    assert!(
        ten < one + file_kib / 4,
        "nine more agents cost {} KiB; one copy of the weights is {file_kib} KiB",
        ten.saturating_sub(one)
    );
}

/// A Python Agency agent on amqp says something to ChattyAI and gets its answer.
#[test]
fn a_python_agency_agent_talks_with_chatty() {
    let exchange = unique_name("agency-test-chatty");
    let (py, chatty) = (format!("py-{exchange}"), format!("chatty-{exchange}"));
    let (mut python, python_err) = python::start_agent(&exchange, &py);
    let config = format!(
        "{}[[agents]]\ntype = \"ChattyAI\"\nid = \"{chatty}\"\nargs = {}\n",
        host_config(&exchange, "console", &[]),
        toml_inline(&chatty_args(16)),
    );
    let mut host = Host::start(&config, &[]);
    host.wait_until_started();
    host.type_line(&format!(
        "/{py}.chat to:\"{chatty}\" content:\"What is the capital of France?\""
    ));
    let screen = host
        .stdout
        .wait_for_count(&format!("{py}: "), 1, ANSWER_PATIENCE);
    let answer = screen
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{py}: ")))
        .unwrap();
    assert!(!answer.trim().is_empty(), "{screen}");
    drop(python.stdin.take());
    let status = python.wait().unwrap();
    assert!(status.success(), "{}", python_err.contents());
    host.finish();
}

/// `args` (a flat JSON object) as a TOML inline table.
fn toml_inline(args: &Value) -> String {
    let fields: Vec<String> = args
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| format!("{key} = {value}"))
        .collect();
    format!("{{ {} }}", fields.join(", "))
}
