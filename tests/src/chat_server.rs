//! An OpenAI-compatible chat-completions server for the Assistant's tests: it answers
//! from a script, one step a request, and checks every request it receives against the
//! API: roles, tool definitions (names the API accepts, JSON Schema objects), every
//! `tool` message answering a call of the assistant message before it and every call
//! answered, the key in the `Authorization` header and nowhere in the body.
//!
//! Plain HTTP/1.1 on a loopback port, keep-alive, one thread a connection.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use serde_json::{json, Value};

/// What the server does for one request.
pub enum Step {
    /// Answers 200 with a chat completion whose message is this.
    Answer(Value),
    /// Answers this status with this body.
    Fail(u16, &'static str),
    /// Answers 200 with this body, which is no chat completion.
    Garbage(&'static str),
}

impl Step {
    /// The model answers in text.
    pub fn text(content: &str) -> Self {
        Step::Answer(json!({"role": "assistant", "content": content}))
    }

    /// The model asks for `calls` (`(id, name, arguments)`), arguments as JSON text.
    pub fn calls(calls: &[(&str, &str, Value)]) -> Self {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, name, arguments)| {
                json!({"id": id, "type": "function",
                       "function": {"name": name, "arguments": arguments.to_string()}})
            })
            .collect();
        Step::Answer(json!({"role": "assistant", "content": null, "tool_calls": calls}))
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Step>,
    requests: Vec<Value>,
    problems: Vec<String>,
}

/// A scripted server on a loopback port; stops when dropped.
pub struct ChatServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl ChatServer {
    /// Starts a server that answers `script`, expecting `key` (if any) as the bearer token.
    pub fn start(key: Option<&str>, script: Vec<Step>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping, key) = (state.clone(), stop.clone(), key.map(str::to_owned));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (state, key) = (shared.clone(), key.clone());
                std::thread::spawn(move || serve(stream, &state, key.as_deref()));
            }
        });
        Self { addr, state, stop }
    }

    /// The base URL to give the Assistant as its `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bodies of the requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }

    /// What was wrong with the requests (empty: every one followed the API).
    pub fn problems(&self) -> Vec<String> {
        self.state.lock().unwrap().problems.clone()
    }
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers the requests of one connection until it closes.
fn serve(stream: TcpStream, state: &Mutex<State>, key: Option<&str>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some((head, body)) = read_request(&mut reader) {
        let (status, answer) = answer(state, key, &head, &body);
        let reason = if status == 200 { "OK" } else { "Error" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// One request's head (request line and headers, lower-cased names) and body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(Vec<String>, String)> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = head
        .iter()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, String::from_utf8_lossy(&body).into_owned()))
}

/// Checks the request, then answers the script's next step.
fn answer(state: &Mutex<State>, key: Option<&str>, head: &[String], body: &str) -> (u16, String) {
    let mut state = state.lock().unwrap();
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut problems = check(head, body, &parsed, key);
    state.requests.push(parsed);
    let step = state.script.pop_front();
    if step.is_none() {
        problems.push("a request after the script's last answer".into());
    }
    state.problems.extend(problems);
    match step {
        Some(Step::Answer(message)) => {
            let finish = if message["tool_calls"].is_array() {
                "tool_calls"
            } else {
                "stop"
            };
            let completion = json!({
                "id": format!("chatcmpl-{}", state.requests.len()),
                "object": "chat.completion",
                "model": "scripted",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            });
            (200, completion.to_string())
        }
        Some(Step::Fail(status, text)) => (status, text.to_owned()),
        Some(Step::Garbage(text)) => (200, text.to_owned()),
        None => (
            500,
            r#"{"error": {"message": "the script has ended"}}"#.into(),
        ),
    }
}

/// What is wrong with one request, per the chat-completions API.
fn check(head: &[String], body: &str, request: &Value, key: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(text);
    if head.first().map(String::as_str) != Some("POST /v1/chat/completions HTTP/1.1") {
        problem(format!("request line {:?}", head.first()));
    }
    let header = |name: &str| {
        head.iter().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    if let Some(key) = key {
        if header("authorization") != Some(format!("Bearer {key}")) {
            problem("no Authorization: Bearer with the key".into());
        }
        if body.contains(key) {
            problem("the key is in the body".into());
        }
    }
    if request["model"].as_str().is_none_or(str::is_empty) {
        problem("no model".into());
    }
    let Some(messages) = request["messages"].as_array().filter(|m| !m.is_empty()) else {
        problem("no messages".into());
        return problems;
    };
    let mut open_calls: Vec<String> = Vec::new();
    for message in messages {
        let role = message["role"].as_str().unwrap_or_default();
        if role != "tool" && !open_calls.is_empty() {
            problem(format!("calls {open_calls:?} have no tool message"));
            open_calls.clear();
        }
        match role {
            "system" | "user" => {
                if !message["content"].is_string() {
                    problem(format!("{role} message without text: {message}"));
                }
            }
            "assistant" => {
                if !(message["content"].is_string() || message["content"].is_null()) {
                    problem(format!("assistant content {message}"));
                }
                for call in message["tool_calls"].as_array().into_iter().flatten() {
                    let arguments = call["function"]["arguments"].as_str();
                    let valid = call["id"].is_string()
                        && call["type"] == "function"
                        && call["function"]["name"].is_string()
                        && arguments.is_some_and(|a| serde_json::from_str::<Value>(a).is_ok());
                    if !valid {
                        problem(format!("tool call {call}"));
                    }
                    open_calls.push(call["id"].as_str().unwrap_or_default().to_owned());
                }
            }
            "tool" => {
                let id = message["tool_call_id"].as_str().unwrap_or_default();
                match open_calls.iter().position(|open| open == id) {
                    Some(at) => {
                        open_calls.remove(at);
                    }
                    None => problem(format!("tool message for no open call: {message}")),
                }
                if !message["content"].is_string() {
                    problem(format!("tool message without text: {message}"));
                }
            }
            other => problem(format!("role {other:?}")),
        }
    }
    if !open_calls.is_empty() {
        problem(format!("calls {open_calls:?} have no tool message"));
    }
    let mut names = Vec::new();
    for tool in request["tools"].as_array().into_iter().flatten() {
        let function = &tool["function"];
        let name = function["name"].as_str().unwrap_or_default();
        let name_ok = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let parameters = &function["parameters"];
        if tool["type"] != "function"
            || !name_ok
            || !function["description"].is_string()
            || parameters["type"] != "object"
            || !parameters["properties"].is_object()
            || names.contains(&name)
        {
            problem(format!("tool definition {tool}"));
        }
        names.push(name);
    }
    problems
}
