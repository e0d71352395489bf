//! Documents: the text inside PDF (its text layer, page by page), DOCX, HTML and e-mail (`.eml`,
//! and each message of an `.mbox`) files, for the `files` source. Each reader is a well-kept crate (pdf-extract, zip with
//! quick-xml, mail-parser); what they cannot read is an error that says why in words that never
//! quote the document. An e-mail's attachments come back as documents of their own.

use std::borrow::Cow;
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::LazyLock;

use quick_xml::events::Event;
use regex::Regex;
use serde_json::{Map, Value};

use super::ocr::Ocr;
use crate::pipeline::panics;

/// Extensions of the files read here.
pub const EXTENSIONS: &[&str] = &[
    "pdf", "docx", "html", "htm", "xhtml", "eml", "mbox", "png", "jpg", "jpeg", "tif", "tiff",
    "bmp",
];

/// Extensions of the images read by OCR.
const IMAGES: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "bmp"];

/// The most bytes of XML a DOCX may unpack to (a zip bomb is an error, not an exhausted machine).
const MAX_XML_BYTES: u64 = 256 << 20;

/// The text of one document and what it says of itself.
#[derive(Debug, Default)]
pub struct Document {
    pub text: String,
    pub mime: &'static str,
    pub title: Option<String>,
    /// Where each page starts in `text`, in characters (PDF); empty when the format has no pages.
    pub page_starts: Vec<usize>,
    pub attachments: Vec<Attachment>,
    /// Pages read by OCR, and by what.
    pub ocr: Option<super::ocr::Provenance>,
}

/// A file attached to an e-mail.
#[derive(Debug)]
pub struct Attachment {
    pub name: String,
    pub mime: String,
    pub bytes: Vec<u8>,
}

impl Attachment {
    /// Its name for choosing a reader: the name it was sent with, plus the extension its MIME
    /// type implies when the name has none lai reads (`scan` sent as application/pdf).
    pub fn reader_name(&self) -> String {
        let by_mime = match self.mime.as_str() {
            "application/pdf" => "pdf",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
            "text/html" => "html",
            "message/rfc822" => "eml",
            "text/plain" => "txt",
            "image/png" => "png",
            "image/jpeg" => "jpg",
            "image/tiff" => "tif",
            _ => return self.name.clone(),
        };
        match extension(Path::new(&self.name)) {
            Some(e) if e == by_mime || EXTENSIONS.contains(&e.as_str()) => self.name.clone(),
            _ => format!("{}.{by_mime}", self.name),
        }
    }
}

impl Document {
    /// The item fields: `text`, `mime`, and `title`, `pages` and `page_starts` where the
    /// document has them.
    pub fn fields(&mut self, text_field: &str) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert(
            text_field.into(),
            Value::String(std::mem::take(&mut self.text)),
        );
        fields.insert("mime".into(), self.mime.into());
        if let Some(title) = self.title.take() {
            fields.insert("title".into(), title.into());
        }
        if !self.page_starts.is_empty() {
            fields.insert("pages".into(), self.page_starts.len().into());
            fields.insert("page_starts".into(), self.page_starts.clone().into());
        }
        if let Some(engine) = self.ocr.take() {
            let pages: Vec<Value> = engine
                .pages
                .into_iter()
                .map(|(page, confidence)| serde_json::json!({"page": page, "confidence": confidence}))
                .collect();
            fields.insert(
                "ocr".into(),
                serde_json::json!({"engine": engine.engine, "language": engine.language, "pages": pages}),
            );
        }
        fields
    }
}

fn image_mime(extension: &str) -> &'static str {
    match extension {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "tif" | "tiff" => "image/tiff",
        _ => "image/bmp",
    }
}

impl Document {
    /// The pages (from 1) whose text layer is empty.
    fn pages_without_text(&self) -> Vec<usize> {
        let chars: Vec<char> = self.text.chars().collect();
        (0..self.page_starts.len())
            .filter(|&i| {
                let end = self
                    .page_starts
                    .get(i + 1)
                    .map_or(chars.len(), |e| e.saturating_sub(2));
                chars[self.page_starts[i].min(end)..end]
                    .iter()
                    .all(|c| c.is_whitespace())
            })
            .map(|i| i + 1)
            .collect()
    }

    /// Puts OCR's text in place of the given pages (from 1; pages past the end are added) and
    /// rebuilds the text and page starts.
    fn set_pages(
        &mut self,
        read: impl Iterator<Item = (usize, super::ocr::Page)>,
        ocr: &Ocr,
    ) -> Result<(), String> {
        let chars: Vec<char> = self.text.chars().collect();
        let mut pages: Vec<String> = (0..self.page_starts.len())
            .map(|i| {
                let end = self
                    .page_starts
                    .get(i + 1)
                    .map_or(chars.len(), |e| e.saturating_sub(2));
                chars[self.page_starts[i].min(end)..end].iter().collect()
            })
            .collect();
        let mut confidences = Vec::new();
        for (page, read) in read {
            if pages.len() < page {
                pages.resize(page, String::new());
            }
            pages[page - 1] = read.text;
            confidences.push((page, read.confidence));
        }
        self.text.clear();
        self.page_starts.clear();
        let mut at = 0;
        for page in pages {
            if !self.text.is_empty() {
                self.text.push_str("\n\n");
                at += 2;
            }
            self.page_starts.push(at);
            at += page.chars().count();
            self.text.push_str(&page);
        }
        self.ocr = Some(ocr.provenance(confidences)?);
        Ok(())
    }
}

/// Decodes a text file, or says clearly why it is not one.
pub fn decode_text(bytes: &[u8]) -> Result<&str, String> {
    if bytes.is_empty() {
        return Err("file is empty (0 bytes); there is no text to process".into());
    }
    let head = &bytes[..bytes.len().min(8192)];
    if let Some(at) = head.iter().position(|&b| b == 0) {
        return Err(format!(
            "looks like a binary file, not text (NUL byte at offset {at}); exclude it with `exclude` in [input]"
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 text (invalid byte at offset {}); convert it first, e.g. `iconv -f latin1 -t utf-8`",
            e.valid_up_to()
        )
    })
}

/// Whether `path` is a document read here (by extension).
pub fn is_document(path: &Path) -> bool {
    extension(path).is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
}

/// Whether `path` may hold more than one item: an e-mail (its attachments), a mailbox.
pub fn holds_attachments(path: &Path) -> bool {
    matches!(extension(path).as_deref(), Some("eml" | "mbox"))
}

/// Whether `path` is an mbox mailbox (many e-mails, each read as `.eml`).
pub fn is_mailbox(path: &Path) -> bool {
    extension(path).as_deref() == Some("mbox")
}

fn extension(path: &Path) -> Option<String> {
    Some(path.extension()?.to_str()?.to_ascii_lowercase())
}

/// Reads the document `name` (its extension says the format) from its bytes; scanned pages and
/// images through `ocr` (none: OCR is off).
pub fn read(name: &Path, bytes: &[u8], ocr: Option<&Ocr>) -> Result<Document, String> {
    let extension = extension(name).unwrap_or_default();
    // A reader that panics on a malformed file fails that file alone (the message, which may
    // quote the file, is dropped).
    let read = panics::guard(|| match extension.as_str() {
        "pdf" => pdf(bytes),
        "docx" => docx(bytes),
        "html" | "htm" | "xhtml" => html(bytes),
        "eml" => eml(bytes),
        e if IMAGES.contains(&e) => Ok(Document {
            mime: image_mime(e),
            ..Document::default()
        }),
        other => Err(format!("`.{other}` is not a document format lai reads")),
    });
    let mut document = read.map_err(|_| {
        format!("the .{extension} file could not be read (its content is malformed)")
    })??;
    if IMAGES.contains(&extension.as_str()) {
        let ocr = ocr.ok_or("an image, and OCR is off (`ocr = \"off\"` in [input])")?;
        let pages = ocr.image(bytes, &extension)?;
        document.set_pages(pages.into_iter().enumerate().map(|(i, p)| (i + 1, p)), ocr)?;
    } else if document.mime == "application/pdf" {
        let scanned: Vec<usize> = document.pages_without_text();
        if let (false, Some(ocr)) = (scanned.is_empty(), ocr) {
            // A PDF with text beside a page OCR cannot read keeps its text rather than fail.
            match ocr.pdf_pages(bytes, &scanned) {
                Ok(pages) => document.set_pages(scanned.into_iter().zip(pages), ocr)?,
                Err(why) if document.text.trim().is_empty() => return Err(why),
                Err(_) => {}
            }
        }
    }
    if document.text.trim().is_empty() && document.attachments.is_empty() {
        let pages = document.page_starts.len();
        let s = if pages == 1 { "" } else { "s" };
        return Err(match (document.mime, ocr, &document.ocr) {
            ("application/pdf", None, _) => format!(
                "the PDF has no text layer ({pages} page{s}; scanned images?) and OCR is off (`ocr` in [input]); turn it on, or run the file through OCR first"
            ),
            (_, _, Some(_)) => format!(
                "OCR found no text on its {pages} page{s}: a blank scan, or a language other than `ocr_language`"
            ),
            _ => "the document holds no text".into(),
        });
    }
    Ok(document)
}

fn pdf(bytes: &[u8]) -> Result<Document, String> {
    // The reader's messages may quote the document (a name, a string, bytes of a stream):
    // only what kind of problem it is is said.
    let pages = pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| {
        let e = e.to_string().to_ascii_lowercase();
        if e.contains("decrypt") || e.contains("encrypt") {
            "the PDF is encrypted with a password; decrypt it first (e.g. `qpdf --decrypt`)"
        } else {
            "not a readable PDF: its structure is damaged, or uses something lai's PDF reader does not read; check that it opens in a PDF viewer, or rewrite it (e.g. `qpdf in.pdf out.pdf`)"
        }
        .to_string()
    })?;
    let mut text = String::new();
    let mut page_starts = Vec::with_capacity(pages.len());
    let mut chars = 0;
    for page in pages {
        if !text.is_empty() {
            text.push_str("\n\n");
            chars += 2;
        }
        page_starts.push(chars);
        let page = page.trim();
        chars += page.chars().count();
        text.push_str(page);
    }
    Ok(Document {
        text,
        mime: "application/pdf",
        page_starts,
        ..Document::default()
    })
}

fn docx(bytes: &[u8]) -> Result<Document, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable DOCX (a DOCX is a zip archive): {e}"))?;
    let mut part = |name: &str| -> Result<Option<String>, String> {
        let file = match zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(format!("not a readable DOCX: {name}: {e}")),
        };
        let mut xml = String::new();
        file.take(MAX_XML_BYTES)
            .read_to_string(&mut xml)
            .map_err(|e| format!("not a readable DOCX: {name}: {e}"))?;
        Ok(Some(xml))
    };
    let body = part("word/document.xml")?
        .ok_or("not a DOCX: the archive has no word/document.xml (a .doc renamed, or another Office file?)")?;
    let text =
        docx_text(&body).map_err(|_| {
            // quick-xml quotes tag names, which a hostile file can fill with its text.
            "not a readable DOCX: word/document.xml is not well-formed XML; open and save it again in Word or LibreOffice".to_string()
        })?;
    let title = part("docProps/core.xml")?
        .and_then(|core| xml_element_text(&core, "dc:title"))
        .filter(|t| !t.trim().is_empty());
    Ok(Document {
        text,
        mime: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        title,
        ..Document::default()
    })
}

/// The text of WordprocessingML: runs' text (`w:t`), tabs and breaks, a line per paragraph.
fn docx_text(xml: &str) -> Result<String, quick_xml::Error> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut text = String::new();
    let mut in_text = false;
    loop {
        match reader.read_event()? {
            Event::Start(e) if e.name().as_ref() == "w:t" => in_text = true,
            Event::End(e) => match e.name().as_ref() {
                "w:t" => in_text = false,
                "w:p" => text.push('\n'),
                _ => {}
            },
            Event::Empty(e) => match e.name().as_ref() {
                "w:tab" => text.push('\t'),
                "w:br" | "w:cr" => text.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_text => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => text.push_str(&entity(&r)),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(text.trim_end().to_string())
}

fn entity(r: &quick_xml::events::BytesRef) -> Cow<'static, str> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return Cow::Owned(c.to_string());
    }
    Cow::Borrowed(match r.clone().into_inner().as_ref() {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        _ => "",
    })
}

/// The text of the first element named `name` in `xml`.
fn xml_element_text(xml: &str, name: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    let mut text = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.name().as_ref() == name => inside = true,
            Event::End(e) if e.name().as_ref() == name => return Some(text),
            Event::Text(t) if inside => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if inside => text.push_str(&entity(&r)),
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// Block elements that end a line of text, besides the `<br>` and `</p>` that mail-parser's
/// converter already breaks on.
static BLOCK_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)</(h[1-6]|div|li|tr|td|th|dd|dt|section|article|header|footer|table|ul|ol|blockquote|pre)\s*>")
        .expect("the block pattern is valid")
});

fn html(bytes: &[u8]) -> Result<Document, String> {
    let source = decode_text(bytes)?;
    let broken = BLOCK_END.replace_all(source, "$0<br>");
    Ok(Document {
        text: tidy(&mail_parser::decoders::html::html_to_text(&broken)),
        mime: "text/html",
        title: html_title(source),
        ..Document::default()
    })
}

/// The `<title>` of an HTML page, its entities decoded.
fn html_title(source: &str) -> Option<String> {
    let lower = source.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let title = mail_parser::decoders::html::html_to_text(&source[start..end]);
    Some(title.trim().to_string()).filter(|t| !t.is_empty())
}

/// Lines trimmed, runs of blank lines made one.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

fn eml(bytes: &[u8]) -> Result<Document, String> {
    let message = mail_parser::MessageParser::default()
        .parse(bytes)
        .filter(|m| !m.headers().is_empty())
        .ok_or("not a readable e-mail: no message headers")?;
    let addresses = |a: Option<&mail_parser::Address>| {
        a.map(|a| {
            a.iter()
                .map(|addr| match (addr.name(), addr.address()) {
                    (Some(n), Some(e)) => format!("{n} <{e}>"),
                    (None, Some(e)) => e.to_string(),
                    (Some(n), None) => n.to_string(),
                    (None, None) => String::new(),
                })
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
    };
    // The headers open the text, so that `redact` covers them like the body.
    let mut text = String::new();
    for (key, value) in [
        ("From", addresses(message.from())),
        ("To", addresses(message.to())),
        ("Cc", addresses(message.cc())),
        ("Date", message.date().map(|d| d.to_rfc3339())),
        ("Subject", message.subject().map(str::to_string)),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("{key}: {}\n", value.replace(['\r', '\n'], " ")));
        }
    }
    // Every text part of the body (a body split around inline images has several); mail-parser
    // gives an HTML-only part as text.
    let body = (0..)
        .map_while(|n| message.body_text(n))
        .collect::<Vec<_>>()
        .join("\n\n");
    let attachments = message
        .attachments()
        // Pictures shown inside the body (an Outlook signature's image001.png) are not
        // attachments anyone sent.
        .filter(|part| {
            use mail_parser::MimeHeaders;
            !(part.content_id().is_some()
                && part.content_type().is_some_and(|t| t.ctype() == "image"))
        })
        .map(|part| {
            use mail_parser::MimeHeaders;
            let mime = part.content_type().map_or_else(
                || "application/octet-stream".to_string(),
                |t| match t.subtype() {
                    Some(sub) => format!("{}/{sub}", t.ctype()),
                    None => t.ctype().to_string(),
                },
            );
            Attachment {
                name: part.attachment_name().unwrap_or("attachment").to_string(),
                mime,
                bytes: part.contents().to_vec(),
            }
        })
        .collect();
    text.push('\n');
    text.push_str(&tidy(&body));
    Ok(Document {
        text,
        mime: "message/rfc822",
        title: message.subject().map(str::to_string),
        attachments,
        ..Document::default()
    })
}
