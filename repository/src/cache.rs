//! An in-process cache of the audit tree's node hashes, so that proofs for the part of
//! the log auditors look at are served without a store round trip.
//!
//! Nodes are grouped in tiles as in C2SP tlog-tiles: a tile of tile-level `t` and index
//! `k` holds the tree levels `8t..8t+7` under the 256 level-`8t` nodes `[256k, 256k+256)`
//! (510 hashes, 16 KiB). An inclusion proof touches one tile per tile-level, so a proof
//! in a 10M-entry log needs three tiles, and neighbouring entries share them. Tree nodes
//! never change once written (the log only grows), so a cached hash never goes stale:
//! the sequencer adds the nodes of each committed batch (recent entries are always hot),
//! and a proof that misses nodes reads just those in one query and adds them. Tiles are
//! evicted least-recently-used within a byte budget.
//!
//! Misses read single nodes, not whole tiles: on SQLite at 10M entries, reading a proof's
//! three tiles (about 1,300 rows) took ~2 ms against ~0.17 ms for its 24 nodes.

use std::sync::Mutex;

use hashlink::LruCache;
use paotui_certs::tlog::{Hash, NodeId};

const TILE_HEIGHT: u8 = 8;
const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Hashes in a full tile: 256 + 128 + … + 2.
const TILE_NODES: usize = 2 * TILE_WIDTH as usize - 2;
const TILE_BYTES: usize = TILE_NODES * 32 + TILE_NODES.div_ceil(8) + 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TileId {
    level: u8,
    index: u64,
}

/// Where node `id` lives: its tile and its slot in the tile.
fn locate(id: NodeId) -> (TileId, usize) {
    let h = id.level % TILE_HEIGHT;
    let width = TILE_WIDTH >> h;
    // Slots: the 256 nodes of relative level 0, then the 128 of level 1, …
    let first_slot = TILE_NODES + 2 - ((TILE_NODES + 2) >> h);
    let tile = TileId {
        level: id.level / TILE_HEIGHT,
        index: id.index / width,
    };
    // `index % width` < 256, so the cast is lossless.
    (tile, first_slot + (id.index % width) as usize)
}

struct Tile {
    hashes: Box<[Hash]>,
    present: [u64; TILE_NODES.div_ceil(64)],
}

impl Tile {
    fn new() -> Tile {
        Tile {
            hashes: vec![[0u8; 32]; TILE_NODES].into_boxed_slice(),
            present: [0; TILE_NODES.div_ceil(64)],
        }
    }

    fn get(&self, slot: usize) -> Option<&Hash> {
        (self.present[slot / 64] >> (slot % 64) & 1 == 1).then(|| &self.hashes[slot])
    }

    fn set(&mut self, slot: usize, hash: &Hash) {
        self.hashes[slot] = *hash;
        self.present[slot / 64] |= 1 << (slot % 64);
    }
}

/// The tree-node cache. Shared by the sequencer (writes) and proof readers.
pub(crate) struct TreeCache {
    tiles: Mutex<LruCache<TileId, Tile>>,
}

impl TreeCache {
    /// A cache holding at most `bytes` of tiles (at least a few tiles, so one proof fits).
    pub(crate) fn new(bytes: usize) -> TreeCache {
        let capacity = (bytes / TILE_BYTES).max(8);
        TreeCache {
            tiles: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// How many of the newest leaves to read in at start-up: their tiles fill about half
    /// the cache, leaving room for proofs of older entries.
    pub(crate) fn preload_leaves(&self) -> u64 {
        let capacity = self.tiles.lock().map_or(0, |t| t.capacity());
        // Each bottom tile holds 256 leaves; the tiles above add under 1%.
        (capacity as u64 / 2) * TILE_WIDTH
    }

    /// Adds stored (committed) nodes.
    pub(crate) fn insert(&self, nodes: &[(NodeId, Hash)]) {
        let Ok(mut tiles) = self.tiles.lock() else {
            return;
        };
        for (id, hash) in nodes {
            let (tile, slot) = locate(*id);
            if let Some(t) = tiles.get_mut(&tile) {
                t.set(slot, hash);
            } else {
                let mut t = Tile::new();
                t.set(slot, hash);
                tiles.insert(tile, t);
            }
        }
    }

    /// The cached hash of each of `ids` (`None`: not cached).
    pub(crate) fn lookup(&self, ids: &[NodeId]) -> Vec<Option<Hash>> {
        let Ok(mut tiles) = self.tiles.lock() else {
            // A poisoned lock only means a panic elsewhere; read everything from the store.
            return vec![None; ids.len()];
        };
        ids.iter()
            .map(|id| {
                let (tile, slot) = locate(*id);
                tiles.get(&tile).and_then(|t| t.get(slot)).copied()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(level: u8, index: u64) -> NodeId {
        NodeId { level, index }
    }

    /// The node ranges a tile covers: `(tree level, from, to)` per level.
    fn node_ranges(t: TileId) -> Vec<(u8, u64, u64)> {
        (0..TILE_HEIGHT)
            .map(|h| {
                let width = TILE_WIDTH >> h;
                (
                    t.level * TILE_HEIGHT + h,
                    t.index * width,
                    (t.index + 1) * width,
                )
            })
            .collect()
    }

    #[test]
    fn every_node_of_a_tile_has_its_own_slot_and_the_tile_covers_exactly_them() {
        for t in [TileId { level: 0, index: 0 }, TileId { level: 1, index: 3 }] {
            let mut slots = Vec::new();
            for (level, from, to) in node_ranges(t) {
                for i in from..to {
                    let (tile, slot) = locate(id(level, i));
                    assert_eq!(tile, t);
                    slots.push(slot);
                }
            }
            slots.sort_unstable();
            assert_eq!(slots, (0..TILE_NODES).collect::<Vec<_>>());
        }
        // Level 8 starts the next tile-level.
        assert_eq!(locate(id(8, 5)).0, TileId { level: 1, index: 0 });
        assert_eq!(locate(id(7, 5)).0, TileId { level: 0, index: 2 });
    }

    #[test]
    fn a_lookup_answers_what_is_cached_and_nothing_else() {
        let cache = TreeCache::new(0);
        let a = (id(0, 1), [1u8; 32]);
        let b = (id(9, 2), [2u8; 32]);
        cache.insert(&[a]);
        assert_eq!(cache.lookup(&[a.0, b.0]), vec![Some(a.1), None]);
        cache.insert(&[b]);
        assert_eq!(cache.lookup(&[b.0, a.0]), vec![Some(b.1), Some(a.1)]);
        // A node beside a cached one is still a miss.
        assert_eq!(cache.lookup(&[id(0, 2)]), vec![None]);
    }

    #[test]
    fn the_least_recently_used_tile_is_evicted() {
        let cache = TreeCache::new(0); // the floor: 8 tiles
        for k in 0..8 {
            cache.insert(&[(id(0, k * 256), [k as u8; 32])]);
        }
        // Touch tile 0, then add a ninth: tile 1 goes.
        assert!(cache.lookup(&[id(0, 0)])[0].is_some());
        cache.insert(&[(id(0, 8 * 256), [8; 32])]);
        assert!(cache.lookup(&[id(0, 0)])[0].is_some());
        assert!(cache.lookup(&[id(0, 256)])[0].is_none());
        assert!(cache.lookup(&[id(0, 2 * 256)])[0].is_some());
    }
}
