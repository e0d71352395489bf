//! Progress bars: one per stage plus input and output, drawn on stderr only when asked.
//!
//! This is the only module that draws. When disabled (not a TTY, `--quiet`, `--progress never`)
//! the bars are hidden and cost one atomic add per update.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    read: ProgressBar,
    stages: Vec<ProgressBar>,
    written: ProgressBar,
}

const COUNTING: &str = "{prefix:>12} {spinner} {human_pos} items  {rate}  {elapsed}  {msg}";
const KNOWN: &str = "{prefix:>12} [{bar:30}] {human_pos}/{human_len}  {rate}  eta {eta}  {msg}";

impl Progress {
    pub fn new(enabled: bool, stage_labels: &[String]) -> Progress {
        let target = if enabled {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let bar = |label: &str| {
            let bar = multi.add(ProgressBar::no_length());
            bar.set_style(style(COUNTING));
            bar.set_prefix(label.to_string());
            if enabled {
                bar.enable_steady_tick(Duration::from_millis(200));
            }
            bar
        };
        Progress {
            read: bar("read"),
            stages: stage_labels.iter().map(|l| bar(l)).collect(),
            written: bar("written"),
            multi: multi.clone(),
        }
    }

    pub fn read(&self) -> &ProgressBar {
        &self.read
    }

    pub fn written(&self) -> &ProgressBar {
        &self.written
    }

    pub fn stage(&self, i: usize) -> ProgressBar {
        self.stages[i].clone()
    }

    /// Sets the number of items once the source has counted them, turning spinners into bars.
    pub fn set_total(&self, total: u64) {
        for bar in self.all() {
            bar.set_length(total);
            bar.set_style(style(KNOWN));
        }
    }

    pub fn finish(&self) {
        for bar in self.all() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }

    fn all(&self) -> impl Iterator<Item = &ProgressBar> {
        std::iter::once(&self.read)
            .chain(&self.stages)
            .chain(std::iter::once(&self.written))
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("progress templates are valid. This is a bug.")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} items/s", state.per_sec());
            },
        )
        .progress_chars("=> ")
}
