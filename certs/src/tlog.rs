//! Transparency-log primitives: everything a third party needs to check paotui's audit
//! log with nothing but a checkpoint and the gateway's public key.
//!
//! - Merkle tree hashes per RFC 6962 §2.1 / RFC 9162 §2.1: leaf `SHA-256(0x00 ‖ entry)`,
//!   node `SHA-256(0x01 ‖ left ‖ right)`, the empty tree `SHA-256("")`.
//! - Inclusion and consistency proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2).
//! - Which subtrees a proof is made of (RFC 9162 §2.1.3.1 and §2.1.4.1), so a log that
//!   stores perfect subtree hashes can answer a proof in O(log n) reads.
//! - Checkpoints in the C2SP `tlog-checkpoint` text format, signed as C2SP `signed-note`
//!   with Ed25519 (key id = first 4 bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`).
//!
//! For client implementers: this module depends only on `ring` (SHA-256, Ed25519) and
//! `base64`. To check that entry `i` is in the log:
//! 1. fetch the checkpoint, open it with [`NoteVerifier::open`] (verifier key
//!    `<origin>+<key id hex>+<base64(0x01 ‖ public key)>`), parse it with
//!    [`Checkpoint::parse`];
//! 2. fetch the entry's canonical bytes and hash them with [`leaf_hash`];
//! 3. fetch the inclusion proof for `(i, checkpoint.size)` and call [`verify_inclusion`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest::{Context, SHA256};
use ring::signature::{ED25519, UnparsedPublicKey};

use crate::{Error, GatewayKey, Result};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The hash of a leaf: `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    sha256(&[&[0x00], entry])
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The Merkle tree hash of `leaves` (already leaf-hashed), by the RFC's recursive
/// definition. Linear time; for tests and small trees.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

fn fail(msg: impl Into<String>) -> Error {
    Error::Signature(msg.into())
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<()> {
    if root_from_inclusion(index, size, leaf, proof)? == *root {
        Ok(())
    } else {
        Err(fail(format!(
            "inclusion proof for index {index} in tree size {size} does not lead to the root"
        )))
    }
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Result<Hash> {
    if index >= size {
        return Err(fail(format!("index {index} is outside tree size {size}")));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(fail("inclusion proof is too long"));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(fail("inclusion proof is too short"));
    }
    Ok(r)
}

/// Checks that the tree of `size1` leaves with root `root1` is a prefix of the tree of
/// `size2` leaves with root `root2` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<()> {
    if size1 > size2 {
        return Err(fail(format!(
            "tree size {size1} cannot precede tree size {size2}"
        )));
    }
    if size1 == size2 {
        return if proof.is_empty() && root1 == root2 {
            Ok(())
        } else {
            Err(fail("equal tree sizes need equal roots and an empty proof"))
        };
    }
    if size1 == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(fail("a proof from the empty tree must be empty"))
        };
    }
    let bad = || {
        fail(format!(
            "consistency proof {size1} → {size2} does not verify"
        ))
    };
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(*root1);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(bad());
    };
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(bad());
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode == 0 && fr == *root1 && sr == *root2 {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A perfect subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    /// The first leaf this subtree covers.
    pub fn first_leaf(self) -> u64 {
        self.index << self.level
    }
}

/// The perfect subtrees `[start, end)` splits into, left to right (largest first for
/// the ranges proofs use). The range's hash is their right fold with [`node_hash`].
pub fn perfect_subtrees(start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut a = start;
    while a < end {
        // The largest aligned power of two that starts at `a` and fits before `end`.
        let align = if a == 0 { 63 } else { a.trailing_zeros() };
        let fit = 63 - (end - a).leading_zeros();
        let level = align.min(fit) as u8;
        out.push(NodeId {
            level,
            index: a >> level,
        });
        a += 1u64 << level;
    }
    out
}

/// Folds the hashes of a range's perfect subtrees (as [`perfect_subtrees`] lists them)
/// into the range's Merkle tree hash.
pub fn fold_range(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The leaf ranges whose hashes make up the inclusion proof of `index` in a tree of
/// `size` leaves, in proof order (RFC 9162 §2.1.3.1).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    fn path(m: u64, start: u64, n: u64, out: &mut Vec<(u64, u64)>) {
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(m, start, k, out);
            out.push((start + k, start + n));
        } else {
            path(m - k, start + k, n - k, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

/// The leaf ranges whose hashes make up the consistency proof from `size1` to `size2`,
/// in proof order (RFC 9162 §2.1.4.1). Empty when `size1` is 0 or equals `size2`.
pub fn consistency_ranges(size1: u64, size2: u64) -> Vec<(u64, u64)> {
    fn sub(m: u64, start: u64, n: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
        if m == n {
            if !whole {
                out.push((start, start + n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, start, k, whole, out);
            out.push((start + k, start + n));
        } else {
            sub(m - k, start + k, n - k, false, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if 0 < size1 && size1 < size2 {
        sub(size1, 0, size2, true, &mut out);
    }
    out
}

/// The right edge of a tree: the hashes of the perfect subtrees of its leaves, largest
/// first (a "compact range" from 0). Appending is amortised O(1); the root is O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The node ids a frontier of `size` leaves is made of, largest first.
    pub fn ids(size: u64) -> Vec<NodeId> {
        perfect_subtrees(0, size)
    }

    /// Rebuilds a frontier from the hashes of [`Frontier::ids`]`(size)`.
    pub fn from_hashes(size: u64, hashes: &[Hash]) -> Result<Frontier> {
        let ids = Self::ids(size);
        if ids.len() != hashes.len() {
            return Err(Error::Invalid(format!(
                "a tree of {size} leaves has {} edge subtrees, {} hashes given",
                ids.len(),
                hashes.len()
            )));
        }
        Ok(Frontier {
            size,
            nodes: ids
                .iter()
                .map(|i| i.level)
                .zip(hashes.iter().copied())
                .collect(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash, calling `new_node` for it and every subtree it completes.
    pub fn push(&mut self, leaf: Hash, mut new_node: impl FnMut(NodeId, &Hash)) {
        new_node(
            NodeId {
                level: 0,
                index: self.size,
            },
            &leaf,
        );
        self.nodes.push((0, leaf));
        self.size += 1;
        while let [.., (la, a), (lb, b)] = self.nodes[..] {
            if la != lb {
                break;
            }
            let h = node_hash(&a, &b);
            let level = la + 1;
            self.nodes.truncate(self.nodes.len() - 2);
            self.nodes.push((level, h));
            new_node(
                NodeId {
                    level,
                    index: (self.size - 1) >> level,
                },
                &h,
            );
        }
    }

    /// The Merkle tree hash of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let hashes: Vec<Hash> = self.nodes.iter().map(|(_, h)| *h).collect();
        fold_range(&hashes).unwrap_or_else(empty_root)
    }
}

/// A C2SP `tlog-checkpoint` body: origin, tree size, root hash, optional extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: one line each, every line ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body (the text of an opened note).
    pub fn parse(text: &str) -> Result<Checkpoint> {
        let bad = |why: &str| Error::Invalid(format!("malformed checkpoint: {why}"));
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("it must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty());
        let origin = origin.ok_or_else(|| bad("empty origin line"))?;
        let size = lines.next().ok_or_else(|| bad("no tree size line"))?;
        // Decimal without leading zeros or sign, as the spec requires.
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("tree size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("tree size out of range"))?;
        let root = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root = STANDARD
            .decode(root)
            .map_err(|_| bad("root hash is not base64"))?;
        let root: Hash = root
            .try_into()
            .map_err(|_| bad("root hash is not 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

const EM_DASH_PREFIX: &str = "\u{2014} ";
const ALG_ED25519: u8 = 0x01;

/// The signed-note key id of an Ed25519 key.
pub fn note_key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let h = sha256(&[name.as_bytes(), b"\n", &[ALG_ED25519], public_key]);
    [h[0], h[1], h[2], h[3]]
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

/// Signs notes with the gateway key under a key name (for checkpoints: the origin).
#[derive(Debug)]
pub struct NoteSigner<'k> {
    name: String,
    key: &'k GatewayKey,
    id: [u8; 4],
}

impl<'k> NoteSigner<'k> {
    pub fn new(name: &str, key: &'k GatewayKey) -> Result<Self> {
        if !valid_key_name(name) {
            return Err(Error::Invalid(format!(
                "note key name {name:?} must be non-empty, without spaces or '+'"
            )));
        }
        Ok(NoteSigner {
            id: note_key_id(name, key.public_key()),
            name: name.to_owned(),
            key,
        })
    }

    /// The verifier key string: `<name>+<key id hex>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.public_key());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            STANDARD.encode(raw)
        )
    }

    /// The signed note: `text`, a blank line, one signature line.
    pub fn sign(&self, text: &str) -> Result<String> {
        check_text(text)?;
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&self.key.sign(text.as_bytes()));
        Ok(format!(
            "{text}\n{EM_DASH_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

fn check_text(text: &str) -> Result<()> {
    if text.is_empty() || !text.ends_with('\n') || text.contains("\n\n") {
        return Err(Error::Invalid(
            "note text must be non-empty lines, each ending in a newline".into(),
        ));
    }
    Ok(())
}

/// Verifies signed notes for one Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub id: [u8; 4],
    pub public_key: [u8; 32],
}

impl NoteVerifier {
    /// Parses a verifier key `<name>+<key id hex>+<base64(0x01 ‖ public key)>`, checking
    /// that the key id matches the name and key.
    pub fn parse(vkey: &str) -> Result<NoteVerifier> {
        let bad = |why: &str| Error::Key(format!("verifier key {vkey:?}: {why}"));
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+keyid+key"));
        };
        if !valid_key_name(name) {
            return Err(bad("bad key name"));
        }
        let id: [u8; 4] = hex::decode(id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("key id is not 8 hex digits"))?;
        let raw = STANDARD.decode(key).map_err(|_| bad("key is not base64"))?;
        let Some((&ALG_ED25519, public)) = raw.split_first() else {
            return Err(bad("not an Ed25519 (type 0x01) key"));
        };
        let public_key: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("Ed25519 key is not 32 bytes"))?;
        if note_key_id(name, &public_key) != id {
            return Err(bad("key id does not match name and key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            id,
            public_key,
        })
    }

    /// The verifier for a raw Ed25519 public key under `name` (e.g. from the gateway's
    /// JWK at `/v1/keys` and the log's origin).
    pub fn from_public_key(name: &str, public_key: &[u8]) -> Result<NoteVerifier> {
        if !valid_key_name(name) {
            return Err(Error::Key(format!("bad note key name {name:?}")));
        }
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| Error::Key("Ed25519 key is not 32 bytes".into()))?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            id: note_key_id(name, &public_key),
            public_key,
        })
    }

    /// The verifier for `key` under `name`.
    pub fn for_key(name: &str, key: &GatewayKey) -> Result<NoteVerifier> {
        NoteVerifier::parse(&NoteSigner::new(name, key)?.verifier_key())
    }

    /// Opens a signed note: returns its text if a signature line by this key verifies.
    /// Signatures by other keys are ignored, as the spec requires.
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str> {
        let malformed = || Error::Invalid("malformed signed note".into());
        let split = note.rfind("\n\n").ok_or_else(malformed)?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        check_text(text)?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(malformed());
        }
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line.strip_prefix(EM_DASH_PREFIX).ok_or_else(malformed)?;
            let (name, b64) = rest.split_once(' ').ok_or_else(malformed)?;
            let blob = STANDARD.decode(b64).map_err(|_| malformed())?;
            if blob.len() < 4 {
                return Err(malformed());
            }
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            return UnparsedPublicKey::new(&ED25519, &self.public_key)
                .verify(text.as_bytes(), &blob[4..])
                .map(|()| text)
                .map_err(|_| fail(format!("note signature by {} does not verify", self.name)));
        }
        Err(fail(format!("note carries no signature by {}", self.name)))
    }
}

/// Parses a base64 hash (the encoding proofs use on the wire).
pub fn hash_from_base64(s: &str) -> Result<Hash> {
    STANDARD
        .decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::Invalid(format!("{s:?} is not a base64 SHA-256 hash")))
}

/// Base64 of a hash.
pub fn hash_to_base64(h: &Hash) -> String {
    STANDARD.encode(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    // Reference vectors of the certificate-transparency / transparency-dev Merkle tree
    // (github.com/transparency-dev/merkle, proof/verify_test.go: `leaves`, `roots`,
    // `inclusionProofs`, `consistencyProofs`; the same set as the original C++
    // certificate-transparency merkle_tree_test.cc).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    // (leaf index, tree size, proof); the Go file numbers leaves from 1.
    const INCLUSION: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn kat_leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    /// What a log storing perfect subtrees answers: each range from its subtrees.
    fn resolve(leaves: &[Hash], ranges: &[(u64, u64)]) -> Vec<Hash> {
        ranges
            .iter()
            .map(|&(a, b)| {
                let parts: Vec<Hash> = perfect_subtrees(a, b)
                    .iter()
                    .map(|n| {
                        let s = n.first_leaf() as usize;
                        root_of(&leaves[s..s + (1 << n.level)])
                    })
                    .collect();
                fold_range(&parts).unwrap()
            })
            .collect()
    }

    #[test]
    fn reference_roots_for_0_to_8_leaves() {
        let leaves = kat_leaves();
        assert_eq!(
            root_of(&[]),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(Frontier::default().root(), empty_root());
        let mut f = Frontier::default();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(root_of(&leaves[..=n]), h(want), "root of {} leaves", n + 1);
            f.push(leaves[n], |_, _| {});
            assert_eq!(f.root(), h(want), "frontier root of {} leaves", n + 1);
        }
    }

    #[test]
    fn reference_inclusion_proofs() {
        let leaves = kat_leaves();
        for (index, size, proof) in INCLUSION {
            let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
            let got = resolve(&leaves, &inclusion_ranges(index, size));
            assert_eq!(got, want, "proof for {index} in {size}");
            let root = h(ROOTS[size as usize - 1]);
            let leaf = leaves[index as usize];
            verify_inclusion(index, size, &leaf, &want, &root).unwrap();
            // Corruptions from the same test file: wrong index, size, leaf, root, extra
            // or missing components.
            assert!(verify_inclusion(index + 1, size, &leaf, &want, &root).is_err());
            assert!(verify_inclusion(index ^ 2, size, &leaf, &want, &root).is_err());
            assert!(verify_inclusion(index, size * 2, &leaf, &want, &root).is_err());
            assert!(verify_inclusion(index, size / 2, &leaf, &want, &root).is_err());
            assert!(verify_inclusion(index, size, &empty_root(), &want, &root).is_err());
            assert!(verify_inclusion(index, size, &leaf, &want, &empty_root()).is_err());
            let mut longer = want.clone();
            longer.push(root);
            assert!(verify_inclusion(index, size, &leaf, &longer, &root).is_err());
            assert!(verify_inclusion(index, size, &leaf, &want[1..], &root).is_err());
        }
        // The single-leaf tree: the root is the leaf, the proof empty.
        verify_inclusion(0, 1, &leaves[0], &[], &leaves[0]).unwrap();
        assert!(verify_inclusion(0, 0, &leaves[0], &[], &leaves[0]).is_err());
        assert!(verify_inclusion(1, 1, &leaves[0], &[], &leaves[0]).is_err());
    }

    #[test]
    fn reference_consistency_proofs() {
        let leaves = kat_leaves();
        for (m, n, proof) in CONSISTENCY {
            let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
            assert_eq!(
                resolve(&leaves, &consistency_ranges(m, n)),
                want,
                "{m} → {n}"
            );
            let (r1, r2) = (h(ROOTS[m as usize - 1]), h(ROOTS[n as usize - 1]));
            verify_consistency(m, n, &want, &r1, &r2).unwrap();
            assert!(verify_consistency(m, n, &want, &r2, &r1).is_err());
            assert!(verify_consistency(m + 1, n, &want, &r1, &r2).is_err());
            assert!(verify_consistency(m, n * 2, &want, &r1, &r2).is_err());
            assert!(verify_consistency(m, n, &[], &r1, &r2).is_err());
            assert!(verify_consistency(m, n, &want[..want.len() - 1], &r1, &r2).is_err());
        }
        let r = h(ROOTS[0]);
        verify_consistency(1, 1, &[], &r, &r).unwrap();
        verify_consistency(0, 5, &[], &empty_root(), &r).unwrap();
        assert!(verify_consistency(2, 1, &[], &r, &r).is_err());
    }

    // golang.org/x/mod/sumdb/note (note.go package documentation and note_test.go
    // TestSign): the PeterNeumann key, text and signed note. Ed25519 is deterministic,
    // so signing must reproduce the published signature byte for byte.
    const PETER_SKEY: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                              then you don't know what your problem is.\n";
    const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
        then you don't know what your problem is.\n\n\u{2014} PeterNeumann \
        x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn signed_note_known_answer() {
        let raw = STANDARD.decode(PETER_SKEY).unwrap();
        assert_eq!(raw[0], 1);
        let key = GatewayKey::from_seed(&raw[1..]).unwrap();
        let signer = NoteSigner::new("PeterNeumann", &key).unwrap();
        assert_eq!(signer.verifier_key(), PETER_VKEY);
        assert_eq!(signer.sign(PETER_TEXT).unwrap(), PETER_NOTE);
        let v = NoteVerifier::parse(PETER_VKEY).unwrap();
        assert_eq!(v.open(PETER_NOTE).unwrap(), PETER_TEXT);
        let tampered = PETER_NOTE.replace("cryptography", "cryptographY");
        assert!(v.open(&tampered).is_err());
        // A wrong key id in the verifier key is refused outright.
        assert!(NoteVerifier::parse(&PETER_VKEY.replace("c74f20a3", "c74f20a4")).is_err());
    }

    // C2SP signed-note specification, "Example": the example.com/foo key and note.
    #[test]
    fn c2sp_signed_note_example() {
        let v = NoteVerifier::parse(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap();
        let note = "This is an example message.\n\n\u{2014} example.com/foo \
            Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        assert_eq!(v.open(note).unwrap(), "This is an example message.\n");
        // Signed by someone else only: not opened.
        assert!(NoteVerifier::parse(PETER_VKEY).unwrap().open(note).is_err());
    }

    // C2SP tlog-checkpoint specification, the example checkpoint body.
    #[test]
    fn c2sp_checkpoint_example() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let c = Checkpoint::parse(text).unwrap();
        assert_eq!(c.origin, "example.com/behind-the-sofa");
        assert_eq!(c.size, 20852163);
        assert_eq!(c.to_text(), text);
        for bad in [
            "example.com\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
            "example.com\n020852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "example.com\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "example.com\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n",
            "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn tree(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    fn flip(h: &mut Hash, bit: usize) {
        h[(bit / 8) % 32] ^= 1 << (bit % 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn inclusion_proofs_verify_and_any_flipped_bit_fails(
            n in 1usize..300, i in any::<prop::sample::Index>(), bit in 0usize..256, which in any::<prop::sample::Index>()
        ) {
            let leaves = tree(n);
            let index = i.index(n) as u64;
            let root = root_of(&leaves);
            let mut f = Frontier::default();
            for l in &leaves { f.push(*l, |_, _| {}); }
            prop_assert_eq!(f.root(), root);
            let proof = resolve(&leaves, &inclusion_ranges(index, n as u64));
            let leaf = leaves[index as usize];
            prop_assert!(verify_inclusion(index, n as u64, &leaf, &proof, &root).is_ok());
            let mut l2 = leaf; flip(&mut l2, bit);
            prop_assert!(verify_inclusion(index, n as u64, &l2, &proof, &root).is_err());
            let mut r2 = root; flip(&mut r2, bit);
            prop_assert!(verify_inclusion(index, n as u64, &leaf, &proof, &r2).is_err());
            if !proof.is_empty() {
                let mut p2 = proof.clone();
                let k = which.index(p2.len());
                flip(&mut p2[k], bit);
                prop_assert!(verify_inclusion(index, n as u64, &leaf, &p2, &root).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify_and_any_flipped_bit_fails(
            n in 2usize..300, m in any::<prop::sample::Index>(), bit in 0usize..256, which in any::<prop::sample::Index>()
        ) {
            let leaves = tree(n);
            let m = 1 + m.index(n - 1) as u64; // 1 ≤ m < n
            let (r1, r2) = (root_of(&leaves[..m as usize]), root_of(&leaves));
            let proof = resolve(&leaves, &consistency_ranges(m, n as u64));
            prop_assert!(verify_consistency(m, n as u64, &proof, &r1, &r2).is_ok());
            let mut b1 = r1; flip(&mut b1, bit);
            prop_assert!(verify_consistency(m, n as u64, &proof, &b1, &r2).is_err());
            let mut b2 = r2; flip(&mut b2, bit);
            prop_assert!(verify_consistency(m, n as u64, &proof, &r1, &b2).is_err());
            let mut p2 = proof.clone();
            let k = which.index(p2.len());
            flip(&mut p2[k], bit);
            prop_assert!(verify_consistency(m, n as u64, &p2, &r1, &r2).is_err());
        }

        #[test]
        fn frontier_reloads_from_its_edge(n in 0u64..2000) {
            let leaves = tree(n as usize);
            let mut f = Frontier::default();
            let mut stored = std::collections::HashMap::new();
            for l in &leaves { f.push(*l, |id, h| { stored.insert(id, *h); }); }
            let edge: Vec<Hash> = Frontier::ids(n).iter().map(|id| stored[id]).collect();
            let g = Frontier::from_hashes(n, &edge).unwrap();
            prop_assert_eq!(&g, &f);
            prop_assert_eq!(g.root(), root_of(&leaves));
        }

        #[test]
        fn any_flipped_bit_in_a_signed_checkpoint_fails(bit in 0usize..2000) {
            let (key, _) = GatewayKey::generate().unwrap();
            let signer = NoteSigner::new("paotui.test/audit", &key).unwrap();
            let v = NoteVerifier::parse(&signer.verifier_key()).unwrap();
            let cp = Checkpoint { origin: "paotui.test/audit".into(), size: 42, root: leaf_hash(b"x"), extensions: vec![] };
            let note = signer.sign(&cp.to_text()).unwrap();
            prop_assert_eq!(Checkpoint::parse(v.open(&note).unwrap()).unwrap(), cp);
            let mut bytes = note.into_bytes();
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            // A flipped bit either breaks UTF-8, the note's shape, or the signature.
            if let Ok(s) = String::from_utf8(bytes) {
                prop_assert!(v.open(&s).and_then(Checkpoint::parse).is_err());
            }
        }
    }
}
