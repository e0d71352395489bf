//! ONNX Runtime (via `ort`, loaded at run time) and Hugging Face tokenizers for BERT-style
//! encoders: sentence embeddings and token classification.
//!
//! The runtime library is the catalog's `onnxruntime` file (or `$LAI_ONNXRUNTIME`), loaded once
//! per process. A `TextModel` is a tokenizer and the model's limits, shared by a stage's workers;
//! an `Encoder` is one worker's session. Texts longer than the model's window are never cut: they
//! are split into overlapping windows of tokens, and `Encoder::run` computes any set of windows
//! in batches bounded by a token budget, shortest first, so a batch pads little. Item text is
//! data: a `[SEP]` or `[CLS]` written in it is tokenized as those characters, never as the
//! model's own marker.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow, bail};
use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use tokenizers::Tokenizer;

use crate::device::Device;
use crate::models::ONNX_RUNTIME_ENV;

/// Loads ONNX Runtime once per process from `library` (the catalog's file, or the one
/// `$LAI_ONNXRUNTIME` names: the model store resolves that); later calls return the first
/// call's outcome.
pub fn load_runtime(library: &Path) -> anyhow::Result<&'static Environment> {
    static LOADED: OnceLock<Result<Environment, String>> = OnceLock::new();
    let outcome = LOADED.get_or_init(|| {
        let path = library.to_path_buf();
        if !path.is_file() {
            return Err(format!(
                "ONNX Runtime library {} does not exist; run `lai models pull onnxruntime` or set {ONNX_RUNTIME_ENV} to a libonnxruntime.so (1.31)",
                path.display()
            ));
        }
        let fail = |e: &dyn std::fmt::Display| {
            format!(
                "cannot load ONNX Runtime from {}: {e}; it must be libonnxruntime 1.31 for this platform (`lai models pull onnxruntime`)",
                path.display()
            )
        };
        ort::init_from(&path)
            .map_err(|e| fail(&e))?
            .with_name("lai")
            .with_telemetry(false)
            .build()
            .map_err(|e| fail(&e))
    });
    outcome.as_ref().map_err(|e| anyhow!("{e}"))
}

/// A BERT-style model's tokenizer and limits, shared by every worker.
pub struct TextModel {
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
    /// Most tokens in one window, [CLS] and [SEP] included.
    pub max_tokens: usize,
}

impl TextModel {
    pub fn load(tokenizer: &Path, max_tokens: usize) -> anyhow::Result<TextModel> {
        let mut tokenizer = Tokenizer::from_file(tokenizer).map_err(|e| {
            anyhow!(
                "cannot read tokenizer {}: {e}; run `lai models pull` to restore it",
                tokenizer.display()
            )
        })?;
        // Files often carry a fixed padding/truncation for training; windows are lai's job.
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow!("tokenizer: {e}"))?;
        tokenizer.with_padding(None);
        // Special tokens in the text are plain characters; only `Encoder::run` adds markers.
        tokenizer.set_encode_special_tokens(true);
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| anyhow!("tokenizer has no {token} token; is it a BERT tokenizer?"))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        if max_tokens < 8 {
            bail!("a window of {max_tokens} tokens is too small");
        }
        Ok(TextModel {
            tokenizer,
            cls,
            sep,
            max_tokens,
        })
    }

    /// Word-piece ids of a text, without special tokens, and with byte offsets when asked.
    pub fn tokenize(&self, text: &str, offsets: bool) -> Result<Tokens, String> {
        let encoding = if offsets {
            self.tokenizer.encode(text, false)
        } else {
            self.tokenizer.encode_fast(text, false)
        }
        .map_err(|e| format!("cannot tokenize: {e}"))?;
        Ok(Tokens {
            ids: encoding.get_ids().to_vec(),
            offsets: if offsets {
                encoding.get_offsets().to_vec()
            } else {
                Vec::new()
            },
        })
    }

    /// Token ranges covering `len` tokens in windows of at most `max_tokens - 2` (room for [CLS]
    /// and [SEP]), each overlapping the previous one by `overlap` tokens. An empty text has one
    /// empty window, so every text gets an output.
    pub fn windows(&self, len: usize, overlap: usize) -> Vec<Range<usize>> {
        let size = self.max_tokens - 2;
        let step = size - overlap.min(size / 2);
        let first: Range<usize> = 0..len.min(size);
        let mut windows = vec![first];
        while windows.last().is_some_and(|w| w.end < len) {
            let start = windows.last().map_or(0, |w| w.start + step);
            windows.push(start..(start + size).min(len));
        }
        windows
    }
}

/// A tokenized text.
#[derive(Default)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// Byte range of each token in the text (empty unless asked for).
    pub offsets: Vec<(usize, usize)>,
}

/// One worker's ONNX session of an encoder with `input_ids`, `attention_mask` and (optionally)
/// `token_type_ids` inputs and one `[batch, tokens, width]` float output.
pub struct Encoder {
    session: Session,
    type_ids: bool,
}

impl Encoder {
    pub fn load(
        env: &Environment,
        model: &Path,
        threads: usize,
        device: Device,
    ) -> anyhow::Result<Encoder> {
        let configure = || -> Result<_, String> {
            let mut b = Session::builder(env).map_err(|e| e.to_string())?;
            if device == Device::Gpu {
                // An error instead of ONNX Runtime's silent fallback to the CPU.
                b = b
                    .with_execution_providers([ep::CUDA::default().build().error_on_failure()])
                    .map_err(|e| {
                        format!("{e} (the CUDA provider needs cuBLAS, cuRAND and cuDNN 9 for CUDA 13 on the library path)")
                    })?;
            }
            let b = b
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| e.to_string())?;
            let b = b
                .with_intra_threads(threads.max(1))
                .map_err(|e| e.to_string())?;
            b.with_inter_threads(1).map_err(|e| e.to_string())
        };
        let session = configure()
            .map_err(|e| anyhow!("cannot configure ONNX Runtime: {e}"))?
            .commit_from_file(model)
            .with_context(|| {
                format!(
                    "cannot load ONNX model {}; if it is damaged, `lai models pull` restores it",
                    model.display()
                )
            })?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for needed in ["input_ids", "attention_mask"] {
            if !inputs.contains(&needed) {
                bail!(
                    "ONNX model {} has inputs {inputs:?}, not `{needed}`; it is not a BERT-style encoder",
                    model.display()
                );
            }
        }
        let type_ids = inputs.contains(&"token_type_ids");
        Ok(Encoder { session, type_ids })
    }

    /// Runs every window (token ids without special tokens) through the model in batches of at
    /// most `budget` padded tokens, shortest windows together, and calls `each(window index,
    /// outputs)` with the output rows of its tokens: [CLS], the window's tokens, [SEP].
    /// `around` wraps each model call (to hold a thread lease).
    pub fn run<L>(
        &mut self,
        model: &TextModel,
        windows: &[&[u32]],
        budget: usize,
        mut around: impl FnMut() -> L,
        mut each: impl FnMut(usize, &[f32], usize),
    ) -> anyhow::Result<()> {
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| windows[i].len());
        let mut start = 0;
        while start < order.len() {
            // Sorted ascending, so the last window of a batch sets its padded length.
            let mut end = start + 1;
            while end < order.len() && (end + 1 - start) * (windows[order[end]].len() + 2) <= budget
            {
                end += 1;
            }
            let batch = &order[start..end];
            let seq = windows[order[end - 1]].len() + 2;
            let mut ids = vec![0i64; batch.len() * seq];
            let mut mask = vec![0i64; batch.len() * seq];
            for (row, &w) in batch.iter().enumerate() {
                let tokens = std::iter::once(model.cls)
                    .chain(windows[w].iter().copied())
                    .chain(std::iter::once(model.sep));
                for (col, id) in tokens.enumerate() {
                    ids[row * seq + col] = i64::from(id);
                    mask[row * seq + col] = 1;
                }
            }
            let shape = [batch.len(), seq];
            let tensor = |data: Vec<i64>| Tensor::from_array((shape, data));
            let mut inputs = ort::inputs![
                "input_ids" => tensor(ids)?,
                "attention_mask" => tensor(mask)?,
            ];
            if self.type_ids {
                inputs.push((
                    "token_type_ids".into(),
                    tensor(vec![0; batch.len() * seq])?.into(),
                ));
            }
            let _lease = around();
            let outputs = self.session.run(inputs)?;
            let (out_shape, data) = outputs[0].try_extract_tensor::<f32>()?;
            let width = match **out_shape {
                [b, s, w] if b as usize == batch.len() && s as usize == seq => w as usize,
                _ => bail!(
                    "model output has shape {out_shape:?}, expected [{}, {seq}, width]",
                    batch.len()
                ),
            };
            for (row, &w) in batch.iter().enumerate() {
                let len = windows[w].len() + 2;
                let from = row * seq * width;
                each(w, &data[from..from + len * width], width);
            }
            start = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(max_tokens: usize) -> TextModel {
        TextModel {
            tokenizer: Tokenizer::new(tokenizers::models::wordpiece::WordPiece::default()),
            cls: 101,
            sep: 102,
            max_tokens,
        }
    }

    // Windows cover every token, overlap as asked, and never exceed the model's window.
    #[test]
    fn windows_cover_with_overlap() {
        let m = model(12);
        assert_eq!(m.windows(0, 3), vec![0..0]);
        assert_eq!(m.windows(10, 3), vec![0..10]);
        assert_eq!(m.windows(25, 3), vec![0..10, 7..17, 14..24, 21..25]);
        for len in 0..100 {
            let w = m.windows(len, 4);
            assert_eq!(w[0].start, 0);
            assert_eq!(w.last().unwrap().end, len);
            for pair in w.windows(2) {
                assert_eq!(pair[0].end - pair[1].start, 4);
            }
            assert!(w.iter().all(|r| r.len() <= 10));
        }
    }

    // A `[SEP]`, `[CLS]` or `[MASK]` inside item text stays text: the real tokenizer gives none
    // of the markers' ids for it.
    #[test]
    fn special_tokens_in_text_are_text() {
        let dir = crate::models::models_dir(None);
        let model = TextModel::load(&dir.join("all-minilm-l6-v2/tokenizer.json"), 256).unwrap();
        let mask = model.tokenizer.token_to_id("[MASK]").unwrap();
        let tokens = model.tokenize("a [SEP] b [CLS] c [MASK]", true).unwrap();
        assert!(tokens.ids.len() > 6, "{:?}", tokens.ids);
        for id in [model.cls, model.sep, mask] {
            assert!(!tokens.ids.contains(&id), "{:?}", tokens.ids);
        }
    }
}
