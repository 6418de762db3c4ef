//! [`RedbStore`]: the ledger's [`Store`] over the embedded redb database.
//!
//! One table holds every key exactly as the ledger lays them out (see `ledger::store`); each
//! [`Store::commit`] is one redb write transaction with immediate durability, so a block is on
//! disk when `commit` returns and a crash leaves the store before or after it, never between.

use ledger::store::Visitor;
use ledger::{Store, StoreError, WriteBatch};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use std::path::Path;

/// The one table: ledger key -> ledger value.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ledger");

/// A [`Store`] in one redb file.
pub struct RedbStore {
    db: Database,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl RedbStore {
    /// Opens the database file at `path`, creating it (and the table) if missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(backend)?;
        // Create the table up front so reads never meet a missing table.
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(TABLE).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(TABLE).map_err(backend)?;
        Ok(table.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut Visitor<'_>) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(TABLE).map_err(backend)?;
        for item in table.range(prefix..).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            f(k.value(), v.value())?;
        }
        Ok(())
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(backend)?;
        // redb's default, spelled out because the ledger's contract depends on it: the block
        // is on disk when commit returns.
        tx.set_durability(Durability::Immediate).map_err(backend)?;
        {
            let mut table = tx.open_table(TABLE).map_err(backend)?;
            for (k, v) in batch.iter() {
                match v {
                    Some(v) => {
                        table.insert(k, v).map_err(backend)?;
                    }
                    None => {
                        table.remove(k).map_err(backend)?;
                    }
                }
            }
        }
        // Dropping `tx` on an error above aborts it: nothing of the batch is written.
        tx.commit().map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{dev_key, public_key, Call, GenesisConfig, Ledger, MemStore, TxBody, UNITS_PER_TOKEN};

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("agora-node-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn transfers(chain: &str, nonce: u64) -> Vec<ledger::SignedTx> {
        let a = dev_key("alice");
        let b = public_key(&dev_key("bob"));
        vec![TxBody { sender: public_key(&a), nonce, fee: 10_000, call: Call::Transfer { to: b, amount: 5 } }
            .sign(&a, chain)]
    }

    #[test]
    fn batches_apply_in_order_and_scans_respect_prefixes() {
        let dir = temp("batch");
        let mut s = RedbStore::open(&dir.join("db")).unwrap();
        ledger::store::check_store_contract(&mut s);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The same blocks into a MemStore and a RedbStore give the same root at every height, and
    /// reopening the redb file after every block resumes at the same head.
    #[test]
    fn replay_and_restart_give_the_same_roots() {
        let dir = temp("replay");
        let path = dir.join("db");
        let genesis = GenesisConfig::dev(&["alice", "bob"], 1_000 * UNITS_PER_TOKEN);
        let chain = genesis.chain_id.clone();
        let proposer = public_key(&dev_key("alice"));
        let mut mem = Ledger::init(MemStore::new(), genesis.clone()).unwrap();
        let mut disk = Ledger::open_or_init(RedbStore::open(&path).unwrap(), genesis.clone()).unwrap();
        assert_eq!(mem.head(), disk.head());
        for h in 1..=6u64 {
            let txs = transfers(&chain, h - 1);
            mem.propose(txs.clone(), h * 1_000, proposer).unwrap();
            let a = mem.commit().unwrap();
            disk.propose(txs, h * 1_000, proposer).unwrap();
            let b = disk.commit().unwrap();
            assert_eq!(a.header.state_root, b.header.state_root, "height {h}");
            assert!(b.receipts.iter().all(|r| r.is_applied()));
            // Restart: drop the database and reopen it from the file.
            let head = disk.head();
            drop(disk);
            disk = Ledger::open_or_init(RedbStore::open(&path).unwrap(), genesis.clone()).unwrap();
            assert_eq!(disk.head(), head);
            assert_eq!(disk.head(), mem.head());
        }
        for h in 1..=6 {
            assert_eq!(disk.block(h).unwrap(), mem.block(h).unwrap());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
