//! Hashing and the Merkle trees behind the state root.
//!
//! The state root must change with every byte of state yet cost only what a block changed:
//! re-encoding 4,096 rows of 256 weights (4 MiB) every block would dominate execution. So each
//! record is hashed once when it changes (a leaf), leaves sit in fixed-shape binary Merkle trees
//! indexed by uid or by key bucket, and a block recomputes only the paths above the leaves it
//! touched: O(changed leaves x depth) hashes of 65 bytes.
//!
//! Domain separation: leaves are `H(0x00 || ...)`, inner nodes `H(0x01 || left || right)`, so a
//! leaf can never be read as an inner node. An inner node whose children are both the zero hash
//! is the zero hash itself: empty regions of a tree cost nothing and a tree's root does not
//! depend on how much empty capacity it was built with beyond its fixed depth.

use crate::types::Hash;
use sha2::{Digest, Sha256};

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Hash(h.finalize().into())
}

/// A leaf hash: `H(0x00 || tag || key || value)`. `tag` names the kind of record so equal bytes
/// in different trees never hash alike.
pub fn leaf_hash(tag: &[u8], key: &[u8], value: &[u8]) -> Hash {
    sha256(&[&[0x00], tag, key, value])
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    if *left == Hash::ZERO && *right == Hash::ZERO {
        return Hash::ZERO;
    }
    sha256(&[&[0x01], &left.0, &right.0])
}

/// A binary Merkle tree over a fixed number of leaf slots (a power of two), updated lazily:
/// `set` records a leaf and marks it dirty, `root` recomputes only the dirty paths.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// Leaf slots; a power of two.
    cap: usize,
    /// Heap layout: node k has children 2k and 2k+1, the root is node 1, leaf i is node cap + i.
    nodes: Vec<Hash>,
    dirty: Vec<usize>,
}

impl MerkleTree {
    /// A tree of at least `leaves` slots, all empty.
    pub fn new(leaves: usize) -> Self {
        let cap = leaves.max(1).next_power_of_two();
        MerkleTree { cap, nodes: vec![Hash::ZERO; 2 * cap], dirty: Vec::new() }
    }

    /// Number of leaf slots (a power of two).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets leaf `i` (out-of-range indices are a caller bug: ignored in release, caught in tests).
    pub fn set(&mut self, i: usize, leaf: Hash) {
        debug_assert!(i < self.cap, "leaf {i} outside a tree of {}", self.cap);
        if i < self.cap && self.nodes[self.cap + i] != leaf {
            self.nodes[self.cap + i] = leaf;
            self.dirty.push(self.cap + i);
        }
    }

    /// Leaf `i` (the zero hash if empty or out of range).
    pub fn leaf(&self, i: usize) -> Hash {
        self.nodes.get(self.cap + i).copied().unwrap_or(Hash::ZERO)
    }

    /// The root, after recomputing every inner node above a leaf set since the last call.
    pub fn root(&mut self) -> Hash {
        // Walk up level by level. Sorted, deduplicated indices stay sorted when halved, so one
        // sort suffices and each inner node is hashed once however many of its leaves changed.
        let mut level = std::mem::take(&mut self.dirty);
        level.sort_unstable();
        level.dedup();
        while !level.is_empty() {
            for k in level.iter_mut() {
                *k /= 2;
            }
            level.dedup();
            if level == [0] {
                break;
            }
            for &k in &level {
                self.nodes[k] = node_hash(&self.nodes[2 * k], &self.nodes[2 * k + 1]);
            }
            if level == [1] {
                break;
            }
        }
        self.nodes[1]
    }

    /// Root of a one-off tree over `leaves` (the transactions of a block).
    pub fn root_of(leaves: &[Hash]) -> Hash {
        let mut t = MerkleTree::new(leaves.len());
        for (i, l) in leaves.iter().enumerate() {
            t.set(i, *l);
        }
        t.root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_recompute(leaves: &[Hash]) -> Hash {
        let mut level: Vec<Hash> = leaves.to_vec();
        level.resize(leaves.len().max(1).next_power_of_two(), Hash::ZERO);
        while level.len() > 1 {
            level = level.chunks(2).map(|c| node_hash(&c[0], &c[1])).collect();
        }
        level[0]
    }

    #[test]
    fn incremental_root_equals_full_recompute() {
        let mut leaves: Vec<Hash> = (0..13u8).map(|i| sha256(&[&[i]])).collect();
        let mut t = MerkleTree::new(13);
        for (i, l) in leaves.iter().enumerate() {
            t.set(i, *l);
        }
        assert_eq!(t.root(), full_recompute(&leaves));
        leaves[5] = sha256(&[b"x"]);
        leaves[12] = Hash::ZERO;
        t.set(5, leaves[5]);
        t.set(12, Hash::ZERO);
        assert_eq!(t.root(), full_recompute(&leaves));
        // Unchanged tree: same root, no work.
        assert_eq!(t.root(), full_recompute(&leaves));
    }

    #[test]
    fn empty_and_single_trees() {
        assert_eq!(MerkleTree::root_of(&[]), Hash::ZERO);
        let one = sha256(&[b"a"]);
        assert_eq!(MerkleTree::root_of(&[one]), one);
        let mut t = MerkleTree::new(1);
        t.set(0, one);
        assert_eq!(t.root(), one);
    }

    #[test]
    fn order_and_content_change_the_root() {
        let a = sha256(&[b"a"]);
        let b = sha256(&[b"b"]);
        assert_ne!(MerkleTree::root_of(&[a, b]), MerkleTree::root_of(&[b, a]));
        assert_ne!(MerkleTree::root_of(&[a, b]), MerkleTree::root_of(&[a]));
    }
}
