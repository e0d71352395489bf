//! The site's secret key, the pseudonyms it makes, and the vault that maps pseudonyms back to
//! the values they replaced.
//!
//! One key (a file the site keeps, or an environment variable) yields two independent subkeys:
//! one for HMAC-SHA256 pseudonyms, so the same value gets the same pseudonym in every run on
//! every machine with that key, and one for AES-256-GCM, which seals the vault. A vault is a
//! text file: a header naming the key by a fingerprint that tells nothing about it, then one
//! line per pseudonym with its value sealed under a fresh random nonce, the pseudonym as
//! associated data (a line moved to another pseudonym does not open) and the value padded to a
//! multiple of 32 bytes (the file does not tell how long a value was). `lai reveal` opens it
//! with the same key. Nothing here prints or logs a value.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Where the key comes from, as a pipeline or `lai reveal --key` spells it.
#[derive(Clone, Debug, PartialEq)]
pub enum KeySource {
    /// `env:NAME`: the bytes of an environment variable.
    Env(String),
    /// `file:PATH`: the bytes of a file (one trailing newline ignored).
    File(PathBuf),
    /// `per-run`: random, so pseudonyms hold within one run only and nothing can be revealed.
    PerRun,
}

/// The least key length accepted, in bytes.
const MIN_KEY: usize = 16;

/// What to tell a user who has no key yet.
const MAKE_A_KEY: &str = "make one with `head -c 32 /dev/urandom > redact.key && chmod 600 redact.key`, keep it safe, and set `key = \"file:/path/to/redact.key\"`";

impl KeySource {
    pub fn parse(spec: &str) -> Option<KeySource> {
        match spec.split_once(':') {
            Some(("env", name)) if !name.is_empty() => Some(KeySource::Env(name.to_string())),
            Some(("file", path)) if !path.is_empty() => Some(KeySource::File(path.into())),
            None if spec == "per-run" => Some(KeySource::PerRun),
            _ => None,
        }
    }
}

/// The subkeys derived from the site's key.
pub struct Keys {
    pseudonym: Vec<u8>,
    vault: [u8; 32],
    /// Names the key in vault headers without telling anything about it.
    pub id: String,
    pub per_run: bool,
}

impl Keys {
    /// Reads the key. Errors name where it was looked for and how to make one, never its bytes.
    pub fn load(source: &KeySource) -> anyhow::Result<Keys> {
        let secret = match source {
            KeySource::PerRun => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key)
                    .map_err(|e| anyhow::anyhow!("no OS randomness for a per-run key: {e}"))?;
                return Ok(Keys::derive(&key, true));
            }
            KeySource::Env(name) => match std::env::var_os(name) {
                Some(v) if !v.is_empty() => v.into_encoded_bytes(),
                _ => bail!(
                    "the redact key is read from ${name}, which is not set; export it, or {MAKE_A_KEY}, or set `key = \"per-run\"` for pseudonyms that hold within one run only"
                ),
            },
            KeySource::File(path) => {
                let mut bytes = std::fs::read(path).with_context(|| {
                    format!("cannot read the redact key file {}; {MAKE_A_KEY}", path.display())
                })?;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                warn_if_shared(path);
                bytes
            }
        };
        if secret.len() < MIN_KEY {
            bail!(
                "the redact key ({}) holds {} bytes; a key needs at least {MIN_KEY}: {MAKE_A_KEY}",
                source.describe(),
                secret.len()
            );
        }
        Ok(Keys::derive(&secret, false))
    }

    fn derive(secret: &[u8], per_run: bool) -> Keys {
        let sub = |label: &str| -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
                .expect("HMAC accepts keys of any length. This is a bug.");
            mac.update(label.as_bytes());
            mac.finalize().into_bytes().into()
        };
        Keys {
            pseudonym: sub("lai redact pseudonym v1").to_vec(),
            vault: sub("lai redact vault v1"),
            id: hex::encode(&sub("lai redact key id v1")[..6]),
            per_run,
        }
    }

    /// `ENTITY_` and 16 hex digits of HMAC-SHA256(entity NUL value): equal values of an entity
    /// get equal pseudonyms under one key; 64 bits keep millions of values apart.
    pub fn pseudonym(&self, entity: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.pseudonym)
            .expect("HMAC accepts keys of any length. This is a bug.");
        mac.update(entity.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{}_{}", entity.to_uppercase(), hex::encode(&digest[..8]))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.vault).expect("AES-256 takes a 32-byte key. This is a bug.")
    }

    /// `nonce ciphertext` in hex: the value padded to a multiple of 32 bytes, sealed with the
    /// pseudonym as associated data.
    fn seal(&self, pseudonym: &str, value: &str) -> String {
        let mut padded = value.as_bytes().to_vec();
        padded.push(0x80);
        padded.resize(padded.len().div_ceil(PAD) * PAD, 0);
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS gives random bytes. This is a bug.");
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &padded,
                    aad: pseudonym.as_bytes(),
                },
            )
            .expect("AES-GCM seals any value of this size. This is a bug.");
        format!("{} {}", hex::encode(nonce), hex::encode(sealed))
    }

    /// The value of one vault line, or `None` if it does not open under this key.
    fn open(&self, pseudonym: &str, nonce: &str, sealed: &str) -> Option<String> {
        let nonce: [u8; 12] = hex::decode(nonce).ok()?.try_into().ok()?;
        let sealed = hex::decode(sealed).ok()?;
        let mut padded = self
            .cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed,
                    aad: pseudonym.as_bytes(),
                },
            )
            .ok()?;
        let end = padded.iter().rposition(|&b| b != 0)?;
        (padded[end] == 0x80).then_some(())?;
        padded.truncate(end);
        String::from_utf8(padded).ok()
    }
}

impl KeySource {
    fn describe(&self) -> String {
        match self {
            KeySource::Env(name) => format!("${name}"),
            KeySource::File(path) => path.display().to_string(),
            KeySource::PerRun => "per-run".into(),
        }
    }
}

/// Values are padded to a multiple of this many bytes before they are sealed.
const PAD: usize = 32;

const HEADER: &str = "# lai redact vault v1, key";

/// A key file others can read is no secret; say so (once per run, without its contents).
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            stderr_line!(
                "warning: the redact key file {} can be read by other users; `chmod 600` it",
                path.display()
            );
        }
    }
}

/// An open vault: pseudonyms are appended once each, and synced before the items that use
/// them are written anywhere.
pub struct Vault {
    path: PathBuf,
    state: Mutex<(File, HashSet<String>)>,
}

impl Vault {
    /// Opens `path` for appending, writing the header if it is new. A vault written with
    /// another key is refused: its lines would not open with this one.
    pub fn open(path: &Path, keys: &Keys) -> anyhow::Result<Vault> {
        if keys.per_run {
            bail!(
                "the vault operator needs a key that outlives the run (a per-run key could never reveal anything); {MAKE_A_KEY}"
            );
        }
        let header = format!("{HEADER} {}\n", keys.id);
        let known = match File::open(path) {
            Ok(file) => {
                let mut first = String::new();
                BufReader::new(file).read_line(&mut first)?;
                if !first.is_empty() && first != header {
                    bail!(
                        "the vault {} was written with another key (its header: {}); give that key, or another `vault` path",
                        path.display(),
                        first.trim()
                    );
                }
                !first.is_empty()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e).context(format!("cannot read the vault {}", path.display())),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the folder of the vault {}", path.display()))?;
        }
        let mut file = open_private(path)
            .with_context(|| format!("cannot open the vault {} to append", path.display()))?;
        if !known {
            file.write_all(header.as_bytes())?;
        }
        Ok(Vault {
            path: path.to_path_buf(),
            state: Mutex::new((file, HashSet::new())),
        })
    }

    /// Seals and appends the pairs (pseudonym, value) not written before in this run, then
    /// syncs the file.
    pub fn record(&self, keys: &Keys, pairs: &[(String, String)]) -> anyhow::Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (file, written) = &mut *state;
        let mut lines = String::new();
        for (pseudonym, value) in pairs {
            if written.insert(pseudonym.clone()) {
                lines.push_str(pseudonym);
                lines.push(' ');
                lines.push_str(&keys.seal(pseudonym, value));
                lines.push('\n');
            }
        }
        file.write_all(lines.as_bytes())
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write the vault {}", self.path.display()))
    }
}

/// Opens for appending, created readable by its owner alone.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Every pseudonym in `vaults` with its value. Lines that do not open (another key, a damaged
/// line) are counted, never guessed at.
pub fn read(vaults: &[PathBuf], keys: &Keys) -> anyhow::Result<(HashMap<String, String>, usize)> {
    let mut values = HashMap::new();
    let mut unopened = 0;
    for path in vaults {
        let file = File::open(path).with_context(|| format!("cannot read the vault {}", path.display()))?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read the vault {}", path.display()))?;
            if n == 0 {
                match line.strip_prefix(HEADER) {
                    Some(id) if id.trim() == keys.id => continue,
                    Some(id) => bail!(
                        "the vault {} was written with another key (key id {}; this key's id is {})",
                        path.display(),
                        id.trim(),
                        keys.id
                    ),
                    None => bail!("{} is not a lai vault (no vault header on line 1)", path.display()),
                }
            }
            let mut parts = line.split(' ');
            let opened = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(p), Some(nonce), Some(sealed), None) => {
                    keys.open(p, nonce, sealed).map(|v| (p.to_string(), v))
                }
                _ => None,
            };
            match opened {
                Some((pseudonym, value)) => {
                    values.insert(pseudonym, value);
                }
                None => unopened += 1,
            }
        }
    }
    Ok((values, unopened))
}

/// `text` with every `[PSEUDONYM]` the vault knows replaced by its value; also how many
/// pseudonym-shaped tokens it did not know.
pub fn restore(text: &str, values: &HashMap<String, String>) -> (String, usize) {
    let token = regex::Regex::new(r"\[([A-Z][A-Z0-9_]*_[0-9a-f]{16})\]")
        .expect("the pseudonym pattern compiles. This is a bug.");
    let mut unknown = 0;
    let restored = token.replace_all(text, |c: &regex::Captures| match values.get(&c[1]) {
        Some(value) => value.clone(),
        None => {
            unknown += 1;
            c[0].to_string()
        }
    });
    (restored.into_owned(), unknown)
}

/// `restore` for one line of a file: a JSON record has the pseudonyms in each of its strings
/// restored (and stays valid JSON); any other line is restored as text.
pub fn restore_line(line: &str, values: &HashMap<String, String>) -> (String, usize) {
    fn walk(value: &mut Value, values: &HashMap<String, String>, unknown: &mut usize) {
        match value {
            Value::String(s) => {
                let (restored, n) = restore(s, values);
                *s = restored;
                *unknown += n;
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, values, unknown)),
            Value::Object(fields) => fields.values_mut().for_each(|v| walk(v, values, unknown)),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(line) {
        Ok(mut record @ (Value::Object(_) | Value::Array(_))) => {
            let mut unknown = 0;
            walk(&mut record, values, &mut unknown);
            (record.to_string(), unknown)
        }
        _ => restore(line, values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> Keys {
        Keys::derive(secret, false)
    }

    #[test]
    fn key_sources() {
        assert_eq!(KeySource::parse("env:K"), Some(KeySource::Env("K".into())));
        assert_eq!(KeySource::parse("file:/k"), Some(KeySource::File("/k".into())));
        assert_eq!(KeySource::parse("per-run"), Some(KeySource::PerRun));
        for bad in ["", "env:", "file:", "key", "url:x"] {
            assert_eq!(KeySource::parse(bad), None, "{bad}");
        }
    }

    // Same key, same pseudonym; another key or another entity, another pseudonym.
    #[test]
    fn pseudonyms_follow_the_key() {
        let a = keys(b"0123456789abcdef-site-a");
        let b = keys(b"0123456789abcdef-site-b");
        let p = a.pseudonym("person", "Jane Roe");
        assert_eq!(p, keys(b"0123456789abcdef-site-a").pseudonym("person", "Jane Roe"));
        assert!(p.starts_with("PERSON_") && p.len() == "PERSON_".len() + 16);
        assert_ne!(p, b.pseudonym("person", "Jane Roe"));
        assert_ne!(p, a.pseudonym("email", "Jane Roe"));
    }

    // Sealed values open with the same key and pseudonym only; lengths hide in 32-byte steps.
    #[test]
    fn seal_and_open() {
        let k = keys(b"0123456789abcdef");
        let line = k.seal("PERSON_00", "Zoë Ångström");
        let (nonce, sealed) = line.split_once(' ').unwrap();
        assert_eq!(k.open("PERSON_00", nonce, sealed).as_deref(), Some("Zoë Ångström"));
        assert_eq!(k.open("PERSON_01", nonce, sealed), None);
        assert_eq!(keys(b"fedcba9876543210").open("PERSON_00", nonce, sealed), None);
        let short = k.seal("P", "a");
        let long = k.seal("P", &"a".repeat(30));
        assert_eq!(short.len(), long.len());
        assert_ne!(k.seal("P", "a"), short, "a fresh nonce each time");
    }

    // A vault written in two runs opens whole; a vault of another key is refused.
    #[test]
    fn vault_round_trip() {
        let dir = std::env::temp_dir().join(format!("lai-vault-{}", std::process::id()));
        let path = dir.join("v.vault");
        let _ = std::fs::remove_dir_all(&dir);
        let k = keys(b"0123456789abcdef");
        let values = ["Jane Roe", "jane@example.com", "line\nbreak and space"];
        for run in 0..2 {
            let vault = Vault::open(&path, &k).unwrap();
            let pairs: Vec<(String, String)> = values
                .iter()
                .map(|v| (k.pseudonym("person", v), v.to_string()))
                .collect();
            vault.record(&k, &pairs[run..]).unwrap();
            vault.record(&k, &pairs[run..]).unwrap();
        }
        let (read, unopened) = read(std::slice::from_ref(&path), &k).unwrap();
        assert_eq!(unopened, 0);
        assert_eq!(read.len(), 3);
        let text = format!("Dear [{}], [PERSON_0000000000000000]", k.pseudonym("person", values[0]));
        assert_eq!(restore(&text, &read), ("Dear Jane Roe, [PERSON_0000000000000000]".into(), 1));
        let record = serde_json::json!({ "text": format!("[{}]", k.pseudonym("person", values[2])) });
        let (line, unknown) = restore_line(&record.to_string(), &read);
        assert_eq!((serde_json::from_str::<Value>(&line).unwrap()["text"].as_str(), unknown), (Some(values[2]), 0));
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(!written.contains("Jane") && !written.contains("example"));
        let other = keys(b"another key, 16+ bytes");
        assert!(Vault::open(&path, &other).is_err());
        assert!(read_err(&path, &other).contains("another key"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn read_err(path: &Path, keys: &Keys) -> String {
        format!("{:#}", read(&[path.to_path_buf()], keys).err().unwrap())
    }

    #[test]
    fn short_and_missing_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("lai-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short.key");
        std::fs::write(&short, "tiny\n").unwrap();
        let e = format!("{:#}", Keys::load(&KeySource::File(short)).err().unwrap());
        assert!(e.contains("4 bytes") && !e.contains("tiny"), "{e}");
        let e = format!(
            "{:#}",
            Keys::load(&KeySource::Env("LAI_TEST_NO_SUCH_KEY".into())).err().unwrap()
        );
        assert!(e.contains("$LAI_TEST_NO_SUCH_KEY") && e.contains("per-run"), "{e}");
        assert!(Vault::open(&dir.join("v"), &Keys::load(&KeySource::PerRun).unwrap()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
