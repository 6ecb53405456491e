//! A chat-completions client for OpenAI-compatible servers (OpenAI, Ollama, vLLM,
//! llama.cpp's server, LM Studio), lenient where real servers bend the API.
//!
//! - Requests: `POST {endpoint}/chat/completions` with the messages and tools; the key,
//!   read from the environment at each call, goes in the `Authorization` header only.
//!   It is never part of an error, a log line or the body.
//! - Retries: 429 and 5xx answers, and connections that fail, are tried again up to
//!   [`RETRIES`] times, after 0.5 s, 1 s, 2 s (or the server's `Retry-After`, at most
//!   10 s). Other answers are errors at once, with the server's own words.
//! - Answers: `content` may be `null`; a tool call's `arguments` may be JSON text (the
//!   API) or an object (Ollama); a missing call id is made up. What cannot be read as a
//!   chat completion is one [`ApiError::Malformed`].

use std::time::Duration;

use serde_json::{json, Value};

/// How many times a failed call is tried again.
pub const RETRIES: u32 = 3;

/// The longest wait before a retry, whatever the server asks.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer (connection refused, timed out), after the retries.
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// The base URL.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status (after the retries, for 429 and 5xx).
    #[error("the model's server answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's message, on one line.
        message: String,
    },
    /// An answer that is not a chat completion.
    #[error("the model's server answered something that is not a chat completion: {0}")]
    Malformed(String),
    /// The environment variable that should hold the key is not set.
    #[error("environment variable {0} (api_key_env) is not set")]
    NoKey(String),
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The call's id (made up when the server gave none).
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, or why they could not be read.
    pub arguments: Result<Value, String>,
}

/// The model's answer to one call.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// Its text, if any.
    pub content: Option<String>,
    /// The tool calls it asks for (none: the answer is final).
    pub calls: Vec<Call>,
}

impl Reply {
    /// The answer as an assistant message of the conversation, in the API's own form
    /// (arguments as JSON text, every call with its id). No text is `""`, not `null`:
    /// llama.cpp's Python server refuses `null` there, and none refuses `""`.
    pub fn message(&self) -> Value {
        let text = self.content.clone().unwrap_or_default();
        let mut message = json!({"role": "assistant", "content": text});
        if !self.calls.is_empty() {
            message["tool_calls"] = self
                .calls
                .iter()
                .map(|call| {
                    let arguments = match &call.arguments {
                        Ok(value) => value.to_string(),
                        Err(text) => text.clone(),
                    };
                    json!({"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": arguments}})
                })
                .collect();
        }
        message
    }
}

/// A client for one endpoint and model.
pub struct Client {
    endpoint: String,
    model: String,
    key_env: Option<String>,
    temperature: Option<f64>,
    http: ureq::Agent,
    calls: u64,
}

impl Client {
    /// A client of `model` at `endpoint` (a base URL such as `https://api.openai.com/v1`),
    /// with the key in environment variable `key_env` (none: no key), each call given up
    /// after `timeout`.
    pub fn new(
        endpoint: &str,
        model: &str,
        key_env: Option<String>,
        temperature: Option<f64>,
        timeout: Duration,
    ) -> Result<Self, ApiError> {
        if let Some(name) = &key_env {
            if std::env::var_os(name).is_none() {
                return Err(ApiError::NoKey(name.clone()));
            }
        }
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            key_env,
            temperature,
            http,
            calls: 0,
        })
    }

    /// One model call: the conversation `messages` and the `tools` it may use.
    pub fn complete(&mut self, messages: &[Value], tools: &[Value]) -> Result<Reply, ApiError> {
        let mut body = json!({"model": self.model, "messages": messages});
        if !tools.is_empty() {
            body["tools"] = tools.into();
            body["tool_choice"] = "auto".into();
        }
        if let Some(temperature) = self.temperature {
            body["temperature"] = temperature.into();
        }
        let body = body.to_string();
        self.calls += 1;
        let mut attempt = 0;
        loop {
            let wait = match self.post(&body) {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    return parse(&answer.text, self.calls)
                }
                Ok(answer) if answer.status == 429 || answer.status >= 500 => {
                    if attempt == RETRIES {
                        return Err(status_error(answer.status, &answer.text));
                    }
                    answer.retry_after
                }
                Ok(answer) => return Err(status_error(answer.status, &answer.text)),
                Err(reason) => {
                    if attempt == RETRIES {
                        return Err(ApiError::Unreachable {
                            endpoint: self.endpoint.clone(),
                            reason,
                        });
                    }
                    None
                }
            };
            let backoff = Duration::from_millis(500) * 2u32.pow(attempt);
            std::thread::sleep(wait.unwrap_or(backoff).min(MAX_BACKOFF));
            attempt += 1;
        }
    }

    /// One POST, or why no answer came.
    fn post(&self, body: &str) -> Result<Answer, String> {
        let url = format!("{}/chat/completions", self.endpoint);
        let mut request = self
            .http
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(name) = &self.key_env {
            let key = std::env::var(name).unwrap_or_default();
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let mut response = request.send(body).map_err(|error| error.to_string())?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(Duration::from_secs_f64);
        Ok(Answer {
            status: response.status().as_u16(),
            text: response
                .body_mut()
                .read_to_string()
                .map_err(|error| error.to_string())?,
            retry_after,
        })
    }
}

/// What the server answered to one POST.
struct Answer {
    status: u16,
    text: String,
    /// How long it asks to wait before trying again.
    retry_after: Option<Duration>,
}

/// The server's error, its message on one line and short.
fn status_error(status: u16, text: &str) -> ApiError {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let message = parsed
        .as_ref()
        .and_then(|body| body["error"]["message"].as_str().or(body["error"].as_str()))
        .unwrap_or(text);
    ApiError::Status {
        status,
        message: one_line(message, 300),
    }
}

/// `text` on one line, at most `limit` characters.
fn one_line(text: &str, limit: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// The first choice's message of a chat completion; `call` numbers made-up call ids.
fn parse(text: &str, call: u64) -> Result<Reply, ApiError> {
    let body: Value =
        serde_json::from_str(text).map_err(|error| ApiError::Malformed(error.to_string()))?;
    let message = &body["choices"][0]["message"];
    if !message.is_object() {
        return Err(ApiError::Malformed(format!(
            "no choices[0].message in {}",
            one_line(text, 200)
        )));
    }
    let content = match &message["content"] {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        other => return Err(ApiError::Malformed(format!("content is {other}"))),
    };
    let calls = match &message["tool_calls"] {
        Value::Null => Vec::new(),
        Value::Array(calls) => calls
            .iter()
            .enumerate()
            .map(|(n, entry)| read_call(entry, format!("call_{call}_{n}")))
            .collect::<Result<_, _>>()?,
        other => return Err(ApiError::Malformed(format!("tool_calls is {other}"))),
    };
    Ok(Reply { content, calls })
}

/// One entry of `tool_calls`; `made_up` is its id if it has none.
fn read_call(entry: &Value, made_up: String) -> Result<Call, ApiError> {
    let function = &entry["function"];
    let name = function["name"]
        .as_str()
        .ok_or_else(|| ApiError::Malformed(format!("a tool call without a name: {entry}")))?;
    let arguments = match &function["arguments"] {
        Value::String(text) if text.trim().is_empty() => Ok(json!({})),
        Value::String(text) => serde_json::from_str(text).map_err(|_| text.clone()),
        Value::Null => Ok(json!({})),
        value => Ok(value.clone()),
    };
    let id = match &entry["id"] {
        Value::String(id) if !id.is_empty() => id.clone(),
        _ => made_up,
    };
    Ok(Call {
        id,
        name: name.to_owned(),
        arguments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(message: Value) -> String {
        json!({"choices": [{"index": 0, "message": message}]}).to_string()
    }

    #[test]
    fn answers_real_servers_give_are_read() {
        let openai = completion(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "Calc__add", "arguments": "{\"a\":1,\"b\":2}"}}]}));
        let reply = parse(&openai, 1).unwrap();
        assert_eq!(reply.content, None);
        assert_eq!(reply.calls[0].id, "call_a");
        assert_eq!(reply.calls[0].arguments, Ok(json!({"a": 1, "b": 2})));
        // Ollama: arguments as an object, no id.
        let ollama = completion(json!({"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "Calc__add", "arguments": {"a": 1}}}]}));
        let reply = parse(&ollama, 7).unwrap();
        assert_eq!(reply.calls[0].id, "call_7_0");
        assert_eq!(reply.calls[0].arguments, Ok(json!({"a": 1})));
        assert_eq!(
            reply.message()["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        // No text goes back as "" (llama.cpp's Python server refuses null).
        assert_eq!(reply.message()["content"], "");
        let bad_args = completion(json!({"content": null, "tool_calls": [
            {"id": "x", "function": {"name": "f", "arguments": "{not json"}}]}));
        assert_eq!(
            parse(&bad_args, 1).unwrap().calls[0].arguments,
            Err("{not json".into())
        );
        let text = parse(&completion(json!({"role": "assistant", "content": "5"})), 1).unwrap();
        assert_eq!((text.content.as_deref(), text.calls.len()), (Some("5"), 0));
    }

    #[test]
    fn what_is_not_a_completion_is_one_error() {
        for body in [
            "<html>oops</html>",
            "{\"choices\": []}",
            "{\"choices\": [{\"message\": {\"content\": 3}}]}",
        ] {
            let error = parse(body, 1).unwrap_err();
            assert!(matches!(error, ApiError::Malformed(_)), "{body}: {error}");
            assert!(!error.to_string().contains('\n'));
        }
    }

    #[test]
    fn server_errors_are_short_and_on_one_line() {
        let error = status_error(400, r#"{"error": {"message": "bad\nrequest"}}"#);
        assert_eq!(
            error.to_string(),
            "the model's server answered 400: bad request"
        );
        let long = "x ".repeat(400);
        assert!(status_error(500, &long).to_string().len() < 400);
    }
}
