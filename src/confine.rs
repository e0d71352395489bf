//! Confinement: once a run has started up, the kernel holds it to what it declared. It may read
//! only its inputs, models, libraries and system files, write only its output folders and the
//! temp folder, and open no network socket except TCP to the ports its pipeline's endpoints use.
//!
//! Files and TCP ports are Landlock rules; socket families and types (UDP, raw, netlink, unix
//! sockets, io_uring) are a seccomp filter, which Landlock does not cover. Landlock binds the
//! calling thread and the threads it starts later, so `apply` runs on the main thread before the
//! run starts any; the seccomp filter binds every thread. After enforcing, two probes try what
//! a hostile stage would (create a file outside the write folders, connect to a port no
//! endpoint uses) and the record says what happened, so every confined run proves its rules.
//!
//! This module knows paths and ports, nothing of pipelines.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use landlock::{
    ABI, Access, AccessFs, AccessNet, LandlockStatus, NetPort, PathBeneath, PathFd,
    RestrictSelfAttr, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use serde::Serialize;

/// How strictly a run is confined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything the kernel offers; a warning for what it does not.
    Auto,
    /// The run stops unless files and network are both enforced and the probes are refused.
    Required,
    /// Nothing enforced (`--no-confine`); recorded as such.
    Off,
}

/// What a run may touch after start-up.
#[derive(Debug, Default)]
pub struct Policy {
    /// Files and folders read (and libraries mapped from them).
    pub read: Vec<PathBuf>,
    /// Folders (or files) written: created, replaced, removed.
    pub write: Vec<PathBuf>,
    /// Folders where the run may only remove an empty folder (the one its temp folder is in).
    pub remove_dirs: Vec<PathBuf>,
    /// TCP ports the run may connect to (its endpoints'); none means no sockets at all.
    pub connect: Vec<u16>,
    /// What leaves the machine, in words (endpoint, fields, redacted or why not), for the record.
    pub egress: Vec<String>,
    /// Folders the write probe tries, first one outside every write folder wins: where a
    /// hostile stage would do harm (the inputs, the pipeline's folder).
    pub probe_in: Vec<PathBuf>,
}

/// What was enforced, for the run report and the ledger.
#[derive(Clone, Debug, Serialize)]
pub struct Confinement {
    /// "auto", "required" or "off (--no-confine)".
    pub mode: String,
    /// The kernel's Landlock ABI, when it has Landlock.
    pub landlock_abi: Option<i32>,
    /// "enforced", "partly enforced (kernel Landlock ABI N)" or "not enforced".
    pub files: String,
    /// What the network may do: "no sockets", "TCP to ports [..] only", or "not enforced".
    pub network: String,
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub connect_ports: Vec<u16>,
    /// What leaves the machine: each endpoint, the fields sent there, and whether a redact
    /// stage covered them or why they go unredacted.
    pub egress: Vec<String>,
    /// What the probes tried after enforcing, and what the kernel answered.
    pub probes: Vec<String>,
    /// What the kernel could not enforce.
    pub warnings: Vec<String>,
}

impl Confinement {
    fn off() -> Confinement {
        Confinement {
            mode: "off (--no-confine)".into(),
            landlock_abi: None,
            files: "not enforced".into(),
            network: "not enforced".into(),
            read: Vec::new(),
            write: Vec::new(),
            connect_ports: Vec::new(),
            egress: Vec::new(),
            probes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// One line for the summary on stderr.
    pub fn summary(&self) -> String {
        if self.mode.starts_with("off") {
            return "confinement off (--no-confine)".into();
        }
        format!("confined: files {}, network {}", self.files, self.network)
    }
}

/// The newest Landlock ABI lai asks for; older kernels get what they have (best effort).
const ABI_WANTED: ABI = ABI::V6;

/// Enforces `policy` on this process (see the module header), probes it, and says what holds.
///
/// # Errors
/// In `Mode::Required`, when files or network are not both enforced, when threads started
/// before this call escape it, or when a probe gets through; in every mode, when a rule cannot
/// be built at all.
pub fn apply(policy: &Policy, mode: Mode) -> anyhow::Result<Confinement> {
    if mode == Mode::Off {
        return Ok(Confinement {
            egress: policy.egress.clone(),
            ..Confinement::off()
        });
    }
    let mut record = Confinement {
        mode: if mode == Mode::Required {
            "required"
        } else {
            "auto"
        }
        .into(),
        egress: policy.egress.clone(),
        ..Confinement::off()
    };
    let threads = thread_count();
    // Chosen before enforcing: a folder that ordinary permissions let this process write, so
    // that a refusal afterwards is the confinement's.
    let probe_dir = policy
        .probe_in
        .iter()
        .find(|dir| !policy.write.iter().any(|w| dir.starts_with(w)) && writable(dir))
        .cloned();
    let status = landlock(policy, threads > 1, &mut record)?;
    if threads > 1 && !status.all_threads {
        record.warnings.push(format!(
            "{} threads started before confinement are not held to the file rules",
            threads - 1
        ));
    }
    let sockets = match seccomp(&policy.connect) {
        Ok(()) => true,
        Err(e) => {
            record
                .warnings
                .push(format!("socket filter (seccomp) not installed: {e:#}"));
            false
        }
    };
    let files_enforced = matches!(
        status.ruleset,
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced
    );
    let ports_enforced = record.landlock_abi.is_some_and(|abi| abi >= 4) && files_enforced;
    record.network = match (sockets, policy.connect.is_empty(), ports_enforced) {
        (true, true, _) => "no sockets".into(),
        (true, false, true) => format!("TCP to ports {:?} only", policy.connect),
        (true, false, false) => {
            record.warnings.push(
                "the kernel's Landlock cannot limit TCP ports (ABI 4, Linux 6.7, needed): any TCP port may be reached".into(),
            );
            "TCP only (any port)".into()
        }
        (false, _, true) if policy.connect.is_empty() => {
            "no TCP (other sockets not enforced)".into()
        }
        (false, _, true) => format!(
            "TCP to ports {:?} (other sockets not enforced)",
            policy.connect
        ),
        (false, _, false) => "not enforced".into(),
    };
    let held = probe(policy, probe_dir.filter(|_| files_enforced), &mut record);
    if mode == Mode::Required {
        let mut missing = record.warnings.clone();
        if !files_enforced {
            missing.push("file rules not enforced".into());
        }
        if record.network == "not enforced" {
            missing.push("network not enforced".into());
        }
        if !held {
            missing.push("a probe got through".into());
        }
        if !missing.is_empty() {
            bail!(
                "the pipeline requires confinement (`confine = \"required\"`), and this kernel does not give it: {}; run on Linux 6.7 or later with Landlock enabled (lsm=landlock), or set `confine = \"auto\"`",
                missing.join("; ")
            );
        }
    }
    Ok(record)
}

/// The Landlock part: file rules, TCP port rules and scopes, enforced on this thread and the
/// threads it starts later.
fn landlock(
    policy: &Policy,
    all_threads: bool,
    record: &mut Confinement,
) -> anyhow::Result<landlock::RestrictionStatus> {
    let abi = ABI_WANTED;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?;
    if all_threads {
        // Linux 6.20's Landlock (ABI 8) binds threads already running too.
        ruleset = ruleset.all_threads(true)?;
    }
    let rules = [
        (&policy.read, AccessFs::from_read(abi)),
        (&policy.write, AccessFs::from_all(abi)),
    ];
    for (paths, access) in rules {
        for path in paths {
            // A path this machine lacks (/lib64, an unused folder) has nothing to allow.
            let Ok(fd) = PathFd::new(path) else {
                continue;
            };
            // A file takes only the rights a file has.
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(abi)
            };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .with_context(|| format!("cannot add a Landlock rule for {}", path.display()))?;
            let list = if access.contains(AccessFs::WriteFile) {
                &mut record.write
            } else {
                &mut record.read
            };
            list.push(path.display().to_string());
        }
    }
    for path in &policy.remove_dirs {
        if let Ok(fd) = PathFd::new(path) {
            ruleset = ruleset.add_rule(PathBeneath::new(fd, AccessFs::RemoveDir))?;
            record
                .write
                .push(format!("{} (removing empty folders only)", path.display()));
        }
    }
    for &port in &policy.connect {
        ruleset = ruleset.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
    }
    record.connect_ports = policy.connect.clone();
    let status = ruleset
        .restrict_self()
        .context("cannot enforce the Landlock rules")?;
    if matches!(status.landlock, LandlockStatus::Available { .. }) {
        record.landlock_abi = kernel_abi();
    }
    record.files = match (&status.ruleset, record.landlock_abi) {
        (RulesetStatus::FullyEnforced, _) => "enforced".into(),
        (RulesetStatus::PartiallyEnforced, Some(abi)) => {
            format!("partly enforced (kernel Landlock ABI {abi})")
        }
        _ => {
            record.warnings.push(
                "this kernel has no Landlock (Linux 5.13 or later, lsm=landlock): files are not confined".into(),
            );
            "not enforced".into()
        }
    };
    Ok(status)
}

/// A seccomp filter on every thread: `socket()` fails with EACCES unless it asks for TCP
/// (stream over IPv4 or IPv6, protocol TCP) and the run has endpoints; TCP Fast Open is
/// refused; io_uring, which could open sockets past the filter, is refused outright.
fn seccomp(connect: &[u16]) -> anyhow::Result<()> {
    let denied = libc::EACCES as u32;
    let cond = |arg, op, value: i32| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value as u64)
            .expect("the argument index is below 6. This is a bug.")
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    if connect.is_empty() {
        // Every socket() call matches.
        rules.insert(libc::SYS_socket, Vec::new());
    } else {
        // TCP over IPv4 or IPv6 and nothing else: another family, another type (UDP, raw,
        // SOCK_PACKET, ...) or another protocol on a stream socket (MPTCP, SCTP, which
        // Landlock's TCP port rules do not see) matches.
        let mut socket = vec![SeccompRule::new(vec![
            cond(0, SeccompCmpOp::Ne, libc::AF_INET),
            cond(0, SeccompCmpOp::Ne, libc::AF_INET6),
        ])?];
        const SOCK_PACKET: i32 = 10;
        for ty in [
            libc::SOCK_DGRAM,
            libc::SOCK_RAW,
            libc::SOCK_RDM,
            libc::SOCK_SEQPACKET,
            libc::SOCK_DCCP,
            SOCK_PACKET,
        ] {
            socket.push(SeccompRule::new(vec![cond(
                1,
                SeccompCmpOp::MaskedEq(0xf),
                ty,
            )])?);
        }
        socket.push(SeccompRule::new(vec![
            cond(2, SeccompCmpOp::Ne, 0),
            cond(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP),
        ])?);
        rules.insert(libc::SYS_socket, socket);
        // TCP Fast Open connects in sendto/sendmsg, past Landlock's connect check.
        let fast_open = libc::MSG_FASTOPEN;
        for (call, flags_arg) in [
            (libc::SYS_sendto, 3),
            (libc::SYS_sendmsg, 2),
            (libc::SYS_sendmmsg, 3),
        ] {
            let flag = cond(
                flags_arg,
                SeccompCmpOp::MaskedEq(fast_open as u64),
                fast_open,
            );
            rules.insert(call, vec![SeccompRule::new(vec![flag])?]);
        }
        const TCP_FASTOPEN_CONNECT: i32 = 30;
        rules.insert(
            libc::SYS_setsockopt,
            vec![SeccompRule::new(vec![
                cond(1, SeccompCmpOp::Eq, libc::IPPROTO_TCP),
                cond(2, SeccompCmpOp::Eq, TCP_FASTOPEN_CONNECT),
            ])?],
        );
    }
    rules.insert(libc::SYS_io_uring_setup, Vec::new());
    let arch = std::env::consts::ARCH
        .try_into()
        .with_context(|| format!("no seccomp filter for {}", std::env::consts::ARCH))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(denied),
        arch,
    )?;
    let program: BpfProgram = filter.try_into()?;
    seccompiler::apply_filter_all_threads(&program)?;
    Ok(())
}

/// Tries what a hostile stage would, and records the kernel's answers; false when one got
/// through. The file probe runs only where file rules were enforced (it would otherwise create
/// a file in the user's folder) and in `dir`, a folder the process could write before.
fn probe(policy: &Policy, dir: Option<PathBuf>, record: &mut Confinement) -> bool {
    let mut held = true;
    if let Some(dir) = dir {
        let path = dir.join(format!(".lai-confinement-probe-{}", std::process::id()));
        let answer = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => {
                held = false;
                let _ = std::fs::remove_file(&path);
                "created (NOT CONFINED)".to_string()
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => "denied".into(),
            Err(e) => format!("inconclusive ({e})"),
        };
        record
            .probes
            .push(format!("create a file in {}: {answer}", dir.display()));
    }
    // A loopback port no endpoint uses: refused by the kernel before any packet, or (were the
    // run not confined) answered by whatever listens there.
    let port = (9..).find(|p| !policy.connect.contains(p)).unwrap_or(9);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let answer = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => "denied".to_string(),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            held = false;
            "reached the network stack (connection refused: NOT CONFINED)".into()
        }
        Err(e) => {
            held = false;
            format!("failed otherwise ({e}): NOT CONFINED")
        }
        Ok(_) => {
            held = false;
            "connected (NOT CONFINED)".into()
        }
    };
    record.probes.push(format!("connect to {addr}: {answer}"));
    held
}

/// Whether ordinary permissions let this process create files in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a NUL-terminated string that lives through the call.
    dir.is_dir() && unsafe { libc::access(path.as_ptr(), libc::W_OK) } == 0
}

/// A temp folder of the run's own, which `TMPDIR` (and SQLite's `SQLITE_TMPDIR`) name, so that
/// a confined run may write there and not in the shared /tmp, where other users' files and
/// often the inputs are. Removed with everything in it when dropped.
pub struct PrivateTemp(PathBuf);

impl PrivateTemp {
    /// Creates `$TMPDIR/lai-RUN_ID` (mode 0700) and points the temp variables at it.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn create(run_id: &str) -> anyhow::Result<PrivateTemp> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("lai-{run_id}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| {
                format!(
                    "cannot create the run's temp folder {}; set TMPDIR to a writable folder",
                    path.display()
                )
            })?;
        for name in ["TMPDIR", "SQLITE_TMPDIR"] {
            // SAFETY: called on the main thread before the run starts any other thread (a
            // thread reading the environment meanwhile is what makes set_var unsafe).
            unsafe { std::env::set_var(name, &path) };
        }
        Ok(PrivateTemp(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The folder it is in, where the run removes it at the end.
    pub fn parent(&self) -> Option<&Path> {
        self.0.parent()
    }
}

impl Drop for PrivateTemp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether this kernel can confine a run as `Mode::Required` asks (Landlock with TCP port
/// rules, ABI 4), checked before a run opens anything; `apply` checks again, with probes.
///
/// # Errors
/// When it cannot, saying what is needed.
pub fn check_required() -> anyhow::Result<()> {
    match kernel_abi() {
        Some(abi) if abi >= 4 => Ok(()),
        found => bail!(
            "the pipeline requires confinement (`confine = \"required\"`), and this kernel's Landlock {} cannot confine files and TCP ports; run on Linux 6.7 or later with Landlock enabled (lsm=landlock), or set `confine = \"auto\"`",
            found.map_or("is missing".to_string(), |abi| format!(
                "(ABI {abi}, 4 needed)"
            ))
        ),
    }
}

/// The running kernel's Landlock ABI version, if it has Landlock.
fn kernel_abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute, size 0 and the VERSION flag, the call only returns a
    // number (or -1); it reads and writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(abi).ok().filter(|&v| v > 0)
}

/// Threads of this process now.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind::PermissionDenied;
    use std::net::TcpListener;

    use super::*;

    // The kernel holds a confined thread to its rules: it reads and writes where it may, and
    // can neither read nor create a file elsewhere, nor connect to a port no endpoint uses,
    // while the port its endpoint uses answers.
    #[test]
    fn landlock_holds_files_and_ports() {
        let root = tempfile::tempdir().unwrap();
        let [readable, writable, outside] = ["in", "out", "elsewhere"].map(|d| root.path().join(d));
        for dir in [&readable, &writable, &outside] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("a.txt"), "x").unwrap();
        }
        let endpoint = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let [endpoint, other] = [&endpoint, &other].map(|l| l.local_addr().unwrap());
        let policy = Policy {
            read: vec![readable.clone()],
            write: vec![writable.clone()],
            connect: vec![endpoint.port()],
            ..Policy::default()
        };
        // Landlock binds the calling thread only: a thread of its own keeps the test harness free.
        let answers = std::thread::spawn(move || {
            let mut record = Confinement::off();
            landlock(&policy, false, &mut record).unwrap();
            record.landlock_abi.map(|abi| {
                (
                    abi,
                    record.files,
                    std::fs::read(readable.join("a.txt")).map_err(|e| e.kind()),
                    std::fs::write(writable.join("b.txt"), "y").map_err(|e| e.kind()),
                    std::fs::write(readable.join("b.txt"), "y").map_err(|e| e.kind()),
                    std::fs::read(outside.join("a.txt")).map_err(|e| e.kind()),
                    std::fs::write(outside.join("b.txt"), "y").map_err(|e| e.kind()),
                    TcpStream::connect(endpoint)
                        .map(|_| ())
                        .map_err(|e| e.kind()),
                    TcpStream::connect(other).map(|_| ()).map_err(|e| e.kind()),
                )
            })
        })
        .join()
        .unwrap();
        let Some((
            abi,
            files,
            read,
            write,
            write_input,
            read_other,
            write_other,
            to_endpoint,
            to_other,
        )) = answers
        else {
            eprintln!("skipped: this kernel has no Landlock");
            return;
        };
        assert!(
            files == "enforced" || files.starts_with("partly enforced"),
            "{files}"
        );
        assert_eq!(read, Ok(b"x".to_vec()));
        assert_eq!(write, Ok(()));
        assert_eq!(write_input, Err(PermissionDenied));
        assert_eq!(read_other, Err(PermissionDenied));
        assert_eq!(write_other, Err(PermissionDenied));
        if abi >= 4 {
            assert_eq!(to_endpoint, Ok(()));
            assert_eq!(to_other, Err(PermissionDenied));
        }
        // The thread's rules stayed with it: this one still writes anywhere.
        std::fs::write(root.path().join("elsewhere/c.txt"), "z").unwrap();
    }
}
