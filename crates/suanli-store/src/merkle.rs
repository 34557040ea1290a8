//! The audit log as a Merkle tree in the manner of RFC 9162 (Certificate Transparency 2.0), so a
//! signed head (the tree's size and root) commits to every entry before it: a database cut
//! short, or rewritten and re-hashed, no longer has the root a published head names, and anyone
//! holding one entry can be shown that it is in the tree with a logarithmic inclusion proof.
//!
//! Leaf `i` (0-based) is the entry with sequence `i + 1`; its leaf hash is
//! `SHA-256(0x00 ‖ entry hash)` where the entry hash is the one its hash chain already gives. An
//! interior node is `SHA-256(0x01 ‖ left ‖ right)`; the tree over `n` leaves splits at the largest
//! power of two below `n` (RFC 9162 §2.1.1). The empty tree's root is `SHA-256()`.
//!
//! The writer keeps the root of every complete tile of [`TILE_LEAVES`] leaves (`merkle_tiles`),
//! written in the same transaction as the entry that completes it, so a root or a proof reads at
//! most one tile's leaves per level and the tile roots of the range: milliseconds at 10M entries,
//! with no tree in memory. The audit recomputes every tile from the leaves, never trusting them.

use sha2::{Digest, Sha256};
use suanli_ledger::Hash;

use crate::StoreError;

/// Leaves per stored tile.
pub const TILE_LEAVES: u64 = 256;

pub fn leaf_hash(entry_hash: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry_hash);
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The root of a complete subtree whose nodes (leaf hashes or subtree roots) are `level`, a
/// power of two of them.
pub fn perfect_root(level: &[Hash]) -> Hash {
    debug_assert!(level.len().is_power_of_two());
    let mut level = level.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
    }
    level[0]
}

/// Where the tree's leaves and tile roots are read from.
pub trait TreeSource {
    /// The leaf hashes of leaves `first..first + count` (0-based), all of which exist.
    fn leaf_hashes(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError>;
    /// The roots of tiles `first..first + count`, all of which are complete.
    fn tile_roots(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError>;
}

/// The root of the complete subtree of `size` leaves (a power of two) starting at `start`
/// (a multiple of `size`).
pub fn subtree(source: &mut impl TreeSource, start: u64, size: u64) -> Result<Hash, StoreError> {
    debug_assert!(size.is_power_of_two() && start.is_multiple_of(size));
    if size >= TILE_LEAVES {
        let roots = source.tile_roots(start / TILE_LEAVES, size / TILE_LEAVES)?;
        return Ok(perfect_root(&roots));
    }
    Ok(perfect_root(&source.leaf_hashes(start, size)?))
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start : start + n]) for any `n ≥ 1`, `start` aligned as the RFC's recursion leaves it.
fn range_root(source: &mut impl TreeSource, start: u64, n: u64) -> Result<Hash, StoreError> {
    if n.is_power_of_two() {
        return subtree(source, start, n);
    }
    let k = split(n);
    let left = subtree(source, start, k)?;
    let right = range_root(source, start + k, n - k)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree over the first `n` leaves.
pub fn root(source: &mut impl TreeSource, n: u64) -> Result<Hash, StoreError> {
    if n == 0 {
        return Ok(empty_root());
    }
    range_root(source, 0, n)
}

/// The audit path of leaf `index` in the tree over the first `n` leaves (RFC 9162 §2.1.3.1),
/// from the leaf's sibling up.
pub fn inclusion_proof(source: &mut impl TreeSource, index: u64, n: u64) -> Result<Vec<Hash>, StoreError> {
    if index >= n {
        return Err(StoreError::Malformed(format!("leaf {index} is not in a tree of {n}")));
    }
    let mut path = Vec::new();
    let (mut start, mut size, mut m) = (0, n, index);
    // Walk down, collecting the other side at each split; the path is read bottom-up.
    let mut siblings = Vec::new();
    while size > 1 {
        let k = split(size);
        if m < k {
            siblings.push(range_root(source, start + k, size - k)?);
            size = k;
        } else {
            siblings.push(subtree(source, start, k)?);
            start += k;
            m -= k;
            size -= k;
        }
    }
    path.extend(siblings.into_iter().rev());
    Ok(path)
}

/// Whether `path` proves leaf `index` (with `leaf` as its leaf hash) is in the tree of `n`
/// leaves with `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, n: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= n {
        return false;
    }
    let (mut f_n, mut s_n) = (index, n - 1);
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// The right edge of a tree being built leaf by leaf: the roots of its complete subtrees, from
/// the largest down. Memory is logarithmic in the size; the audit streams the log through it.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    /// (height, root) of each complete subtree, heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    /// Appends a leaf (its leaf hash); answers the roots of the complete subtrees of height 8
    /// (tiles) this leaf completed, with their tile numbers.
    pub fn push(&mut self, leaf: Hash) -> Option<(u64, Hash)> {
        let mut node = (0u32, leaf);
        let mut tile = None;
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, node_hash(&left, &node.1));
            if 1u64 << node.0 == TILE_LEAVES {
                tile = Some(((self.size + 1) / TILE_LEAVES - 1, node.1));
            }
        }
        self.stack.push(node);
        self.size += 1;
        tile
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree over every leaf pushed.
    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, mut root)) = nodes.next() else { return empty_root() };
        for (_, left) in nodes {
            root = node_hash(left, &root);
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaves in memory; tiles computed from them.
    struct Memory(Vec<Hash>);

    impl TreeSource for Memory {
        fn leaf_hashes(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
            Ok(self.0[first as usize..(first + count) as usize].to_vec())
        }
        fn tile_roots(&mut self, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
            Ok((first..first + count)
                .map(|t| perfect_root(&self.0[(t * TILE_LEAVES) as usize..((t + 1) * TILE_LEAVES) as usize]))
                .collect())
        }
    }

    /// MTH straight from RFC 9162's definition.
    fn reference(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference(&leaves[..k]), &reference(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&Sha256::digest(i.to_le_bytes()).into())).collect()
    }

    #[test]
    fn roots_frontier_and_proofs_agree_with_the_definition() {
        let all = leaves(1_100);
        let mut frontier = Frontier::default();
        let mut source = Memory(all.clone());
        for n in 1..=all.len() as u64 {
            frontier.push(all[n as usize - 1]);
            let expected = reference(&all[..n as usize]);
            assert_eq!(frontier.root(), expected, "frontier at {n}");
            if n % 97 == 0 || n < 20 || n == 256 || n == 513 || n == 1_100 {
                assert_eq!(root(&mut source, n).unwrap(), expected, "root at {n}");
                for index in [0, n / 3, n / 2, n - 1] {
                    let path = inclusion_proof(&mut source, index, n).unwrap();
                    assert!(verify_inclusion(index, n, &all[index as usize], &path, &expected), "{index} in {n}");
                    assert!(
                        !verify_inclusion(index, n, &all[(index as usize + 1) % n as usize], &path, &expected)
                            || n == 1
                    );
                }
            }
        }
        assert_eq!(root(&mut source, 0).unwrap(), empty_root());
    }

    #[test]
    fn frontier_reports_each_tile_as_it_completes() {
        let all = leaves(600);
        let mut frontier = Frontier::default();
        let tiles: Vec<(u64, Hash)> = all.iter().filter_map(|leaf| frontier.push(*leaf)).collect();
        assert_eq!(tiles.len(), 2);
        assert_eq!(tiles[0], (0, perfect_root(&all[..256])));
        assert_eq!(tiles[1], (1, perfect_root(&all[256..512])));
    }
}
