//! Agora wallets: the keys a participant signs ledger transactions with.
//!
//! A wallet is a directory `<root>/<name>/` holding one **coldkey** (owns funds and stake; its
//! secret is encrypted at rest) and any number of **hotkeys** (identify a running neuron; stored
//! unencrypted so a peer can start unattended), as the market paper's accounts and neurons need:
//!
//! ```text
//! <root>/<name>/coldkey          encrypted coldkey secret (versioned JSON, see [`ColdkeyFile`])
//! <root>/<name>/coldkeypub.txt   coldkey public key, hex, readable without the password
//! <root>/<name>/hotkeys/<hotkey> hotkey secret and public key, plain JSON
//! ```
//!
//! Every file and directory is created owner-only (files 0600, directories 0700) and written
//! through a temporary file and a rename, so a crash never leaves a half-written key behind.
//!
//! Keys are ed25519 ([`ledger::SigningKey`], ed25519-dalek 2): exactly the type the ledger's
//! [`ledger::TxBody::sign`] takes and its verification checks, and public keys are shown as the
//! ledger's [`ledger::PublicKey`] hex.
//!
//! **Mnemonics.** Every key comes from a BIP-39 mnemonic of 12 or 24 English words. The ed25519
//! secret key (its 32-byte seed) is the first 32 bytes of the 64-byte BIP-39 seed,
//! `PBKDF2-HMAC-SHA512(mnemonic, "mnemonic" || "", 2048)` with an empty passphrase. No SLIP-10
//! path is applied: one mnemonic gives one key, and [`key_from_mnemonic`] is the whole rule,
//! so `regen` from the words always reproduces the same key.
//!
//! **Encryption at rest.** The coldkey's 32-byte secret is sealed with XChaCha20-Poly1305 under
//! a key derived from the password by argon2id, with a random 16-byte salt and a random 24-byte
//! nonce. The file stores the format version and the KDF parameters, so the defaults can grow
//! later without breaking older files. The AEAD's associated data binds the format tag and the
//! public key, so a file whose public key was swapped fails to open. A failed AEAD check cannot
//! tell a wrong password from a modified ciphertext; it is reported as [`WalletError::WrongPassword`].
//!
//! The crate assumes a single writer per wallet directory (no locking) and a trustworthy local
//! file system; hotkeys are protected only by file permissions, by design.

use argon2::{Algorithm, Argon2, Params, Version};
use bip39::Mnemonic;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ledger::{PublicKey, SigningKey};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

pub use bip39;

/// The coldkey file's name inside a wallet directory.
pub const COLDKEY_FILE: &str = "coldkey";
/// The coldkey public key's file name inside a wallet directory.
pub const COLDKEYPUB_FILE: &str = "coldkeypub.txt";
/// The hotkeys' directory inside a wallet directory.
pub const HOTKEYS_DIR: &str = "hotkeys";

/// The current coldkey and hotkey file format version.
const FORMAT_VERSION: u32 = 1;
/// Associated data prefix of the coldkey AEAD; the public key follows it.
const COLDKEY_AAD_TAG: &[u8] = b"agora/coldkey/v1";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
/// Secret seed (32) plus the Poly1305 tag (16).
const CIPHERTEXT_LEN: usize = 32 + 16;

/// Everything that can go wrong with a wallet, with the file concerned where there is one.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The coldkey file (this path) did not decrypt: the password is wrong, or the file's
    /// ciphertext or public key was changed (both are authenticated, so neither is told apart).
    #[error("wrong password (or the coldkey file {0} was modified)")]
    WrongPassword(PathBuf),
    /// A wallet file exists but does not parse as what it should hold.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file that failed to parse.
        path: PathBuf,
        /// What was wrong with it (bad JSON, wrong length, unknown version).
        reason: String,
    },
    /// Creating a wallet or hotkey would overwrite this existing file.
    #[error(
        "{0} already exists; pass --overwrite to replace it (its keys are lost unless you kept the mnemonic)"
    )]
    AlreadyExists(PathBuf),
    /// The directory has no coldkey public file, so it is not a wallet.
    #[error("no wallet at {0}")]
    NoWallet(PathBuf),
    /// The wallet has no hotkey file of that name.
    #[error("no hotkey {name:?} in wallet {wallet:?}")]
    NoHotkey {
        /// The wallet's name.
        wallet: String,
        /// The hotkey asked for.
        name: String,
    },
    /// A wallet or hotkey name that is not a safe single path component.
    #[error("invalid name {0:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'")]
    InvalidName(String),
    /// The BIP-39 phrase did not parse (an unknown word or a bad checksum), with bip39's reason.
    #[error("invalid mnemonic: {0}")]
    InvalidMnemonic(String),
    /// A mnemonic of a word count other than 12 or 24 (what this wallet makes and restores).
    #[error("a mnemonic has 12 or 24 words, not {0}")]
    WordCount(usize),
    /// Argon2id refused the key derivation parameters (from a coldkey file or the caller).
    #[error("invalid key derivation parameters: {0}")]
    Kdf(String),
    /// XChaCha20-Poly1305 failed to seal the secret key.
    #[error("encryption failed")]
    Encrypt,
    /// Reading or writing a wallet file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// A result whose error is a [`WalletError`] by default.
pub type Result<T, E = WalletError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalletError + '_ {
    move |source| WalletError::Io { path: path.to_path_buf(), source }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> WalletError {
    WalletError::Corrupt { path: path.to_path_buf(), reason: reason.into() }
}

/// Argon2id cost parameters, stored in each coldkey file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes over the memory.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// Memory-hard production defaults: 64 MiB, 3 passes, 1 lane (about a second on a laptop
    /// core in an optimised build; RFC 9106's second recommended option).
    fn default() -> Self {
        KdfParams { m_kib: 64 * 1024, t: 3, p: 1 }
    }
}

impl KdfParams {
    /// Cheap parameters for tests only: offer no protection against guessing.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams { m_kib: 64, t: 1, p: 1 };

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        let params =
            Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(|e| WalletError::Kdf(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password, salt, key.as_mut())
            .map_err(|e| WalletError::Kdf(e.to_string()))?;
        Ok(key)
    }
}

/// The number of words of a new mnemonic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WordCount {
    /// 128 bits of entropy.
    #[default]
    Twelve,
    /// 256 bits of entropy.
    TwentyFour,
}

impl TryFrom<usize> for WordCount {
    type Error = WalletError;
    fn try_from(n: usize) -> Result<WordCount> {
        match n {
            12 => Ok(WordCount::Twelve),
            24 => Ok(WordCount::TwentyFour),
            n => Err(WalletError::WordCount(n)),
        }
    }
}

/// A fresh random mnemonic from the operating system's generator.
pub fn generate_mnemonic(words: WordCount) -> Mnemonic {
    let mut entropy = Zeroizing::new([0u8; 32]);
    let len = match words {
        WordCount::Twelve => 16,
        WordCount::TwentyFour => 32,
    };
    OsRng.fill_bytes(&mut entropy[..len]);
    // 16 and 32 bytes are valid BIP-39 entropy lengths, so this cannot fail.
    Mnemonic::from_entropy(&entropy[..len]).expect("16 or 32 bytes of entropy")
}

/// Parses user-typed words (any case and spacing), accepting only 12 or 24 words.
pub fn parse_mnemonic(words: &str) -> Result<Mnemonic> {
    let normalised = Zeroizing::new(words.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase());
    let n = normalised.split(' ').filter(|w| !w.is_empty()).count();
    if n != 12 && n != 24 {
        return Err(WalletError::WordCount(n));
    }
    Mnemonic::parse_normalized(&normalised).map_err(|e| WalletError::InvalidMnemonic(e.to_string()))
}

/// The ed25519 key of a mnemonic: the first 32 bytes of its BIP-39 seed (empty passphrase).
pub fn key_from_mnemonic(mnemonic: &Mnemonic) -> SigningKey {
    let mut seed = mnemonic.to_seed_normalized("");
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&seed[..32]);
    let key = SigningKey::from_bytes(&secret);
    seed.zeroize();
    secret.zeroize();
    key
}

/// The ledger's public key of a signing key.
pub fn public_key(key: &SigningKey) -> PublicKey {
    ledger::public_key(key)
}

/// The on-disk format of the coldkey file (JSON, byte strings in hex).
#[derive(Debug, Serialize, Deserialize)]
pub struct ColdkeyFile {
    /// Format version; 1 is the only one so far.
    pub version: u32,
    /// The coldkey's public key, in the clear (and bound to the ciphertext as associated data).
    pub public_key: PublicKey,
    /// Always "argon2id" in version 1.
    pub kdf: String,
    /// Argon2id's memory, time and parallelism costs, stored so a file outlives a change of defaults.
    pub kdf_params: KdfParams,
    /// The 16-byte Argon2id salt, in hex.
    pub salt: String,
    /// Always "xchacha20poly1305" in version 1.
    pub cipher: String,
    /// The 24-byte XChaCha20 nonce, in hex.
    pub nonce: String,
    /// The sealed 32-byte ed25519 secret followed by the 16-byte tag.
    pub ciphertext: String,
}

/// The on-disk format of a hotkey file (JSON).
#[derive(Serialize, Deserialize)]
struct HotkeyFile {
    version: u32,
    public_key: PublicKey,
    secret_key: String,
}

impl Drop for HotkeyFile {
    fn drop(&mut self) {
        self.secret_key.zeroize();
    }
}

fn coldkey_aad(pk: &PublicKey) -> Vec<u8> {
    [COLDKEY_AAD_TAG, &pk.0].concat()
}

/// Seals `key` under `password`.
fn seal(key: &SigningKey, password: &[u8], kdf: &KdfParams) -> Result<ColdkeyFile> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let k = kdf.derive(password, &salt)?;
    let pk = public_key(key);
    let cipher = XChaCha20Poly1305::new(k.as_ref().into());
    let secret = Zeroizing::new(key.to_bytes());
    let ciphertext = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.as_ref(), aad: &coldkey_aad(&pk) })
        // Encryption fails only for messages beyond the cipher's length limit, never for 32 bytes.
        .map_err(|_| WalletError::Encrypt)?;
    Ok(ColdkeyFile {
        version: FORMAT_VERSION,
        public_key: pk,
        kdf: "argon2id".into(),
        kdf_params: *kdf,
        salt: hex::encode(salt),
        cipher: "xchacha20poly1305".into(),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ciphertext),
    })
}

fn hex_field<const N: usize>(path: &Path, field: &str, s: &str) -> Result<Vec<u8>> {
    let bytes = hex::decode(s).map_err(|e| corrupt(path, format!("{field}: {e}")))?;
    if bytes.len() != N {
        return Err(corrupt(path, format!("{field} has {} bytes, expected {N}", bytes.len())));
    }
    Ok(bytes)
}

/// Opens a sealed coldkey read from `path`.
fn unseal(path: &Path, f: &ColdkeyFile, password: &[u8]) -> Result<SigningKey> {
    if f.version != FORMAT_VERSION {
        return Err(corrupt(path, format!("unknown format version {}", f.version)));
    }
    if f.kdf != "argon2id" || f.cipher != "xchacha20poly1305" {
        return Err(corrupt(path, format!("unknown kdf {:?} or cipher {:?}", f.kdf, f.cipher)));
    }
    let salt = hex_field::<SALT_LEN>(path, "salt", &f.salt)?;
    let nonce = hex_field::<NONCE_LEN>(path, "nonce", &f.nonce)?;
    let ciphertext = hex_field::<CIPHERTEXT_LEN>(path, "ciphertext", &f.ciphertext)?;
    // Parameters the argon2 crate refuses mean the file was edited; say so rather than "wrong password".
    let k = f.kdf_params.derive(password, &salt).map_err(|e| corrupt(path, e.to_string()))?;
    let cipher = XChaCha20Poly1305::new(k.as_ref().into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload { msg: &ciphertext, aad: &coldkey_aad(&f.public_key) },
            )
            .map_err(|_| WalletError::WrongPassword(path.to_path_buf()))?,
    );
    let secret: Zeroizing<[u8; 32]> =
        Zeroizing::new(plain.as_slice().try_into().map_err(|_| corrupt(path, "secret is not 32 bytes"))?);
    let key = SigningKey::from_bytes(&secret);
    // The AEAD already authenticates the public key; this catches a file sealed by a buggy writer.
    if public_key(&key) != f.public_key {
        return Err(corrupt(path, "secret does not match the stored public key"));
    }
    Ok(key)
}

/// Reads a hotkey file (`<wallet>/hotkeys/<name>`, or a copy of one anywhere): its signing key,
/// checked against the public key stored beside it. A validator's key is such a file.
pub fn read_hotkey_file(path: &Path) -> Result<SigningKey> {
    let bytes = Zeroizing::new(read_file(path)?);
    let file: HotkeyFile =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(path, format!("not a hotkey file: {e}")))?;
    if file.version != FORMAT_VERSION {
        return Err(corrupt(path, format!("unknown format version {}", file.version)));
    }
    let secret = Zeroizing::new(hex_field::<32>(path, "secret_key", &file.secret_key)?);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&secret);
    let key = SigningKey::from_bytes(&bytes);
    bytes.zeroize();
    if public_key(&key) != file.public_key {
        return Err(corrupt(path, "secret key does not match the stored public key"));
    }
    Ok(key)
}

/// Checks a wallet or hotkey name: it becomes a path component, so no separators or `..`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(WalletError::InvalidName(name.to_string()))
    }
}

/// Creates `dir` and its parents, owner-only where this creates them.
fn create_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io_err(dir))
}

/// Writes `bytes` to `path` with mode 0600 through a temporary file and a rename, so a reader
/// sees the old file or the new one, never a partial write.
fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<()> {
    // A dot name, so `list` and `hotkeys` never show a leftover of an interrupted write.
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(io_err(path))
}

/// The default wallet root: `$HOME/.agora/wallets` (the CLI lets `--wallet-dir` or
/// `AGORA_WALLET_DIR` override it). `None` when `HOME` is unset.
pub fn default_root() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".agora").join("wallets"))
}

/// The names of the wallets under `root` (directories with a `coldkeypub.txt`), sorted.
/// A missing root is an empty list.
pub fn list(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(root)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(root))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if check_name(&name).is_ok() && entry.path().join(COLDKEYPUB_FILE).is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// An opened wallet: where it lives and its coldkey public key. Secrets are read on demand.
#[derive(Clone, Debug)]
pub struct Wallet {
    name: String,
    dir: PathBuf,
    coldkey: PublicKey,
}

impl Wallet {
    /// Creates wallet `name` under `root` with a fresh coldkey sealed under `password`, and
    /// returns its mnemonic, which the caller must show the user once. An existing wallet is
    /// refused unless `overwrite`.
    pub fn create(
        root: &Path,
        name: &str,
        password: &[u8],
        words: WordCount,
        kdf: &KdfParams,
        overwrite: bool,
    ) -> Result<(Wallet, Mnemonic)> {
        let mnemonic = generate_mnemonic(words);
        let wallet = Wallet::regen_coldkey(root, name, &mnemonic, password, kdf, overwrite)?;
        Ok((wallet, mnemonic))
    }

    /// Writes wallet `name`'s coldkey from its mnemonic, sealed under `password` (a new
    /// password is fine: the key, not the password, comes from the words). Creates the wallet
    /// if missing; replaces an existing coldkey only if `overwrite`. Hotkeys are kept.
    pub fn regen_coldkey(
        root: &Path,
        name: &str,
        mnemonic: &Mnemonic,
        password: &[u8],
        kdf: &KdfParams,
        overwrite: bool,
    ) -> Result<Wallet> {
        check_name(name)?;
        let dir = root.join(name);
        let coldkey_path = dir.join(COLDKEY_FILE);
        let pub_path = dir.join(COLDKEYPUB_FILE);
        if !overwrite && (coldkey_path.exists() || pub_path.exists()) {
            return Err(WalletError::AlreadyExists(dir));
        }
        let key = key_from_mnemonic(mnemonic);
        let sealed = seal(&key, password, kdf)?;
        let json = serde_json::to_vec_pretty(&sealed).map_err(|e| corrupt(&coldkey_path, e.to_string()))?;
        create_dir(&dir.join(HOTKEYS_DIR))?;
        write_secret_file(&coldkey_path, &json)?;
        write_secret_file(&pub_path, format!("{}\n", sealed.public_key).as_bytes())?;
        Ok(Wallet { name: name.to_string(), dir, coldkey: sealed.public_key })
    }

    /// Opens wallet `name` under `root`, reading only its public key.
    pub fn open(root: &Path, name: &str) -> Result<Wallet> {
        check_name(name)?;
        let dir = root.join(name);
        let pub_path = dir.join(COLDKEYPUB_FILE);
        if !pub_path.is_file() {
            return Err(WalletError::NoWallet(dir));
        }
        let text = String::from_utf8(read_file(&pub_path)?).map_err(|_| corrupt(&pub_path, "not UTF-8"))?;
        let coldkey = text.trim().parse::<PublicKey>().map_err(|e| corrupt(&pub_path, e.to_string()))?;
        Ok(Wallet { name: name.to_string(), dir, coldkey })
    }

    /// The wallet's name (its directory's name under the wallets root).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The wallet's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The coldkey's public key (from `coldkeypub.txt`; no password needed).
    pub fn coldkey_public(&self) -> PublicKey {
        self.coldkey
    }

    /// Decrypts the coldkey.
    pub fn unlock_coldkey(&self, password: &[u8]) -> Result<SigningKey> {
        let path = self.dir.join(COLDKEY_FILE);
        let bytes = read_file(&path)?;
        let file: ColdkeyFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, format!("not a coldkey file: {e}")))?;
        if file.public_key != self.coldkey {
            return Err(corrupt(
                &path,
                format!(
                    "its public key {} differs from {COLDKEYPUB_FILE} ({})",
                    file.public_key, self.coldkey
                ),
            ));
        }
        unseal(&path, &file, password)
    }

    /// Re-encrypts the coldkey under `new_password` with `kdf` (a password change, or an
    /// upgrade of an old file to stronger KDF parameters). The key itself does not change.
    pub fn reseal_coldkey(&self, password: &[u8], new_password: &[u8], kdf: &KdfParams) -> Result<()> {
        let key = self.unlock_coldkey(password)?;
        let path = self.dir.join(COLDKEY_FILE);
        let sealed = seal(&key, new_password, kdf)?;
        let json = serde_json::to_vec_pretty(&sealed).map_err(|e| corrupt(&path, e.to_string()))?;
        write_secret_file(&path, &json)
    }

    fn hotkey_path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join(HOTKEYS_DIR).join(name))
    }

    /// Creates hotkey `name` from a fresh mnemonic and returns the mnemonic. An existing hotkey
    /// is refused unless `overwrite`.
    pub fn create_hotkey(&self, name: &str, words: WordCount, overwrite: bool) -> Result<Mnemonic> {
        let mnemonic = generate_mnemonic(words);
        self.regen_hotkey(name, &mnemonic, overwrite)?;
        Ok(mnemonic)
    }

    /// Writes hotkey `name` from its mnemonic and returns its public key. An existing hotkey is
    /// replaced only if `overwrite`.
    pub fn regen_hotkey(&self, name: &str, mnemonic: &Mnemonic, overwrite: bool) -> Result<PublicKey> {
        let path = self.hotkey_path(name)?;
        if !overwrite && path.exists() {
            return Err(WalletError::AlreadyExists(path));
        }
        let key = key_from_mnemonic(mnemonic);
        let file = HotkeyFile {
            version: FORMAT_VERSION,
            public_key: public_key(&key),
            secret_key: hex::encode(key.to_bytes()),
        };
        let json =
            Zeroizing::new(serde_json::to_vec_pretty(&file).map_err(|e| corrupt(&path, e.to_string()))?);
        create_dir(&self.dir.join(HOTKEYS_DIR))?;
        write_secret_file(&path, &json)?;
        Ok(file.public_key)
    }

    /// Reads hotkey `name`'s signing key.
    pub fn hotkey(&self, name: &str) -> Result<SigningKey> {
        let path = self.hotkey_path(name)?;
        if !path.is_file() {
            return Err(WalletError::NoHotkey { wallet: self.name.clone(), name: name.to_string() });
        }
        read_hotkey_file(&path)
    }

    /// Hotkey `name`'s public key.
    pub fn hotkey_public(&self, name: &str) -> Result<PublicKey> {
        self.hotkey(name).map(|k| public_key(&k))
    }

    /// The names of the wallet's hotkeys, sorted.
    pub fn hotkeys(&self) -> Result<Vec<String>> {
        let dir = self.dir.join(HOTKEYS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if check_name(&name).is_ok() && entry.path().is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}
