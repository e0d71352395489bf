//! What the stage's own logic (splitting, prompting, combining, the guard) asks of an engine,
//! so that logic runs the same over llama.cpp and, in unit tests, over a fake.

use std::sync::Arc;

use crate::component::Deadline;
use crate::component::threads::Threads;
use crate::engines::llama::{Completion, Generator, LlmModel, Prompt, Request};

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
