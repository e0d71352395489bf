//! The `llm` stage against a real OpenAI-compatible server: llama.cpp's own llama-server
//! (built by `scripts/llama-tools.sh`, which `scripts/test.sh` runs first) serving the
//! catalog's SmolLM2 on loopback. Labels, provenance and confinement to the server's port;
//! the egress check; a server that dies mid-run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{engines, jsonl, lai, lai_run, repo};

/// llama-server, where `scripts/llama-tools.sh` put it (or `$LAI_LLAMA_SERVER`).
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LAI_LLAMA_SERVER") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let path = cache.join("lai/llama-tools/llama_cpp_python-0.3.36-build/bin/llama-server");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/llama-tools.sh llama-server (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The catalog's SmolLM2 GGUF, in the models directory `lai models list` names.
fn smollm2() -> PathBuf {
    let out = lai().args(["models", "list"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("models directory: "))
        .and_then(|l| l.split(" (catalog").next())
        .expect("`lai models list` names the models directory");
    Path::new(dir).join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A llama-server on a free loopback port, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Server::start_on(port)
    }

    fn start_on(port: u16) -> Server {
        let child = Command::new(server_binary())
            .arg("-m")
            .arg(smollm2())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", "4096", "-np", "4", "-t", "1", "--no-webui"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, port };
        let started = Instant::now();
        while !server.healthy() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "llama-server did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn healthy(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        ureq::get(&url).call().is_ok_and(|r| r.status() == 200)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pipeline labelling tickets on the server at `url`: redacted first unless `redact` is
/// false, with `extra` lines in the llm table.
fn pipeline(dir: &Path, url: &str, redact: bool, extra: &str) -> PathBuf {
    let path = dir.join("remote.toml");
    let redact = if redact {
        "[[stage]]\nuse = \"redact\"\n\n"
    } else {
        ""
    };
    std::fs::write(
        &path,
        format!(
            "[input]\nkind = \"jsonl\"\n\n{redact}[[stage]]\nuse = \"llm\"\nendpoint = \"{url}\"\nserved_model = \"smollm2\"\n\
             task = \"classify\"\nchoices = [\"access\", \"billing\", \"hardware\"]\nretries = 1\nrequest_timeout = \"60s\"\n{extra}\n\n\
             [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/labels.jsonl\"\n"
        ),
    )
    .unwrap();
    path
}

/// Runs `pipeline` on the sample tickets into `dir/out`, quietly and without a problem; the
/// labelled records and the run report.
fn label_tickets(pipeline: &Path, dir: &Path) -> (Vec<Value>, Value) {
    let out = dir.join("out");
    let report = dir.join("report.json");
    let args = ["-q", "--report", report.to_str().unwrap()];
    lai_run(pipeline, &repo("samples/tickets.jsonl"), &out, &args)
        .code(0)
        .stderr("");
    let text = std::fs::read_to_string(&report).unwrap();
    (
        jsonl(&out.join("labels.jsonl")),
        serde_json::from_str(&text).unwrap(),
    )
}

// Redacted tickets go to the server and come back labelled with one of the choices, each
// record naming the endpoint and the model the server ran. The run may reach the server's port
// and nothing else: the report says so, and the probe to another loopback port was refused.
#[test]
fn labels_from_a_real_server_under_confinement() {
    let _engines = engines();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), &server.url(), true, "");
    let (records, report) = label_tickets(&pipeline, dir.path());
    assert_eq!(records.len(), 5);
    for record in &records {
        let label = record["label"].as_str().unwrap();
        assert!(
            ["access", "billing", "hardware"].contains(&label),
            "{label}"
        );
        let meta = &record["llm"]["label"];
        assert_eq!(meta["endpoint"], server.url());
        assert!(
            meta["served_model"].as_str().is_some_and(|m| !m.is_empty()),
            "{meta}"
        );
        assert!(meta["prompt_tokens"].as_u64().unwrap() > 0, "{meta}");
        // Redacted before it left: no e-mail address reached the server.
        assert!(!record["text"].as_str().unwrap().contains("@example"));
    }
    let confinement = &report["confinement"];
    if confinement["landlock_abi"].as_i64().unwrap_or(0) >= 4 {
        assert_eq!(
            confinement["network"],
            format!("TCP to ports [{}] only", server.port),
            "{confinement:#}"
        );
        let probes = confinement["probes"].as_array().unwrap();
        assert!(
            probes
                .iter()
                .all(|p| p.as_str().unwrap().ends_with(": denied")),
            "{probes:?}"
        );
    }
    assert_eq!(
        confinement["egress"][0],
        format!("llm sends `text` to {}: redacted before", server.url())
    );
}

// Routing: long tickets go to the server, the others to the local model; the report counts
// each route (items taken, items passed by) and each record's provenance names its route.
#[test]
fn long_items_to_the_server_the_rest_local() {
    let _engines = engines();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("route.toml");
    let choices = "task = \"classify\"\nchoices = [\"access\", \"billing\", \"hardware\"]";
    std::fs::write(
        &pipeline,
        format!(
            "[input]\nkind = \"jsonl\"\n\n[[stage]]\nuse = \"redact\"\n\n\
             [[stage]]\nuse = \"llm\"\nendpoint = \"{}\"\nserved_model = \"smollm2\"\n{choices}\n\
             when = {{ field = \"text\", longer_than = 50 }}\n\n\
             [[stage]]\nuse = \"llm\"\n{choices}\nwhen = {{ field = \"label\", missing = true }}\n\n\
             [[output]]\nkind = \"jsonl\"\npath = \"{{out}}/labels.jsonl\"\n",
            server.url()
        ),
    )
    .unwrap();
    let (records, report) = label_tickets(&pipeline, dir.path());
    let long = |r: &Value| r["text"].as_str().unwrap().chars().count() > 50;
    let remote = records.iter().filter(|r| long(r)).count();
    assert!(
        remote > 0 && remote < records.len(),
        "{remote} of {}",
        records.len()
    );
    for record in &records {
        let meta = &record["llm"]["label"];
        assert!(record["label"].is_string(), "{record}");
        if long(record) {
            assert_eq!(meta["endpoint"], server.url(), "{record}");
        } else {
            assert!(meta.get("endpoint").is_none(), "{record}");
            assert_eq!(meta["model"], "smollm2-135m-instruct", "{record}");
        }
    }
    let stages = &report["stages"];
    assert_eq!(stages[1]["stage"], "llm");
    assert_eq!(stages[1]["items"], remote);
    assert_eq!(stages[1]["passed_by"], records.len() - remote);
    assert_eq!(stages[2]["stage"], "llm#2");
    assert_eq!(stages[2]["items"], records.len() - remote);
    assert_eq!(stages[2]["passed_by"], remote);
}

// A server that points lai elsewhere (an HTTP redirect to another address) is not followed:
// each item fails alone, saying so and naming the endpoint, and nothing reaches the other
// address. The redirecting server is Python's own http.server.
#[test]
fn a_redirect_elsewhere_is_not_followed() {
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let there = elsewhere.local_addr().unwrap().port();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "import http.server\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_POST(self):\n\
         \x20       self.send_response(307)\n\
         \x20       self.send_header('Location', 'http://127.0.0.1:{there}/v1/chat/completions')\n\
         \x20       self.send_header('Content-Length', '0')\n\
         \x20       self.end_headers()\n\
         \x20   def log_message(self, *args):\n\
         \x20       pass\n\
         http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    let mut redirector = Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the redirecting server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1");
    let pipeline = pipeline(dir.path(), &url, true, "");
    let out = dir.path().join("out");
    let run = lai_run(&pipeline, &repo("samples/tickets.jsonl"), &out, &["-q"]).code(1);
    let _ = redirector.kill();
    let _ = redirector.wait();
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    let failed = jsonl(&out.join("errors.jsonl"));
    assert_eq!(failed.len(), 5, "{stderr}");
    for f in &failed {
        let reason = f["error"].as_str().unwrap();
        assert!(reason.contains(&url), "{reason}");
        assert!(
            reason.contains("redirected elsewhere") || reason.contains("HTTP 307"),
            "{reason}"
        );
    }
    assert!(
        elsewhere.accept().is_err(),
        "lai connected to where the server pointed it"
    );
}

// A stage that would send text no redact stage covers is refused by `lai check`, naming the
// field and the way out; with `allow_unredacted` the pipeline is valid and every run records
// the reason. Options of a server without `endpoint`, or an endpoint with credentials in it,
// are errors too. Nothing here reaches a server.
#[test]
fn egress_needs_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:9/v1";
    let bare = pipeline(dir.path(), url, false, "");
    let refused = lai().arg("check").arg(&bare).assert().code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(
        stderr.contains("sends `text` to http://127.0.0.1:9/v1, off this machine, and no redact stage before it covers `text`"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_unredacted"), "{stderr}");
    let allowed = pipeline(
        dir.path(),
        url,
        false,
        "allow_unredacted = \"synthetic test data\"",
    );
    lai().arg("check").arg(&allowed).assert().code(0);
    lai()
        .arg("check")
        .arg(pipeline(dir.path(), url, true, ""))
        .assert()
        .code(0);

    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        "[input]\nkind = \"jsonl\"\n[[stage]]\nuse = \"llm\"\ntask = \"summarize\"\nserved_model = \"x\"\n\
         [[stage]]\nuse = \"llm\"\ntask = \"summarize\"\nendpoint = \"http://u:p@box/v1\"\nserved_model = \"x\"\nallow_unredacted = \"test\"\n\
         [[output]]\nkind = \"jsonl\"\n",
    )
    .unwrap();
    let wrong = lai().arg("check").arg(&wrong).assert().code(2);
    let stderr = String::from_utf8_lossy(&wrong.get_output().stderr).to_string();
    assert!(
        stderr.contains("`served_model` in [[stage]] 1 (llm) goes with `endpoint`"),
        "{stderr}"
    );
    assert!(stderr.contains("has credentials in it"), "{stderr}");
}

// The server dies in the middle of a run: the items it had not answered fail alone (after
// their retry), naming the endpoint and never the text; none is lost. With the server back,
// --retry-failed finishes them.
#[test]
fn a_server_that_dies_mid_run() {
    let _engines = engines();
    let mut server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(
        dir.path(),
        &server.url(),
        true,
        "batch_size = 2\nparallel = 1\nworkers = 1",
    );
    let input = dir.path().join("tickets.jsonl");
    let lines: Vec<String> = (0..120)
        .map(|i| format!("{{\"id\":\"t{i:02}\",\"text\":\"CANARY-{i} printer on floor {i} is jammed again\"}}"))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let mut run = assert_cmd::cargo::cargo_bin("lai");
    let run = Command::new(std::mem::take(&mut run))
        .args(["run", "--progress", "never"])
        .arg(&pipeline)
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once a few items are through.
    let started = Instant::now();
    while ledger_done(&out) < 4 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("CANARY"), "{stderr}");
    let done = jsonl(&out.join("labels.jsonl")).len();
    let failed = jsonl(&out.join("errors.jsonl"));
    assert!(
        done >= 4 && !failed.is_empty(),
        "{done} done, {} failed",
        failed.len()
    );
    assert_eq!(done + failed.len(), 120);
    let reason = failed[0]["error"].as_str().unwrap();
    assert!(reason.contains(&server.url()), "{reason}");
    assert!(!reason.contains("CANARY"), "{reason}");

    let _back = Server::start_on(server.port);
    lai_run(&pipeline, &input, &out, &["-q", "--retry-failed"]).code(0);
    assert_eq!(jsonl(&out.join("labels.jsonl")).len(), 120);
}

/// Items the ledger in `out` has recorded done so far.
fn ledger_done(out: &Path) -> u64 {
    let Ok(db) = rusqlite::Connection::open_with_flags(
        out.join("lai-ledger.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return 0;
    };
    db.query_row(
        "SELECT count(*) FROM items WHERE status = 'done'",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}
