//! `agora wallet ...` through the real binary, with AGORA_PASSWORD (or --password-file), cheap
//! KDF parameters and a temporary wallet directory.

use crate::{stderr, stdout, TempDir};
use std::process::{Command, Output};

/// Argon2id at its cheapest, so the tests run in milliseconds in a debug build.
pub(crate) const CHEAP_KDF: [&str; 4] = ["--kdf-memory-kib", "64", "--kdf-passes", "1"];

/// `agora wallet --wallet-dir DIR args...` with `password` in AGORA_PASSWORD (unset if `None`).
pub(crate) fn wallet(dir: &TempDir, password: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.arg("wallet").arg("--wallet-dir").arg(dir.path()).args(args);
    cmd.env_remove("AGORA_PASSWORD").env_remove("AGORA_WALLET_DIR");
    if let Some(pw) = password {
        cmd.env("AGORA_PASSWORD", pw);
    }
    cmd.output().expect("run the agora binary")
}

/// The value after `label` on the line that starts with it (after trimming).
/// The first word after `label` on its line (a key in hex; its SS58 address follows it).
pub(crate) fn field(out: &str, label: &str) -> String {
    fields(out, label)[0].clone()
}

/// Every word after `label` on its line.
pub(crate) fn fields(out: &str, label: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in\n{out}"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The mnemonics printed by `new`, in order: the indented line after each warning.
fn mnemonics(out: &str) -> Vec<String> {
    let lines: Vec<&str> = out.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("IMPORTANT"))
        .map(|(k, _)| lines[k + 2].trim().to_string())
        .collect()
}

pub(crate) fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed:\nstdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
    stdout(o)
}

#[test]
fn new_show_list_and_regen_round_trip() {
    let dir = TempDir::new("wallet-round-trip");
    let mut args = vec!["new", "--name", "alice", "--hotkey", "miner", "--words", "24"];
    args.extend(CHEAP_KDF);
    let out = ok(&wallet(&dir, Some("hunter2"), &args));
    let cold = field(&out, "coldkey ");
    let hot = field(&out, "hotkey miner ");
    assert_eq!(cold.len(), 64, "{out}");
    let words = mnemonics(&out);
    assert_eq!(words.len(), 2, "{out}");
    assert_eq!(words[0].split(' ').count(), 24);
    for f in ["alice/coldkey", "alice/coldkeypub.txt", "alice/hotkeys/miner"] {
        dir.has(f);
    }

    let shown = ok(&wallet(&dir, None, &["show", "--name", "alice"]));
    // Hex, then the SS58 address of the same key.
    let ss58 = |hex: &str| hex.parse::<ledger::PublicKey>().unwrap().to_ss58();
    let (cold58, hot58) = (ss58(&cold), ss58(&hot));
    assert_eq!(fields(&out, "coldkey ")[1], cold58);
    assert_eq!(shown, format!("alice  coldkey {cold}  {cold58}\n  hotkey miner {hot}  {hot58}\n"));
    let listed = ok(&wallet(&dir, None, &["list"]));
    assert_eq!(listed, shown);

    // Regenerate both keys elsewhere, with another password, from the printed words.
    let other = TempDir::new("wallet-regen");
    let mut args = vec!["regen", "--name", "alice", "--mnemonic", &words[0]];
    args.extend(CHEAP_KDF);
    let out = ok(&wallet(&other, Some("other password"), &args));
    assert!(out.contains(&cold), "{out}");
    let out = ok(&wallet(
        &other,
        None,
        &["regen", "--name", "alice", "--hotkey", "miner", "--mnemonic", &words[1]],
    ));
    assert!(out.contains(&hot), "{out}");
    assert_eq!(ok(&wallet(&other, None, &["show", "--name", "alice"])), shown);
}

#[test]
fn existing_wallets_are_kept_and_hotkeys_added() {
    let dir = TempDir::new("wallet-keep");
    let mut args = vec!["new", "--name", "bob"];
    args.extend(CHEAP_KDF);
    let cold = field(&ok(&wallet(&dir, Some("pw"), &args)), "coldkey ");

    // No password needed to be told no, and nothing changes.
    let o = wallet(&dir, None, &["new", "--name", "bob"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists") && stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    // --hotkey on an existing wallet adds the hotkey only.
    let out = ok(&wallet(&dir, None, &["new", "--name", "bob", "--hotkey", "h"]));
    assert!(out.contains(&format!("keeping its coldkey {cold}")), "{out}");
    assert_eq!(mnemonics(&out).len(), 1);
    let o = wallet(&dir, None, &["new", "--name", "bob", "--hotkey", "h"]);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    // Regenerating over an existing coldkey also needs --overwrite.
    let words =
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let mut args = vec!["regen", "--name", "bob", "--mnemonic", words];
    args.extend(CHEAP_KDF);
    let o = wallet(&dir, None, &args);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    args.push("--overwrite");
    let out = ok(&wallet(&dir, Some("pw"), &args));
    assert!(!out.contains(&cold), "{out}");
    assert!(ok(&wallet(&dir, None, &["show", "--name", "bob"])).contains("hotkey h "));
}

#[test]
fn password_file_and_bad_input_give_clear_errors() {
    let dir = TempDir::new("wallet-errors");
    let pw_file = dir.0.join("pw.txt");
    std::fs::write(&pw_file, "from a file\n").unwrap();
    let mut args = vec!["new", "--name", "carol", "--password-file", pw_file.to_str().unwrap()];
    args.extend(CHEAP_KDF);
    ok(&wallet(&dir, None, &args));

    // No terminal, no AGORA_PASSWORD, no file: a clear error, not a hang.
    let mut args = vec!["new", "--name", "dave"];
    args.extend(CHEAP_KDF);
    let o = wallet(&dir, None, &args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("AGORA_PASSWORD"), "{}", stderr(&o));

    let o = wallet(&dir, None, &["regen", "--name", "x", "--hotkey", "h"]);
    assert!(stderr(&o).contains("pass --mnemonic"), "{}", stderr(&o));

    let cases: [(&[&str], &str); 5] = [
        (&["show", "--name", "nobody"], "no wallet at"),
        (&["show", "--name", "../etc"], "invalid name"),
        (&["new", "--name", "x", "--words", "13"], "12 or 24"),
        (&["regen", "--name", "x", "--mnemonic", "abandon abandon"], "12 or 24 words"),
        (&["regen", "--name", "x", "--mnemonic", "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon"], "invalid mnemonic"),
    ];
    for (args, expected) in cases {
        let o = wallet(&dir, Some("pw"), args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    }

    // A damaged wallet still lists, with its error, beside the good ones.
    std::fs::write(dir.0.join("carol/hotkeys/broken"), "{").unwrap();
    let out = ok(&wallet(&dir, None, &["list"]));
    assert!(out.contains("hotkey broken error:") && out.contains("hotkeys/broken"), "{out}");
}

#[test]
fn an_empty_directory_lists_no_wallets() {
    let dir = TempDir::new("wallet-empty");
    let out = ok(&wallet(&dir, None, &["list"]));
    assert!(out.starts_with("no wallets in"), "{out}");
}

#[test]
fn balance_asks_a_running_node() {
    use ledger::{dev_key, public_key, Call, TxBody, UNITS_PER_TOKEN};
    let dir = TempDir::new("wallet-balance");
    let mut args = vec!["new", "--name", "alice", "--hotkey", "miner"];
    args.extend(CHEAP_KDF);
    let out = ok(&wallet(&dir, Some("pw"), &args));
    let cold: ledger::PublicKey = field(&out, "coldkey ").parse().unwrap();

    let chain_dir = dir.0.join("chain");
    let node = crate::node::NodeProc::start(chain_dir.to_str().unwrap(), &["--instant"]);
    let url = node.http();
    // Fund the wallet's coldkey from the dev account "alice" of the dev genesis.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = client::Client::connect(&url).await.unwrap();
        let chain = c.genesis().await.unwrap().config.chain_id;
        let k = dev_key("alice");
        let tx = TxBody {
            sender: public_key(&k),
            nonce: 0,
            fee: 10_000,
            call: Call::Transfer { to: cold, amount: 5 * UNITS_PER_TOKEN + 7 },
        }
        .sign(&k, &chain);
        let (_, receipt) = c.submit_and_wait(&tx).await.unwrap();
        assert!(receipt.is_applied(), "{receipt:?}");
    });

    let out = ok(&wallet(&dir, None, &["balance", "--name", "alice", "--chain", &url]));
    assert!(
        out.contains(&format!("coldkey {cold}  {}\n  free balance  5.000000007", cold.to_ss58())),
        "{out}"
    );
    assert!(out.contains("hotkey miner ") && out.contains("not registered"), "{out}");

    // No node there: a clear error naming the URL, not a panic.
    drop(node);
    let o = wallet(&dir, None, &["balance", "--name", "alice", "--chain", "http://127.0.0.1:9"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("http://127.0.0.1:9"), "{}", stderr(&o));
}
