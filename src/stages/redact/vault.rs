//! The site's secret key, the pseudonyms it makes, and the vault that maps pseudonyms back to
//! the values they replaced.
//!
//! One key (a file the site keeps, or an environment variable; 32 bytes or more) yields two
//! independent subkeys: one for HMAC-SHA256 pseudonyms, so the same value gets the same
//! pseudonym in every run on every machine with that key, and one for AES-256-GCM, which seals
//! the vault. A vault is a text file: a header naming the key by a fingerprint that tells
//! nothing about it, then one line per pseudonym with its value sealed under a fresh random
//! nonce, the pseudonym as associated data (a line moved to another pseudonym does not open)
//! and the value padded to a multiple of 32 bytes (the file tells a value's length only in
//! 32-byte steps). Lines are appended and synced before the records that use them are
//! written, and a line is never written twice. `lai reveal` opens it with the same key.
//! Nothing here prints or logs a value.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use hmac::{Hmac, KeyInit, Mac};
use regex::Regex;
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

/// The least key length accepted, in bytes: a key is random bytes, not a passphrase (the
/// pseudonyms beside published text would let anyone test guesses of a weak one).
const MIN_KEY: usize = 32;

/// What to tell a user whose key is not where the pipeline says.
const WHERE_IS_THE_KEY: &str = "point `key` (or `lai reveal --key`) at this site's key; if the site has none yet, make one with `head -c 32 /dev/urandom > redact.key && chmod 600 redact.key` and keep it safe (a new key cannot open vaults of the old one, nor repeat its pseudonyms)";

impl KeySource {
    pub fn parse(spec: &str) -> Option<KeySource> {
        match spec.split_once(':') {
            Some(("env", name)) if !name.is_empty() => Some(KeySource::Env(name.to_string())),
            Some(("file", path)) if !path.is_empty() => Some(KeySource::File(path.into())),
            None if spec == "per-run" => Some(KeySource::PerRun),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            KeySource::Env(name) => format!("${name}"),
            KeySource::File(path) => path.display().to_string(),
            KeySource::PerRun => "per-run".into(),
        }
    }
}

/// The subkeys derived from the site's key.
pub struct Keys {
    pseudonym: [u8; 32],
    cipher: Aes256Gcm,
    /// Names the key in vault headers without telling anything about it.
    pub id: String,
    pub per_run: bool,
}

impl Keys {
    /// Reads the key. Errors name where it was looked for and what to do, never its bytes.
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
                _ => bail!("the redact key is read from ${name}, which is not set; {WHERE_IS_THE_KEY}"),
            },
            KeySource::File(path) => {
                let mut bytes = std::fs::read(path).with_context(|| {
                    format!("cannot read the redact key file {}; {WHERE_IS_THE_KEY}", path.display())
                })?;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                warn_if_shared(path, "redact key file");
                bytes
            }
        };
        if secret.len() < MIN_KEY {
            bail!(
                "the redact key ({}) holds {} bytes; a key is at least {MIN_KEY} random bytes, not a passphrase: {WHERE_IS_THE_KEY}",
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
            pseudonym: sub("lai redact pseudonym v1"),
            cipher: Aes256Gcm::new_from_slice(&sub("lai redact vault v1"))
                .expect("AES-256 takes a 32-byte key. This is a bug."),
            id: hex::encode(&sub("lai redact key id v1")[..6]),
            per_run,
        }
    }

    /// The entity's name in capitals (anything but letters and digits as `_`), `_`, and 16 hex
    /// digits of HMAC-SHA256(entity NUL value): equal values of an entity get equal pseudonyms
    /// under one key; 64 bits keep millions of values apart.
    pub fn pseudonym(&self, entity: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.pseudonym)
            .expect("HMAC accepts keys of any length. This is a bug.");
        mac.update(entity.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let name: String = entity
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
            .collect();
        format!("{name}_{}", hex::encode(&digest[..8]))
    }

    /// `nonce ciphertext` in hex: the value padded to a multiple of 32 bytes, sealed with the
    /// pseudonym as associated data.
    fn seal(&self, pseudonym: &str, value: &str) -> anyhow::Result<String> {
        let mut padded = value.as_bytes().to_vec();
        padded.push(0x80);
        padded.resize(padded.len().div_ceil(PAD) * PAD, 0);
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no OS randomness for a nonce: {e}"))?;
        let payload = Payload { msg: &padded, aad: pseudonym.as_bytes() };
        let sealed = (self.cipher.encrypt(&Nonce::from(nonce), payload))
            .map_err(|_| anyhow::anyhow!("AES-GCM could not seal a value"))?;
        Ok(format!("{} {}", hex::encode(nonce), hex::encode(sealed)))
    }

    /// The value of one vault line, or `None` if it does not open under this key.
    fn open(&self, pseudonym: &str, nonce: &str, sealed: &str) -> Option<String> {
        let nonce: [u8; 12] = hex::decode(nonce).ok()?.try_into().ok()?;
        let sealed = hex::decode(sealed).ok()?;
        let payload = Payload { msg: &sealed, aad: pseudonym.as_bytes() };
        let mut padded = self.cipher.decrypt(&Nonce::from(nonce), payload).ok()?;
        let end = padded.iter().rposition(|&b| b != 0)?;
        (padded[end] == 0x80).then_some(())?;
        padded.truncate(end);
        String::from_utf8(padded).ok()
    }
}

/// Values are padded to a multiple of this many bytes before they are sealed.
const PAD: usize = 32;

const HEADER: &str = "# lai redact vault v1, key";

/// A pseudonym in brackets, as `hash` and `vault` write it.
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[([A-Z0-9][A-Z0-9_]*_[0-9a-f]{16})\]")
        .expect("the pseudonym pattern compiles. This is a bug.")
});

/// A secret file others can read is no secret; say so (without its contents).
fn warn_if_shared(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            stderr_line!(
                "warning: the {what} {} can be read by other users; `chmod 600` it",
                path.display()
            );
        }
    }
}

/// An open vault: pseudonyms are appended once each (also across runs), and synced before
/// the items that use them are written anywhere.
pub struct Vault {
    path: PathBuf,
    state: Mutex<(File, HashSet<String>)>,
}

impl Vault {
    /// Opens `path` for appending, writing the header if it is new. A line a crash left half
    /// written is cut off (its batch never returned, so no record names it). A file that is
    /// no vault, or a vault of another key, is refused.
    pub fn open(path: &Path, keys: &Keys) -> anyhow::Result<Vault> {
        if keys.per_run {
            bail!("the vault operator needs the site's key, not a per-run one; {WHERE_IS_THE_KEY}");
        }
        let header = format!("{HEADER} {}\n", keys.id);
        let context = || format!("cannot open the vault {}", path.display());
        crate::component::create_parent(path)?;
        let mut options = OpenOptions::new();
        options.create(true).read(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).with_context(context)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).with_context(context)?;
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            file.set_len(whole as u64).with_context(context)?;
            file.seek(std::io::SeekFrom::End(0)).with_context(context)?;
        }
        let text = String::from_utf8_lossy(&text[..whole]);
        let mut lines = text.lines();
        match lines.next() {
            None => {
                file.write_all(header.as_bytes()).with_context(context)?;
                file.sync_all().with_context(context)?;
                sync_folder(path);
            }
            Some(first) if format!("{first}\n") == header => warn_if_shared(path, "vault"),
            Some(first) => match first.strip_prefix(HEADER) {
                Some(id) => bail!(
                    "the vault {} was written with another key (key id {}; this key's id is {}); give the key it was written with, or another `vault` path",
                    path.display(),
                    id.trim(),
                    keys.id
                ),
                None => bail!(
                    "{} is no lai vault (no vault header on line 1); give `vault` a path of its own",
                    path.display()
                ),
            },
        }
        let written = lines.filter_map(|l| l.split(' ').next()).map(str::to_string).collect();
        Ok(Vault {
            path: path.to_path_buf(),
            state: Mutex::new((file, written)),
        })
    }

    /// Seals and appends the pairs (pseudonym, value) not in the vault yet, then syncs the
    /// file. On failure the file is cut back: nothing half written stays, nothing counts as
    /// written.
    pub fn record(&self, keys: &Keys, pairs: &[(String, String)]) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (file, written) = &mut *state;
        let mut new: Vec<&str> = Vec::new();
        let mut lines = String::new();
        for (pseudonym, value) in pairs {
            if written.contains(pseudonym) || new.contains(&pseudonym.as_str()) {
                continue;
            }
            lines.push_str(pseudonym);
            lines.push(' ');
            lines.push_str(&keys.seal(pseudonym, value)?);
            lines.push('\n');
            new.push(pseudonym);
        }
        if new.is_empty() {
            return Ok(());
        }
        let context = || format!("cannot write the vault {}", self.path.display());
        let before = file.metadata().with_context(context)?.len();
        if let Err(e) = file.write_all(lines.as_bytes()).and_then(|()| file.sync_data()) {
            let _ = file.set_len(before);
            return Err(e).with_context(context);
        }
        written.extend(new.into_iter().map(str::to_string));
        Ok(())
    }
}

/// Makes a new file's name durable.
fn sync_folder(path: &Path) {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = File::open(folder).and_then(|f| f.sync_all());
    }
}

/// The vault's file name in a run's output folder (the `vault` option's default).
pub const FILE: &str = "redact.vault";

/// The vault of a run's output folder, or, when it has none, the vaults of its shards
/// (`OUT/shard-K-of-N/redact.vault`).
pub fn of_run(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let vault = out.join(FILE);
    if vault.exists() {
        return Ok(vec![vault]);
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("cannot read the output folder {}", out.display()))?
        .filter_map(|e| Some(e.ok()?.path().join(FILE)))
        .filter(|p| p.exists())
        .collect();
    shards.sort();
    if shards.is_empty() {
        bail!(
            "no {FILE} in {} or its shard folders; give the run's folder with -o, or the file with --vault",
            out.display()
        );
    }
    Ok(shards)
}

/// Every pseudonym in `vaults` with its value, and the places (file:line) of lines that do not
/// open (damaged or altered; never guessed at).
pub fn read(vaults: &[PathBuf], keys: &Keys) -> anyhow::Result<(HashMap<String, String>, Vec<String>)> {
    let mut values = HashMap::new();
    let mut unopened = Vec::new();
    for path in vaults {
        let context = || format!("cannot read the vault {}", path.display());
        let file = File::open(path).with_context(context)?;
        for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = String::from_utf8_lossy(&line.with_context(context)?).into_owned();
            if n == 0 {
                match line.strip_prefix(HEADER) {
                    Some(id) if id.trim() == keys.id => continue,
                    Some(id) => bail!(
                        "the vault {} was written with another key (key id {}; this key's id is {}); give the key its run used (--key file:PATH or env:NAME)",
                        path.display(),
                        id.trim(),
                        keys.id
                    ),
                    None => bail!("{} is no lai vault (no vault header on line 1)", path.display()),
                }
            }
            let mut parts = line.rsplitn(3, ' ');
            let opened = match (parts.next(), parts.next(), parts.next()) {
                (Some(sealed), Some(nonce), Some(p)) => keys.open(p, nonce, sealed).map(|v| (p.to_string(), v)),
                _ => None,
            };
            match opened {
                Some((pseudonym, value)) => {
                    values.insert(pseudonym, value);
                }
                None => unopened.push(format!("{}:{}", path.display(), n + 1)),
            }
        }
    }
    Ok((values, unopened))
}

/// `text` with every `[PSEUDONYM]` the vault knows replaced by its value; also how many
/// pseudonym-shaped tokens it did not know.
pub fn restore(text: &str, values: &HashMap<String, String>) -> (String, usize) {
    let mut unknown = 0;
    let restored = TOKEN.replace_all(text, |c: &regex::Captures| match values.get(&c[1]) {
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

    // `lai reveal -o OUT` looks where the stage writes by default.
    #[test]
    fn default_vault_is_found() {
        let default = super::super::OPTIONS.iter().find(|o| o.name == "vault").unwrap();
        assert!(matches!(default.default, crate::options::Default::Value(v) if v.ends_with(&format!("/{FILE}\""))));
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

    // Same key, same pseudonym; another key or another entity, another pseudonym; any entity
    // name gives a pseudonym that `restore` finds.
    #[test]
    fn pseudonyms_follow_the_key() {
        let a = keys(b"0123456789abcdef-site-a");
        let b = keys(b"0123456789abcdef-site-b");
        let p = a.pseudonym("person", "Jane Roe");
        assert_eq!(p, keys(b"0123456789abcdef-site-a").pseudonym("person", "Jane Roe"));
        assert!(p.starts_with("PERSON_") && p.len() == "PERSON_".len() + 16);
        assert_ne!(p, b.pseudonym("person", "Jane Roe"));
        assert_ne!(p, a.pseudonym("email", "Jane Roe"));
        let odd = a.pseudonym("case no-2", "x");
        assert!(odd.starts_with("CASE_NO_2_"), "{odd}");
        let values = HashMap::from([(odd.clone(), "x".to_string())]);
        assert_eq!(restore(&format!("[{odd}]"), &values), ("x".into(), 0));
    }

    // Sealed values open with the same key and pseudonym only; lengths hide in 32-byte steps;
    // values ending in NUL or in a 0x80 byte (Ā is C4 80) come back whole.
    #[test]
    fn seal_and_open() {
        let k = keys(b"0123456789abcdef");
        for value in ["Zoë Ångström", "a\0", "Ā", "", &"x".repeat(31), &"y".repeat(32)] {
            let line = k.seal("PERSON_00", value).unwrap();
            let (nonce, sealed) = line.split_once(' ').unwrap();
            assert_eq!(k.open("PERSON_00", nonce, sealed).as_deref(), Some(value));
            assert_eq!(k.open("PERSON_01", nonce, sealed), None);
            assert_eq!(keys(b"fedcba9876543210").open("PERSON_00", nonce, sealed), None);
        }
        let len = |v: &str| k.seal("P", v).unwrap().len();
        assert_eq!(len("a"), len(&"a".repeat(31)));
        assert!(len(&"a".repeat(32)) > len("a"));
        assert_ne!(k.seal("P", "a").unwrap(), k.seal("P", "a").unwrap(), "a fresh nonce each time");
    }

    // A vault written in two runs holds each pseudonym once and opens whole; a half-written
    // last line is cut off; a vault of another key, and a file that is no vault, are refused
    // without quoting the file.
    #[test]
    fn vault_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.vault");
        let k = keys(b"0123456789abcdef");
        let values = ["Jane Roe", "jane@example.com", "line\nbreak and space"];
        let pairs: Vec<(String, String)> = values
            .iter()
            .map(|v| (k.pseudonym("person", v), v.to_string()))
            .collect();
        for run in 0..2 {
            let vault = Vault::open(&path, &k).unwrap();
            vault.record(&k, &pairs[run..]).unwrap();
            vault.record(&k, &pairs[run..]).unwrap();
        }
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), 1 + values.len(), "each pseudonym once");
        assert!(!written.contains("Jane") && !written.contains("example"));
        let (read, unopened) = read(std::slice::from_ref(&path), &k).unwrap();
        assert!(unopened.is_empty());
        assert_eq!(read.len(), 3);
        let text = format!("Dear [{}], [PERSON_0000000000000000]", pairs[0].0);
        assert_eq!(restore(&text, &read), ("Dear Jane Roe, [PERSON_0000000000000000]".into(), 1));
        let record = serde_json::json!({ "text": format!("[{}]", pairs[2].0) });
        let (line, unknown) = restore_line(&record.to_string(), &read);
        let line: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((line["text"].as_str(), unknown), (Some(values[2]), 0));

        // A crash mid-line: the next run cuts it off and appends whole lines.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"PERSON_1 ab").unwrap();
        let vault = Vault::open(&path, &k).unwrap();
        vault.record(&k, &[(k.pseudonym("person", "Ann"), "Ann".into())]).unwrap();
        let (read, unopened) = super::read(std::slice::from_ref(&path), &k).unwrap();
        assert_eq!((read.len(), unopened.len()), (4, 0));

        let other = keys(b"another key, 16+ bytes");
        assert!(Vault::open(&path, &other).is_err());
        let e = format!("{:#}", super::read(std::slice::from_ref(&path), &other).err().unwrap());
        assert!(e.contains("another key"), "{e}");
        let data = dir.path().join("data.txt");
        std::fs::write(&data, "Jane Roe, 12 Main St\n").unwrap();
        let e = format!("{:#}", Vault::open(&data, &k).err().unwrap());
        assert!(e.contains("no lai vault") && !e.contains("Jane"), "{e}");
    }

    #[test]
    fn short_and_missing_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.key");
        std::fs::write(&short, "a sixteen+ byte passphrase\n").unwrap();
        let e = format!("{:#}", Keys::load(&KeySource::File(short)).err().unwrap());
        assert!(e.contains("26 bytes") && !e.contains("sixteen"), "{e}");
        let e = format!(
            "{:#}",
            Keys::load(&KeySource::Env("LAI_TEST_NO_SUCH_KEY".into())).err().unwrap()
        );
        assert!(e.contains("$LAI_TEST_NO_SUCH_KEY") && e.contains("head -c 32"), "{e}");
        let per_run = Keys::load(&KeySource::PerRun).unwrap();
        assert!(Vault::open(&dir.path().join("v"), &per_run).is_err());
    }
}
