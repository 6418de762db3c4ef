//! Runs the real `agora` binary as a user would, into temporary directories.
//! One test binary (modules below) so the workspace links it once.

mod chain_features;
mod delegation;
mod localnet;
mod localnet_validators;
mod node;
mod node_attacks;
mod node_crash;
mod peer;
mod peer_chain;
mod sim;
mod subnets;
mod tx;
mod validators;
mod wallet;

use std::path::PathBuf;
use std::process::{Command, Output};

/// `agora args...`, with stdout and stderr captured (so progress bars stay hidden).
pub fn agora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora")).args(args).output().expect("run the agora binary")
}

/// The captured stdout of a finished `agora` run, lossily decoded as UTF-8.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The captured stderr of a finished `agora` run (where its errors go), lossily decoded.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `agora-cli-<name>-<pid>` under the temp dir, removing any leftover of that
    /// name first so the test starts from an empty directory.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("agora-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory as a string, ready to pass as an `agora` argument.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }

    /// Asserts that `file` exists in the directory and is not empty.
    pub fn has(&self, file: &str) {
        let p = self.0.join(file);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{} missing or empty", p.display());
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn top_level_help_lists_only_real_subcommands() {
    let o = agora(&["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    // The first word of each line of the "Commands:" section.
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "sim",
            "node",
            "wallet",
            "tx",
            "stake",
            "metagraph",
            "subnet",
            "localnet",
            "peer",
            "infer",
            "bench",
            "help"
        ],
        "{help}"
    );
}
