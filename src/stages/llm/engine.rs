//! What the stage's own logic (splitting, prompting, combining, the guard) asks of an engine,
//! so that logic runs the same over llama.cpp, over a chat completions server and, in unit
//! tests, over a fake.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::component::Deadline;
use crate::component::threads::Threads;
use crate::engines::llama::{Completion, Generator, LlmModel, Prompt, Request};
use crate::engines::openai::{Chat, Client};

/// Token counts, prompts in the model's format, and completions.
pub trait Engine {
    /// Tokens a piece of user text takes.
    fn count_tokens(&self, text: &str) -> usize;
    /// Tokens a whole prompt takes.
    fn prompt_tokens(&self, prompt: &Prompt) -> usize;
    /// The prompt for a message in the model's chat format; `None` when it has none.
    fn chat_prompt(&self, system: Option<&str>, user: &str) -> Option<Result<Prompt, String>>;
    /// Completes every request; one result per request, in order.
    fn generate(&mut self, requests: &[Request]) -> Vec<Result<Completion, String>>;
    /// What an item's record says of where its text went, besides the model's name.
    fn provenance(&self) -> Map<String, Value> {
        Map::new()
    }
}

/// A worker's llama.cpp context, leasing the run's CPU threads for each decode and giving up
/// at the stage's deadline.
pub struct Llama<'a> {
    pub model: &'a LlmModel,
    pub generator: Generator<'a>,
    pub threads: Arc<Threads>,
    pub n_threads: usize,
    pub deadline: Deadline,
}

impl Engine for Llama<'_> {
    fn count_tokens(&self, text: &str) -> usize {
        self.model.count_tokens(text)
    }

    fn prompt_tokens(&self, prompt: &Prompt) -> usize {
        self.model.tokenize(prompt).len()
    }

    fn chat_prompt(&self, system: Option<&str>, user: &str) -> Option<Result<Prompt, String>> {
        self.model.has_chat_template().then(|| {
            self.model
                .chat_prompt(system, user)
                .map_err(|e| format!("{e:#}"))
        })
    }

    fn generate(&mut self, requests: &[Request]) -> Vec<Result<Completion, String>> {
        let (threads, n, deadline) = (&self.threads, self.n_threads, &self.deadline);
        self.generator
            .run(requests, &|| deadline.passed(), || threads.borrow(Some(n)))
    }
}

/// A worker's share of a chat completions server: up to `parallel` requests in flight, each
/// retried by the client, all given up at the stage's deadline. The server tokenizes, so
/// token counts for splitting are estimated on the safe side (a token per 3 bytes; English
/// runs about 4.5).
pub struct Remote {
    pub client: Client,
    pub endpoint: String,
    pub parallel: usize,
    /// The structured output the replies must follow (JSON output, or the labels as a string
    /// enum), sent as `response_format`.
    pub schema: Option<Value>,
    pub deadline: Deadline,
    /// The model name and build the server last reported.
    pub served: Option<(String, Option<String>)>,
}

/// Tokens a text is taken to be, for a server's tokenizer lai does not have.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(3)
}

impl Engine for Remote {
    fn count_tokens(&self, text: &str) -> usize {
        estimate_tokens(text)
    }

    fn prompt_tokens(&self, prompt: &Prompt) -> usize {
        // The chat frame the server adds.
        estimate_tokens(&prompt.text()) + 16
    }

    fn chat_prompt(&self, system: Option<&str>, user: &str) -> Option<Result<Prompt, String>> {
        Some(Ok(Prompt::messages(system, user)))
    }

    fn generate(&mut self, requests: &[Request]) -> Vec<Result<Completion, String>> {
        let (client, schema, deadline) = (&self.client, self.schema.as_ref(), &self.deadline);
        let one = |request: &Request| -> Result<(Completion, String, Option<String>), String> {
            let (system, user) = request
                .prompt
                .chat()
                .ok_or("a remote request without chat messages. This is a bug.")?;
            let chat = Chat {
                system,
                user,
                max_tokens: request.max_tokens,
                stop: &request.stop,
                temperature: request.temperature,
                seed: request.seed,
                schema,
            };
            let reply = client.chat(&chat, &|| deadline.passed())?;
            // A label asked for as a JSON string comes back quoted.
            let text = match (schema, serde_json::from_str::<Value>(&reply.text)) {
                (Some(s), Ok(Value::String(label))) if s.get("enum").is_some() => label,
                _ => reply.text,
            };
            let completion = Completion {
                text,
                prompt_tokens: reply.prompt_tokens,
                cached_tokens: 0,
                tokens: reply.tokens,
                truncated: reply.truncated,
            };
            Ok((completion, reply.model, reply.revision))
        };
        let lanes = self.parallel.clamp(1, requests.len().max(1));
        let mut results: Vec<Option<Result<_, String>>> = (0..requests.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..lanes)
                .map(|lane| {
                    let one = &one;
                    scope.spawn(move || {
                        (lane..requests.len())
                            .step_by(lanes)
                            .map(|i| (i, one(&requests[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                for (i, result) in handle.join().unwrap_or_default() {
                    results[i] = Some(result);
                }
            }
        });
        results
            .into_iter()
            .map(|r| {
                let (completion, model, revision) =
                    r.unwrap_or_else(|| Err("a request thread failed. This is a bug.".into()))?;
                self.served = Some((model, revision));
                Ok(completion)
            })
            .collect()
    }

    fn provenance(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("endpoint".into(), json!(self.endpoint));
        if let Some((model, revision)) = &self.served {
            map.insert("served_model".into(), json!(model));
            if let Some(revision) = revision {
                map.insert("revision".into(), json!(revision));
            }
        }
        map
    }
}
