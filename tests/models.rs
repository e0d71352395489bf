//! `lai models`: pulling from a loopback HTTP server the test starts itself (resume, wrong
//! hash, atomic rename), and verification of truncated or altered files.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use predicates::prelude::*;
use sha2::{Digest, Sha256};

/// A tiny HTTP/1.1 server: serves `body` at any path, honours `Range: bytes=N-`, and cuts the
/// first full-body response off halfway when `cut_first` is set. Records the Range headers.
struct Server {
    url: String,
    ranges: Arc<Mutex<Vec<String>>>,
}

fn serve(body: Vec<u8>, cut_first: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ranges);
    std::thread::spawn(move || {
        let mut first = cut_first;
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut offset = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    seen.lock().unwrap().push(v.trim().to_string());
                    offset = v.trim().trim_end_matches('-').parse().unwrap();
                }
            }
            let rest = &body[offset..];
            let head = if offset > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {offset}-{}/{}\r\nConnection: close\r\n\r\n",
                    rest.len(),
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    rest.len()
                )
            };
            stream.write_all(head.as_bytes()).unwrap();
            let send = if first { &rest[..rest.len() / 2] } else { rest };
            first = false;
            let _ = stream.write_all(send);
            let _ = stream.flush();
        }
    });
    Server { url, ranges }
}

/// A catalog with one model `tiny` whose single file is pinned to `content`.
fn catalog(dir: &Path, content: &[u8], url: &str) -> std::path::PathBuf {
    let path = dir.join("catalog.toml");
    std::fs::write(
        &path,
        format!(
            "[[model]]\nname = \"tiny\"\nengine = \"onnx\"\ndescription = \"test weights\"\nlicense = \"MIT\"\n\n\
             [[model.file]]\nrole = \"model\"\npath = \"tiny/w.bin\"\nsize = {}\nsha256 = \"{}\"\nurl = \"{url}/w.bin\"\n",
            content.len(),
            hex::encode(Sha256::digest(content))
        ),
    )
    .unwrap();
    path
}

fn lai(catalog: &Path, models: &Path) -> Command {
    let mut cmd = Command::cargo_bin("lai").unwrap();
    cmd.arg("--catalog")
        .arg(catalog)
        .arg("--models-dir")
        .arg(models);
    cmd
}

fn weights() -> Vec<u8> {
    (0..3_000_000u64).map(|i| (i * 7919 % 251) as u8).collect()
}

// An interrupted transfer leaves only a .partial file; the next pull resumes with a Range request.
#[test]
fn pull_resumes_after_interruption() {
    let dir = tempfile::tempdir().unwrap();
    let content = weights();
    let server = serve(content.clone(), true);
    let cat = catalog(dir.path(), &content, &server.url);
    let models = dir.path().join("models");
    let target = models.join("tiny/w.bin");

    lai(&cat, &models)
        .args(["models", "pull", "tiny"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "run the same command again to resume",
        ));
    assert!(!target.exists(), "no half file under the final name");
    let partial = models.join("tiny/w.bin.partial");
    let had = std::fs::metadata(&partial).unwrap().len();
    assert!(had > 0 && had < content.len() as u64);

    lai(&cat, &models)
        .args(["models", "pull", "tiny"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("pulled"));
    assert_eq!(std::fs::read(&target).unwrap(), content);
    assert!(!partial.exists());
    assert_eq!(
        server.ranges.lock().unwrap().as_slice(),
        [format!("{had}-")]
    );

    lai(&cat, &models)
        .args(["models", "verify"])
        .assert()
        .code(0);
    // A second pull finds the file intact and downloads nothing.
    lai(&cat, &models)
        .args(["models", "pull"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("present"));
}

// A source serving other bytes is rejected: nothing is left under either name.
#[test]
fn pull_rejects_wrong_hash() {
    let dir = tempfile::tempdir().unwrap();
    let content = weights();
    let mut other = content.clone();
    other[1000] ^= 0xff;
    let server = serve(other, false);
    let cat = catalog(dir.path(), &content, &server.url);
    let models = dir.path().join("models");
    lai(&cat, &models)
        .args(["models", "pull", "tiny"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("sha256").and(predicate::str::contains("not used")));
    assert!(!models.join("tiny/w.bin").exists());
    assert!(!models.join("tiny/w.bin.partial").exists());
}

// --mirror fetches `<mirror>/<path>`; a model with no source says how to get it.
#[test]
fn pull_from_mirror_and_without_source() {
    let dir = tempfile::tempdir().unwrap();
    let content = weights();
    let server = serve(content.clone(), false);
    let cat = catalog(dir.path(), &content, "http://127.0.0.1:9/unreachable");
    let models = dir.path().join("models");
    lai(&cat, &models)
        .args(["models", "pull", "--mirror", &server.url])
        .assert()
        .code(0);
    assert_eq!(std::fs::read(models.join("tiny/w.bin")).unwrap(), content);
    lai(&cat, &models)
        .args(["models", "pull", "nosuch"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no model named `nosuch`"));
}

// Truncated and byte-flipped files are reported as corrupt with both hashes; exit 1.
#[test]
fn verify_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let content = weights();
    let cat = catalog(dir.path(), &content, "http://127.0.0.1:9");
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("tiny")).unwrap();
    let target = models.join("tiny/w.bin");
    lai(&cat, &models)
        .args(["models", "list"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("missing"));
    std::fs::write(&target, &content[..1000]).unwrap();
    lai(&cat, &models)
        .args(["models", "verify", "tiny"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("1000 bytes, expected 3000000"));
    let mut flipped = content.clone();
    flipped[5] ^= 1;
    std::fs::write(&target, &flipped).unwrap();
    lai(&cat, &models)
        .args(["models", "verify", "tiny"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("corrupt (wrong sha256)").and(predicate::str::contains(
                hex::encode(Sha256::digest(&content)),
            )),
        );
}
