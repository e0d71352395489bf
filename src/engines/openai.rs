//! A client of an OpenAI-compatible chat completions server (vLLM, TGI, llama.cpp's
//! llama-server, ...): one request per call, retried with backoff on what a retry can cure
//! (no connection, 429, 5xx, a timeout), never on what it cannot (4xx, a malformed reply).
//!
//! The client reaches only the addresses its endpoint resolved to before the run was confined
//! (no DNS afterwards, no proxy, no redirects). Errors carry the HTTP status and the server's
//! error code, never the body's text: a server may echo the prompt, which is item content.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Where a server is and who asks: the endpoint's base URL (`http://gpu-box:8000/v1`), its
/// addresses, the model name it serves and the API key (from the environment or a file).
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    pub addrs: Vec<SocketAddr>,
}

impl Endpoint {
    /// Checks `url` and resolves its host now (a confined run resolves nothing later).
    ///
    /// # Errors
    /// When the URL is not `http(s)://host[:port]/...` or its host does not resolve.
    pub fn resolve(url: &str) -> anyhow::Result<Endpoint> {
        let (host, port) = host_port(url)?;
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| {
                format!("cannot resolve the host of endpoint {url}; check the name, or give the server's address")
            })?
            .collect();
        if addrs.is_empty() {
            bail!("endpoint {url}: its host resolves to no address");
        }
        Ok(Endpoint {
            url: url.trim_end_matches('/').to_string(),
            addrs,
        })
    }
}

/// The host and port of an `http://` or `https://` URL.
///
/// # Errors
/// When it is neither, or has no host.
pub fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, 80)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest, 443)
    } else {
        bail!("endpoint {url} must start with http:// or https://");
    };
    let authority = rest.split('/').next().unwrap_or("");
    if url.contains('?') || url.contains('#') {
        bail!(
            "endpoint {url} has a query or fragment; give the base URL (http://host:port/v1), and any key with `api_key_env` or `api_key_file`"
        );
    }
    if authority.contains('@') {
        bail!(
            "endpoint {url} has credentials in it; give the key with `api_key_env` or `api_key_file`"
        );
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            port.parse()
                .with_context(|| format!("endpoint {url}: `{port}` is not a port"))?,
        ),
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("endpoint {url} has no host");
    }
    Ok((host.to_string(), port))
}

/// Answers every lookup with the addresses resolved before confinement.
#[derive(Debug)]
struct Pinned(Vec<SocketAddr>);

impl Resolver for Pinned {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        for addr in self.0.iter().take(16) {
            addrs.push(*addr);
        }
        Ok(addrs)
    }
}

/// A chat completions client for one endpoint and served model.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    model: String,
    key: Option<String>,
    retries: u32,
}

/// One chat request.
pub struct Chat<'a> {
    pub system: Option<&'a str>,
    pub user: &'a str,
    pub max_tokens: usize,
    pub stop: &'a [String],
    pub temperature: f32,
    pub seed: u32,
    /// A JSON Schema the reply must follow, sent as the server's structured output.
    pub schema: Option<&'a Value>,
}

/// What the server answered.
#[derive(Debug)]
pub struct Reply {
    pub text: String,
    pub prompt_tokens: usize,
    pub tokens: usize,
    /// The server stopped at `max_tokens`.
    pub truncated: bool,
    /// The model the server says it ran, and its build (`system_fingerprint`) when it says.
    pub model: String,
    pub revision: Option<String>,
}

/// Why a request failed; `retry` when another try may succeed.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub retry: bool,
}

impl Client {
    pub fn new(
        endpoint: &Endpoint,
        model: &str,
        key: Option<String>,
        timeout: Duration,
        retries: u32,
    ) -> Client {
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("lai/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: ureq::Agent::with_parts(
                config,
                DefaultConnector::new(),
                Pinned(endpoint.addrs.clone()),
            ),
            url: format!("{}/chat/completions", endpoint.url),
            model: model.to_string(),
            key,
            retries,
        }
    }

    /// Sends `chat`, retrying with exponential backoff (0.5 s, 1 s, 2 s, ...) while the failure
    /// may pass and `give_up` says to go on.
    ///
    /// # Errors
    /// The last failure, naming the HTTP status and server error code (never the body).
    pub fn chat(&self, chat: &Chat, give_up: &dyn Fn() -> bool) -> Result<Reply, String> {
        let body = self.body(chat);
        let mut wait = Duration::from_millis(500);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.send(&body) {
                Ok(reply) => return Ok(reply),
                Err(f) if f.retry && tries <= self.retries && !give_up() => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                Err(f) => {
                    let tried = if tries > 1 {
                        format!(" (after {tries} tries)")
                    } else {
                        String::new()
                    };
                    return Err(format!("{}{tried}", f.message));
                }
            }
        }
    }

    fn body(&self, chat: &Chat) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = chat.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": chat.user}));
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": chat.max_tokens,
            "temperature": chat.temperature,
            "seed": chat.seed,
            "stream": false,
        });
        if !chat.stop.is_empty() {
            body["stop"] = json!(chat.stop);
        }
        if let Some(schema) = chat.schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "output", "strict": true, "schema": schema},
            });
        }
        body
    }

    fn send(&self, body: &Value) -> Result<Reply, Failure> {
        let mut request = self.agent.post(&self.url);
        if let Some(key) = &self.key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let fail = |message: String, retry| Failure { message, retry };
        let request = request.header("Content-Type", "application/json");
        let mut response = match request.send(body.to_string().as_bytes()) {
            Ok(response) => response,
            Err(e) => {
                let retry = matches!(
                    e,
                    ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
                );
                return Err(fail(
                    format!("request to {} failed: {}", self.url, transport(&e)),
                    retry,
                ));
            }
        };
        let status = response.status().as_u16();
        let reply: Result<Value, String> = response
            .body_mut()
            .read_to_string()
            .map_err(|e| transport(&e))
            .and_then(|text| serde_json::from_str(&text).map_err(|_| "not JSON".to_string()));
        if status != 200 {
            let code = reply.ok().and_then(|v| error_code(&v));
            let code = code.map_or(String::new(), |c| format!(" ({c})"));
            let retry = status == 429 || status >= 500;
            return Err(fail(
                format!("{} answered HTTP {status}{code}", self.url),
                retry,
            ));
        }
        let reply = reply.map_err(|_| {
            fail(
                format!("{} answered something that is not JSON", self.url),
                false,
            )
        })?;
        parse_reply(&reply).ok_or_else(|| {
            fail(
                format!(
                    "{}'s answer is not a chat completion (no choices[0].message.content)",
                    self.url
                ),
                false,
            )
        })
    }
}

/// What went wrong on the way, in words that hold no content.
fn transport(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("{}", io.kind()),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::ConnectionFailed => "no connection".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
            "the server redirected elsewhere (lai follows no redirects)".into()
        }
        ureq::Error::BodyExceedsLimit(_) => "the answer is over 10 MB".into(),
        _ => "protocol error".into(),
    }
}

/// The server's error code or type, when it is a short identifier (the message may quote the
/// prompt, so it is never shown).
fn error_code(body: &Value) -> Option<String> {
    let error = &body["error"];
    [&error["code"], &error["type"]]
        .into_iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .find(|s| {
            !s.is_empty()
                && s.len() <= 40
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        })
}

fn parse_reply(reply: &Value) -> Option<Reply> {
    let choice = &reply["choices"][0];
    let text = choice["message"]["content"].as_str()?.to_string();
    let count = |key: &str| reply["usage"][key].as_u64().map_or(0, |n| n as usize);
    Some(Reply {
        text,
        prompt_tokens: count("prompt_tokens"),
        tokens: count("completion_tokens"),
        truncated: choice["finish_reason"] == "length",
        model: reply["model"].as_str().unwrap_or("").to_string(),
        revision: reply["system_fingerprint"].as_str().map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Endpoints name their host and port; a URL with credentials or no scheme is refused.
    #[test]
    fn endpoints_parse() {
        let hp = |u: &str| host_port(u).map_err(|e| e.to_string());
        assert_eq!(hp("http://gpu-box:8000/v1"), Ok(("gpu-box".into(), 8000)));
        assert_eq!(
            hp("https://llm.example.org/v1"),
            Ok(("llm.example.org".into(), 443))
        );
        assert_eq!(hp("http://[::1]:9000/v1"), Ok(("::1".into(), 9000)));
        assert!(hp("gpu-box:8000").unwrap_err().contains("http://"));
        assert!(
            hp("http://user:pw@box/v1")
                .unwrap_err()
                .contains("api_key_env")
        );
        assert!(hp("http://box:port/v1").unwrap_err().contains("not a port"));
    }

    // A reply's text, usage and fingerprint are read; an error shows only a short code.
    #[test]
    fn replies_and_errors() {
        let reply = json!({"model": "m", "system_fingerprint": "b123",
            "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2}});
        let r = parse_reply(&reply).unwrap();
        assert_eq!(
            (r.text.as_str(), r.prompt_tokens, r.tokens, r.truncated),
            ("hi", 5, 2, true)
        );
        assert_eq!(r.revision.as_deref(), Some("b123"));
        assert!(parse_reply(&json!({"choices": []})).is_none());
        let echo = json!({"error": {"message": "prompt SECRET too long", "type": "invalid_request_error"}});
        assert_eq!(error_code(&echo).as_deref(), Some("invalid_request_error"));
        assert_eq!(
            error_code(&json!({"error": {"code": "the prompt SECRET"}})),
            None
        );
    }
}
