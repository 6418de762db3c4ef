//! The local half of commit-reveal weights: what `agora tx commit-weights` must keep until
//! `agora tx reveal-weights` (the row, exactly as committed, and the secret salt), in a small
//! JSON file next to the wallet.
//!
//! Values are kept by their f64 bits as well as in decimal: the reveal must hash to the
//! commitment bit for bit, and a decimal round trip is not guaranteed to be exact.

use anyhow::{bail, Context, Result};
use ledger::{Float, Hash, PublicKey, Salt};
use rand::RngCore;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A commitment made and not yet revealed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingCommit {
    pub hotkey: PublicKey,
    pub uids: Vec<u16>,
    pub values: Vec<Float>,
    pub salt: Salt,
    pub commitment: Hash,
}

impl PendingCommit {
    /// A commitment to `(uids, values)` by `hotkey` with a fresh random salt.
    pub(crate) fn new(hotkey: PublicKey, uids: Vec<u16>, values: &[f64]) -> PendingCommit {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let salt = Salt(salt);
        let values: Vec<Float> = values.iter().copied().map(Float).collect();
        let commitment = ledger::commitment(&hotkey, &uids, &values, &salt);
        PendingCommit { hotkey, uids, values, salt, commitment }
    }

    fn to_json(&self) -> Value {
        json!({
            "hotkey": self.hotkey,
            "uids": self.uids,
            "values": self.values.iter().map(|v| v.0).collect::<Vec<_>>(),
            "value_bits": self.values.iter().map(|v| format!("{:016x}", v.0.to_bits())).collect::<Vec<_>>(),
            "salt": self.salt,
            "commitment": self.commitment,
        })
    }

    fn from_json(v: &Value) -> Result<PendingCommit> {
        let field = |k: &str| v.get(k).with_context(|| format!("no {k:?}"));
        let hotkey: PublicKey = serde_json::from_value(field("hotkey")?.clone())?;
        let uids: Vec<u16> = serde_json::from_value(field("uids")?.clone())?;
        let bits: Vec<String> = serde_json::from_value(field("value_bits")?.clone())?;
        let values = bits
            .iter()
            .map(|b| u64::from_str_radix(b, 16).map(|x| Float(f64::from_bits(x))))
            .collect::<Result<Vec<_>, _>>()
            .context("value_bits must be 16 hex digits each")?;
        let salt: Salt = serde_json::from_value(field("salt")?.clone())?;
        let commitment: Hash = serde_json::from_value(field("commitment")?.clone())?;
        let p = PendingCommit { hotkey, uids, values, salt, commitment };
        if ledger::commitment(&p.hotkey, &p.uids, &p.values, &p.salt) != p.commitment {
            bail!("the saved row and salt do not hash to the saved commitment: the file was changed");
        }
        Ok(p)
    }

    /// Writes the file (mode 0600: the salt is what keeps the row secret until the reveal).
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&self.to_json())? + "\n";
        write_private(path, &text).with_context(|| format!("writing {}", path.display()))
    }

    pub(crate) fn load(path: &Path) -> Result<PendingCommit> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("no saved commitment at {} (made by `agora tx commit-weights`)", path.display())
        })?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        PendingCommit::from_json(&v).with_context(|| format!("{} is not a saved commitment", path.display()))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Where a hotkey's pending commitment is kept by default: inside its wallet
/// (`<wallet>/commits/<hotkey>.json`), or for a dev account `<wallet root>/dev-commits/<name>.json`.
pub(crate) fn default_path(
    root: &Path,
    wallet: Option<&str>,
    hotkey: Option<&str>,
    dev: Option<&str>,
) -> PathBuf {
    match (wallet, dev) {
        (Some(w), _) => root.join(w).join("commits").join(format!("{}.json", hotkey.unwrap_or("hotkey"))),
        (None, d) => root.join("dev-commits").join(format!("{}.json", d.unwrap_or("dev"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_commitment_reloads_bit_for_bit_and_tampering_is_caught() {
        let dir = std::env::temp_dir().join(format!("agora-commit-{}", std::process::id()));
        let path = dir.join("c.json");
        // A value whose shortest decimal is 17 digits: the bits are what must survive.
        let p = PendingCommit::new(PublicKey([3; 32]), vec![0, 5], &[0.1 + 0.2, 1.0 - (0.1 + 0.2)]);
        p.save(&path).unwrap();
        assert_eq!(PendingCommit::load(&path).unwrap(), p);
        let text =
            std::fs::read_to_string(&path).unwrap().replace("\"uids\": [\n    0,", "\"uids\": [\n    1,");
        std::fs::write(&path, text).unwrap();
        assert!(format!("{:#}", PendingCommit::load(&path).unwrap_err()).contains("was changed"));
        assert!(format!("{:#}", PendingCommit::load(&dir.join("none.json")).unwrap_err())
            .contains("agora tx commit-weights"));
        let _ = std::fs::remove_dir_all(&dir);
        // Two commitments to the same row differ: the salt is fresh.
        let q = PendingCommit::new(PublicKey([3; 32]), vec![0, 5], &[0.5, 0.5]);
        let r = PendingCommit::new(PublicKey([3; 32]), vec![0, 5], &[0.5, 0.5]);
        assert_ne!(q.commitment, r.commitment);
    }
}
