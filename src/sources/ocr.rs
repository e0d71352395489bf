//! OCR for scanned pages and image files, offline: Tesseract (the `tesseract` command, Debian's
//! `tesseract-ocr` with its language data) reads each page; the pages of a scanned PDF are
//! first rendered by poppler's `pdftoppm`. `scripts/deps.sh` installs both.
//!
//! Each page's words come back with Tesseract's confidence (0-100); the item records the
//! engine and its version, the language and each page's mean word confidence. OCR runs on the
//! input reader's thread, a page at a time, each program with one thread (so it never competes
//! with the engines for more than one core), no input but the page, its messages discarded
//! (they may quote the file's name or bytes), and a time limit per call (a page; a whole
//! multi-page TIFF). Their files go to a folder of their own in the temp folder (made
//! exclusively, readable by this user only), removed afterwards.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest one call may take (rendering a page, reading an image file).
const PAGE_LIMIT: Duration = Duration::from_secs(120);
/// Resolution scanned PDF pages are rendered at for Tesseract.
const DPI: &str = "300";

/// How a source reads scanned pages: the language(s) Tesseract reads them in (`eng`,
/// `deu+eng`), once the programs are found.
pub struct Ocr {
    language: String,
    found: OnceLock<Result<Programs, String>>,
}

struct Programs {
    tesseract: PathBuf,
    pdftoppm: Option<PathBuf>,
    /// "tesseract 5.3.0".
    engine: String,
}

/// One page as Tesseract read it.
pub struct Page {
    pub text: String,
    /// Mean confidence of its words, 0-100; `None` when it found no word.
    pub confidence: Option<f64>,
}

/// What an item records of its OCR: the engine, the language, and each page read (from 1) with
/// its mean word confidence.
#[derive(Debug)]
pub struct Provenance {
    pub engine: String,
    pub language: String,
    pub pages: Vec<(usize, Option<f64>)>,
}

impl Ocr {
    pub fn new(language: String) -> Ocr {
        Ocr {
            language,
            found: OnceLock::new(),
        }
    }

    fn programs(&self) -> Result<&Programs, String> {
        self.found
            .get_or_init(|| find(&self.language))
            .as_ref()
            .map_err(Clone::clone)
    }

    pub fn provenance(&self, pages: Vec<(usize, Option<f64>)>) -> Result<Provenance, String> {
        Ok(Provenance {
            engine: self.programs()?.engine.clone(),
            language: self.language.clone(),
            pages,
        })
    }

    /// Reads the pages of an image file (`extension` says its format; a TIFF may hold many).
    pub fn image(&self, bytes: &[u8], extension: &str) -> Result<Vec<Page>, String> {
        let programs = self.programs()?;
        let dir = Scratch::new()?;
        let path = dir.path().join(format!("image.{extension}"));
        std::fs::write(&path, bytes).map_err(|e| format!("OCR: cannot write a temp file: {e}"))?;
        self.read(programs, &path)
    }

    /// Reads the given pages (from 1) of a PDF by rendering each one.
    pub fn pdf_pages(&self, bytes: &[u8], pages: &[usize]) -> Result<Vec<Page>, String> {
        let programs = self.programs()?;
        let pdftoppm = programs.pdftoppm.as_ref().ok_or(
            "scanned PDF pages need poppler's `pdftoppm` to be rendered for OCR; install poppler-utils (scripts/deps.sh does)",
        )?;
        let dir = Scratch::new()?;
        let pdf = dir.path().join("scan.pdf");
        std::fs::write(&pdf, bytes).map_err(|e| format!("OCR: cannot write a temp file: {e}"))?;
        let mut out = Vec::with_capacity(pages.len());
        for page in pages {
            let n = page.to_string();
            let prefix = dir.path().join(format!("page-{n}"));
            run(Command::new(pdftoppm)
                .args([
                    "-r",
                    DPI,
                    "-gray",
                    "-png",
                    "-singlefile",
                    "-f",
                    &n,
                    "-l",
                    &n,
                ])
                .arg(&pdf)
                .arg(&prefix))
            .map_err(|why| format!("page {n} could not be rendered for OCR ({why})"))?;
            let image = prefix.with_extension("png");
            let mut read = self.read(programs, &image)?;
            out.push(read.pop().unwrap_or(Page {
                text: String::new(),
                confidence: None,
            }));
            let _ = std::fs::remove_file(image);
        }
        Ok(out)
    }

    /// Tesseract over one image file: its pages' words, by its TSV output.
    fn read(&self, programs: &Programs, image: &Path) -> Result<Vec<Page>, String> {
        let tsv = run(Command::new(&programs.tesseract)
            .arg(image)
            .arg("stdout")
            .args(["-l", &self.language, "--psm", "3", "tsv"]))
        .map_err(|why| format!("Tesseract cannot read this image ({why})"))?;
        Ok(pages(&String::from_utf8_lossy(&tsv)))
    }
}

/// Finds `tesseract` (and `pdftoppm`) on PATH and checks the language data is there.
fn find(language: &str) -> Result<Programs, String> {
    let missing = || {
        "OCR needs Tesseract: install tesseract-ocr and its language data (apt-get install tesseract-ocr tesseract-ocr-eng poppler-utils; scripts/deps.sh does), or set `ocr = \"off\"` in [input]".to_string()
    };
    let tesseract = on_path("tesseract").ok_or_else(missing)?;
    let version = run(Command::new(&tesseract).arg("--version")).map_err(|_| missing())?;
    let engine = String::from_utf8_lossy(&version)
        .lines()
        .next()
        .unwrap_or("tesseract")
        .trim()
        .to_string();
    let langs = run(Command::new(&tesseract).arg("--list-langs")).map_err(|_| missing())?;
    let langs = String::from_utf8_lossy(&langs);
    let have: Vec<&str> = langs.lines().skip(1).map(str::trim).collect();
    if let Some(lack) = language.split('+').find(|l| !have.contains(l)) {
        return Err(format!(
            "Tesseract has no language data for `{lack}` (`ocr_language` in [input]); install it (apt-get install tesseract-ocr-{lack}), or choose one of: {}",
            have.join(", ")
        ));
    }
    Ok(Programs {
        tesseract,
        pdftoppm: on_path("pdftoppm"),
        engine,
    })
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs a program to its end within `PAGE_LIMIT`: its standard output, or why it failed (its
/// exit status; its messages are discarded).
fn run(command: &mut Command) -> Result<Vec<u8>, String> {
    let mut child = command
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + PAGE_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("it took more than {} s", PAGE_LIMIT.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = reader.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("it exited with {status}"))
    }
}

/// Tesseract's TSV as pages: words joined by spaces, lines by line breaks, paragraphs by a blank
/// line; each page's mean word confidence.
fn pages(tsv: &str) -> Vec<Page> {
    let mut pages: Vec<(String, f64, usize)> = Vec::new();
    let mut at = (0, 0, 0, 0);
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 12 || cols[0] != "5" {
            continue;
        }
        let word = cols[11].trim();
        let (Ok(page), Ok(block), Ok(par), Ok(row)) = (
            cols[1].parse::<usize>(),
            cols[2].parse::<usize>(),
            cols[3].parse::<usize>(),
            cols[4].parse::<usize>(),
        ) else {
            continue;
        };
        if word.is_empty() || page == 0 {
            continue;
        }
        while pages.len() < page {
            pages.push((String::new(), 0.0, 0));
            at = (page, 0, 0, 0);
        }
        let (text, sum, n) = &mut pages[page - 1];
        if !text.is_empty() {
            text.push_str(if (block, par) != (at.1, at.2) {
                "\n\n"
            } else if row != at.3 {
                "\n"
            } else {
                " "
            });
        }
        text.push_str(word);
        at = (page, block, par, row);
        if let Ok(conf) = cols[10].parse::<f64>().map(|c| c.max(0.0)) {
            *sum += conf;
            *n += 1;
        }
    }
    pages
        .into_iter()
        .map(|(text, sum, n)| Page {
            text,
            confidence: (n > 0).then(|| (sum / n as f64 * 10.0).round() / 10.0),
        })
        .collect()
}

/// A folder of the OCR's own in the temp folder (the run's private one under confinement),
/// removed when dropped.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        tempfile::Builder::new()
            .prefix("lai-ocr-")
            .tempdir()
            .map(Scratch)
            .map_err(|e| format!("OCR: cannot make a temp folder: {e}"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Words are joined by spaces within a line, lines by a line break, paragraphs by a blank
    // line, pages apart; the confidence is the mean over a page's words.
    #[test]
    fn tsv_becomes_pages() {
        let row = |page, block, par, line, conf: f64, word: &str| {
            format!("5\t{page}\t{block}\t{par}\t{line}\t1\t0\t0\t1\t1\t{conf}\t{word}")
        };
        let tsv = [
            "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext".to_string(),
            "1\t1\t0\t0\t0\t0\t0\t0\t10\t10\t-1\t".to_string(),
            row(1, 1, 1, 1, 90.0, "Dear"),
            row(1, 1, 1, 1, 80.0, "Jane,"),
            row(1, 1, 1, 2, 70.0, "thanks."),
            row(1, 2, 1, 1, 60.0, "Bye"),
            row(2, 1, 1, 1, 50.0, "Two"),
        ]
        .join("\n");
        let pages = pages(&tsv);
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].text, "Dear Jane,\nthanks.\n\nBye");
        assert_eq!(pages[0].confidence, Some(75.0));
        assert_eq!(pages[1].text, "Two");
    }
}
