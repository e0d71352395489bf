//! `lai models pull`: downloads model files over HTTP(S) into the models directory.
//!
//! A download goes to `<file>.partial`; an interrupted one resumes from where it stopped (HTTP
//! Range), the finished file must match the catalog's size and sha256, and only then is it
//! renamed to its final name. A file under its final name is therefore always complete and
//! verified; a wrong download is deleted, never used.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{FileEntry, sha256_file};

/// Where to download a file from: `<mirror>/<path>` when a mirror is given, else its `url`.
pub fn source_url(file: &FileEntry, mirror: Option<&str>) -> Option<String> {
    match mirror {
        Some(m) => Some(format!("{}/{}", m.trim_end_matches('/'), file.path)),
        None => file.url.clone(),
    }
}

/// Downloads `url` to `dest`, resuming a partial download; checks size and sha256 first.
/// `on_progress` gets (bytes so far, total).
pub fn pull_file(
    url: &str,
    dest: &Path,
    file: &FileEntry,
    on_progress: &dyn Fn(u64, u64),
) -> anyhow::Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create folder {}", parent.display()))?;
    }
    let partial = partial_path(dest);
    let mut have = std::fs::metadata(&partial).map_or(0, |m| m.len());
    if have > file.size {
        std::fs::remove_file(&partial).ok();
        have = 0;
    }
    if have < file.size {
        download(url, &partial, have, file.size, on_progress)?;
    }
    let size = std::fs::metadata(&partial).map_or(0, |m| m.len());
    if size != file.size {
        bail!(
            "download from {url} ended at {size} of {} bytes; run the same command again to resume",
            file.size
        );
    }
    if !file.sha256.is_empty() {
        let actual = sha256_file(&partial)?;
        if actual != file.sha256 {
            std::fs::remove_file(&partial).ok();
            bail!(
                "{url} served a file with sha256 {actual}, expected {}; it was deleted, not used \
                 (check the source or the mirror)",
                file.sha256
            );
        }
    }
    std::fs::rename(&partial, dest)
        .with_context(|| format!("cannot move the download into place at {}", dest.display()))
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn download(
    url: &str,
    partial: &Path,
    offset: u64,
    total: u64,
    on_progress: &dyn Fn(u64, u64),
) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", &format!("bytes={offset}-"));
    }
    let mut response = request
        .call()
        .with_context(|| format!("cannot download {url}"))?;
    let status = response.status().as_u16();
    let resume = match status {
        206 => true,
        200 => false,
        // Our partial file does not fit the server's file: start over, once. A server that
        // answers 416 to a request without a range is broken; say so instead of asking again.
        416 if offset > 0 => {
            std::fs::remove_file(partial).ok();
            return download(url, partial, 0, total, on_progress);
        }
        _ => bail!("cannot download {url}: the server answered HTTP {status}"),
    };
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resume)
        .truncate(!resume)
        .open(partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut done = if resume { offset } else { 0 };
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                out.flush().ok();
                bail!(
                    "download of {url} was interrupted after {done} of {total} bytes ({e}); run the \
                     same command again to resume"
                );
            }
        };
        if done + n as u64 > total {
            std::fs::remove_file(partial).ok();
            bail!("{url} sent more than the expected {total} bytes; the download was discarded");
        }
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", partial.display()))?;
        done += n as u64;
        on_progress(done, total);
    }
    out.sync_all()
        .with_context(|| format!("cannot write {}", partial.display()))?;
    Ok(())
}
