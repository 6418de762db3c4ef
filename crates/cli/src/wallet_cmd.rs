//! `agora wallet ...`: argument parsing and printing around the `wallet` crate, and
//! `agora wallet balance`, which asks a node (through the `client` crate) what the keys hold.
//!
//! Passwords come, in this order, from `--password-file` (its first line), the
//! `AGORA_PASSWORD` environment variable, or a terminal prompt (twice when a password is set).
//! The first two exist for scripts and tests; on a shared machine prefer the prompt, since
//! other users may read a process's environment or a careless file.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use wallet::{KdfParams, Wallet, WordCount};
use zeroize::Zeroizing;

#[derive(Debug, Args)]
pub struct WalletArgs {
    /// Directory holding the wallets (one subdirectory each) [default: ~/.agora/wallets]
    #[arg(long, global = true, value_name = "DIR", env = "AGORA_WALLET_DIR")]
    wallet_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Create wallet --name with a new coldkey (and hotkey --hotkey); on an existing wallet,
    /// --hotkey adds just that hotkey. Prints the mnemonics: write them down
    New {
        /// Wallet name
        #[arg(long)]
        name: String,
        /// Also create this hotkey (on an existing wallet: only this hotkey)
        #[arg(long)]
        hotkey: Option<String>,
        /// Words per mnemonic
        #[arg(long, default_value_t = 12, value_parser = parse_words)]
        words: usize,
        /// Replace an existing coldkey or hotkey (its old keys are lost unless you kept the mnemonic)
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// List the wallets with their coldkey and hotkey public keys (hex, then SS58)
    List,
    /// Print a wallet's public keys: hex, as the ledger shows them, then the SS58 address
    /// (prefix 42, Bittensor's "5..." form)
    Show {
        /// Wallet name
        #[arg(long)]
        name: String,
    },
    /// Ask a node for the coldkey's free balance and the stake on each of the wallet's hotkeys
    Balance {
        /// Wallet name
        #[arg(long)]
        name: String,
        #[command(flatten)]
        chain: crate::tx_cmd::ChainArgs,
    },
    /// Regenerate a coldkey (or with --hotkey, a hotkey) from its mnemonic
    Regen {
        /// Wallet name
        #[arg(long)]
        name: String,
        /// The 12 or 24 words, quoted as one argument; without it they are asked for on the
        /// terminal, which keeps them out of the shell history and the process list
        #[arg(long)]
        mnemonic: Option<String>,
        /// Regenerate this hotkey instead of the coldkey (no password needed)
        #[arg(long)]
        hotkey: Option<String>,
        /// Replace an existing key
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
}

/// Where the coldkey password comes from; `agora tx` reuses it (hence `global`: the flag may
/// follow the subcommand there).
#[derive(Debug, Args)]
pub(crate) struct PasswordArgs {
    /// Read the coldkey password from the first line of this file instead of prompting
    /// (AGORA_PASSWORD, if set, is used next)
    #[arg(long, value_name = "FILE", global = true)]
    password_file: Option<PathBuf>,
}

/// Argon2id cost of the coldkey encryption. Lower values only for tests: they make a stolen
/// coldkey file cheap to brute-force.
#[derive(Debug, Args)]
struct KdfArgs {
    /// Argon2id memory in KiB
    #[arg(long, value_name = "KIB", default_value_t = KdfParams::default().m_kib)]
    kdf_memory_kib: u32,
    /// Argon2id passes
    #[arg(long, value_name = "N", default_value_t = KdfParams::default().t)]
    kdf_passes: u32,
}

impl KdfArgs {
    fn params(&self) -> KdfParams {
        KdfParams { m_kib: self.kdf_memory_kib, t: self.kdf_passes, p: KdfParams::default().p }
    }
}

fn parse_words(s: &str) -> Result<usize, String> {
    match s {
        "12" => Ok(12),
        "24" => Ok(24),
        _ => Err("a mnemonic has 12 or 24 words".into()),
    }
}

/// Runs `agora wallet ...`.
pub fn run(args: WalletArgs) -> Result<()> {
    let root = wallet_root(args.wallet_dir)?;
    match args.command {
        WalletCommand::New { name, hotkey, words, overwrite, password, kdf } => {
            let words = WordCount::try_from(words)?;
            new(&root, &name, hotkey.as_deref(), words, overwrite, &password, &kdf.params())
        }
        WalletCommand::List => list(&root),
        WalletCommand::Show { name } => show(&Wallet::open(&root, &name)?),
        WalletCommand::Balance { name, chain } => balance(&Wallet::open(&root, &name)?, &chain),
        WalletCommand::Regen { name, mnemonic, hotkey, overwrite, password, kdf } => {
            let words = match mnemonic {
                Some(m) => Zeroizing::new(m),
                None => Zeroizing::new(prompt("Mnemonic words (hidden): ", "pass --mnemonic")?),
            };
            let mnemonic = wallet::parse_mnemonic(&words)?;
            match hotkey {
                Some(h) => {
                    let w = Wallet::open(&root, &name)?;
                    let pk = w.regen_hotkey(&h, &mnemonic, overwrite)?;
                    println!("regenerated hotkey {h} of wallet {name}: {pk}");
                }
                None => {
                    if !overwrite && Wallet::open(&root, &name).is_ok() {
                        // Refuse before prompting for a password that would not be used.
                        return Err(wallet::WalletError::AlreadyExists(root.join(&name)).into());
                    }
                    let pw = new_password(&password)?;
                    let w = Wallet::regen_coldkey(&root, &name, &mnemonic, &pw, &kdf.params(), overwrite)?;
                    println!("regenerated coldkey of wallet {name}: {}", w.coldkey_public());
                }
            }
            Ok(())
        }
    }
}

/// `--wallet-dir`, else `~/.agora/wallets`.
pub(crate) fn wallet_root(dir: Option<PathBuf>) -> Result<PathBuf> {
    match dir {
        Some(d) => Ok(d),
        None => wallet::default_root().context("HOME is not set; pass --wallet-dir or set AGORA_WALLET_DIR"),
    }
}

fn new(
    root: &Path,
    name: &str,
    hotkey: Option<&str>,
    words: WordCount,
    overwrite: bool,
    password: &PasswordArgs,
    kdf: &KdfParams,
) -> Result<()> {
    // Check names before prompting, so a typo costs no password typing.
    wallet::check_name(name)?;
    if let Some(h) = hotkey {
        wallet::check_name(h)?;
    }
    let existing = Wallet::open(root, name).ok();
    if existing.is_some() && hotkey.is_none() && !overwrite {
        // Refuse before prompting for a password that would not be used.
        return Err(wallet::WalletError::AlreadyExists(root.join(name)).into());
    }
    let w = match (existing, hotkey) {
        // `new --hotkey` on an existing wallet adds the hotkey and keeps the coldkey.
        (Some(w), Some(_)) if !overwrite => {
            println!("wallet {name} exists; keeping its coldkey {}", w.coldkey_public());
            w
        }
        _ => {
            let pw = new_password(password)?;
            let (w, mnemonic) = Wallet::create(root, name, &pw, words, kdf, overwrite)?;
            println!("created wallet {name} in {}", w.dir().display());
            let cold = w.coldkey_public();
            println!("coldkey {cold}  {}", cold.to_ss58());
            print_mnemonic("coldkey", &mnemonic, &format!("--name {name}"));
            w
        }
    };
    if let Some(h) = hotkey {
        let mnemonic = w.create_hotkey(h, words, overwrite)?;
        let pk = w.hotkey_public(h)?;
        println!("hotkey {h} {pk}  {}", pk.to_ss58());
        print_mnemonic(&format!("hotkey {h}"), &mnemonic, &format!("--name {name} --hotkey {h}"));
    }
    Ok(())
}

fn print_mnemonic(what: &str, m: &wallet::bip39::Mnemonic, regen_args: &str) {
    println!();
    println!("IMPORTANT: the mnemonic below is the only way to regenerate your {what}.");
    println!("Write it down and keep it offline; anyone who has it controls the key.");
    println!("    {m}");
    println!("Regenerate with: agora wallet regen {regen_args} --mnemonic \"<the words>\"");
    println!();
}

fn list(root: &Path) -> Result<()> {
    let names = wallet::list(root)?;
    if names.is_empty() {
        println!("no wallets in {}", root.display());
    }
    for name in names {
        // One damaged wallet should not hide the others: print its error in its place.
        match Wallet::open(root, &name) {
            Ok(w) => show(&w).unwrap_or_else(|e| println!("  error: {e:#}")),
            Err(e) => println!("{name}  error: {e}"),
        }
    }
    Ok(())
}

fn show(w: &Wallet) -> Result<()> {
    let cold = w.coldkey_public();
    println!("{}  coldkey {cold}  {}", w.name(), cold.to_ss58());
    for h in w.hotkeys()? {
        match w.hotkey_public(&h) {
            Ok(pk) => println!("  hotkey {h} {pk}  {}", pk.to_ss58()),
            Err(e) => println!("  hotkey {h} error: {e}"),
        }
    }
    Ok(())
}

/// `agora wallet balance`: free balance of the coldkey, then each hotkey's neuron (looked up by
/// hotkey; a hotkey need not be registered, nor owned by this coldkey on chain).
fn balance(w: &Wallet, target: &crate::tx_cmd::ChainArgs) -> Result<()> {
    let hotkeys = w.hotkeys()?;
    crate::tx_cmd::block_on(async {
        let chain = crate::tx_cmd::Chain::connect(target).await?;
        let cold = w.coldkey_public();
        let account = chain.client.account(&cold).await?;
        println!("wallet {}  chain {}", w.name(), chain.id());
        println!("coldkey {cold}  {}", cold.to_ss58());
        println!("  free balance  {}", crate::tx_cmd::format_tokens(account.balance));
        let mut staked: u128 = 0;
        for h in hotkeys {
            let pk = match w.hotkey_public(&h) {
                Ok(pk) => pk,
                Err(e) => {
                    println!("hotkey {h}  error: {e}");
                    continue;
                }
            };
            match chain.neuron_by_hotkey(0, &pk).await? {
                None => println!("hotkey {h} {pk}  {}  not registered", pk.to_ss58()),
                Some(n) => {
                    // Stake on a hotkey another coldkey owns is not this wallet's to withdraw.
                    let owner =
                        if n.coldkey == cold { String::new() } else { format!("  (owned by {})", n.coldkey) };
                    if n.coldkey == cold {
                        staked += u128::from(n.stake);
                    }
                    println!(
                        "hotkey {h} {pk}  {}  uid {}  stake {}{owner}",
                        pk.to_ss58(),
                        n.uid,
                        crate::tx_cmd::format_tokens(n.stake)
                    );
                }
            }
        }
        let total = u128::from(account.balance) + staked;
        println!("  total (free + own stake)  {}", crate::tx_cmd::format_tokens_u128(total));
        Ok(())
    })
}

/// The password that unlocks an existing coldkey: from the file or environment, else prompted
/// once (a wrong one fails at decryption with "wrong password").
pub(crate) fn unlock_password(args: &PasswordArgs) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(pw) = scripted_password(args)? {
        return Ok(pw);
    }
    let pw = Zeroizing::new(prompt("Coldkey password: ", PASSWORD_HINT)?);
    Ok(Zeroizing::new(pw.as_bytes().to_vec()))
}

const PASSWORD_HINT: &str = "use --password-file or AGORA_PASSWORD";

/// A password to seal a coldkey with: from the file or environment, else prompted twice.
fn new_password(args: &PasswordArgs) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(pw) = scripted_password(args)? {
        return Ok(pw);
    }
    let first = Zeroizing::new(prompt("New coldkey password: ", PASSWORD_HINT)?);
    if first.is_empty() {
        bail!("empty password refused");
    }
    let second = Zeroizing::new(prompt("Repeat the password: ", PASSWORD_HINT)?);
    if first != second {
        bail!("the passwords differ");
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}

fn scripted_password(args: &PasswordArgs) -> Result<Option<Zeroizing<Vec<u8>>>> {
    if let Some(path) = &args.password_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            bail!("{} has an empty first line; no password", path.display());
        }
        return Ok(Some(Zeroizing::new(line.as_bytes().to_vec())));
    }
    if let Some(pw) = std::env::var_os("AGORA_PASSWORD") {
        let pw = Zeroizing::new(pw.into_encoded_bytes());
        if pw.is_empty() {
            bail!("AGORA_PASSWORD is set but empty");
        }
        return Ok(Some(pw));
    }
    Ok(None)
}

/// Reads a line from the terminal without echo; `otherwise` says what a script should pass.
fn prompt(text: &str, otherwise: &str) -> Result<String> {
    rpassword::prompt_password(text).with_context(|| format!("cannot read from the terminal; {otherwise}"))
}
