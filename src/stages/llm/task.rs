//! The built-in tasks, one row each: everything the stage does differently for a task (prompt,
//! system message, output field, how pieces combine, token budget, guard) is read from its row,
//! once, when the stage is built. A new task is a new row.

/// A built-in task.
pub struct Task {
    /// The `task` option's value.
    pub name: &'static str,
    /// The user message (`{{text}}` is the input); `prompt` replaces it.
    pub prompt: &'static str,
    /// The system message; `system` replaces it.
    pub system: Option<&'static str>,
    /// The output field when `to` is not given and the output is text (JSON is merged into
    /// the item, a label goes to `label`); `None`: `completion`.
    pub to: Option<&'static str>,
    /// How the pieces' outputs combine. `Merge` also makes the output JSON (so it needs
    /// `fields` or `schema`), `Vote` a label (so it needs `choices`).
    pub combine: Combine,
    /// With `max_tokens = 0` a piece may generate 1.5 × its tokens (+32) rather than the
    /// combine's fixed budget: the output is a rewrite as long as its input.
    pub proportional: bool,
    /// `guard` applies: a piece's output must stay close to its source's words.
    pub guarded: bool,
}

/// How the outputs of an input's pieces become one output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Combine {
    /// Concatenated with the source's whitespace between pieces (no overlap).
    Join,
    /// Summarized again until one piece remains.
    Reduce,
    /// JSON objects merged: first non-null value per key, lists concatenated.
    Merge,
    /// The most frequent label (ties: the earliest).
    Vote,
}

impl Combine {
    /// Most tokens a piece generates when `max_tokens` is 0 and the task is not proportional:
    /// a summary is short, a label shorter.
    pub fn max_tokens(self) -> usize {
        match self {
            Combine::Reduce => 256,
            Combine::Vote => 32,
            Combine::Join | Combine::Merge => 512,
        }
    }
}

pub const TASKS: &[Task] = &[
    Task {
        name: "cleanup",
        prompt: CLEANUP_PROMPT,
        system: Some(CLEANUP_SYSTEM),
        to: Some("clean_text"),
        combine: Combine::Join,
        proportional: true,
        guarded: true,
    },
    Task {
        name: "summarize",
        prompt: SUMMARIZE_PROMPT,
        system: None,
        to: Some("summary"),
        combine: Combine::Reduce,
        proportional: false,
        guarded: false,
    },
    Task {
        name: "extract",
        prompt: EXTRACT_PROMPT,
        system: None,
        to: None,
        combine: Combine::Merge,
        proportional: false,
        guarded: false,
    },
    Task {
        name: "classify",
        prompt: CLASSIFY_PROMPT,
        system: None,
        to: None,
        combine: Combine::Vote,
        proportional: false,
        guarded: false,
    },
];

/// The tasks' names, in table order, for the `task` option's choices.
pub const NAMES: [&str; TASKS.len()] = names();

const fn names() -> [&'static str; TASKS.len()] {
    let mut names = [""; TASKS.len()];
    let mut i = 0;
    while i < TASKS.len() {
        names[i] = TASKS[i].name;
        i += 1;
    }
    names
}

/// The task called `name`.
pub fn find(name: &str) -> Option<&'static Task> {
    TASKS.iter().find(|t| t.name == name)
}

const CLEANUP_SYSTEM: &str = "You are a careful copy editor of speech transcripts.";
const CLEANUP_PROMPT: &str = "Correct the capitalization and punctuation of this transcript and remove filler words such as \"um\" and \"uh\". Keep every other word as it is: do not summarize, shorten, explain or add anything. Reply with the corrected transcript only.\n\nTranscript:\n{{text}}";
const SUMMARIZE_PROMPT: &str = "Summarize the following text in at most three sentences. Reply with the summary only.\n\n{{text}}";
const EXTRACT_PROMPT: &str = "Extract these fields from the document below and reply with a JSON object: {{fields}}. Use null for a field the document does not give.\n\nDocument:\n{{text}}";
const CLASSIFY_PROMPT: &str =
    "Classify the text below as one of: {{choices}}. Reply with the label only.\n\nText:\n{{text}}";
