//! The BEP 52 (v2) parts of a torrent: the file tree, the piece layers and
//! the SHA-256 merkle trees they come from.
//!
//! v2 hashes each file on its own: the SHA-256 of every 16 KiB block is a
//! leaf of a binary tree padded with zero leaves to a power of two, whose
//! root (`pieces root`) is in the info dictionary. The hashes one level per
//! piece up (the file's *piece layer*) travel beside the info dictionary in
//! the `.torrent`, outside what the info-hash covers, so they are checked
//! against the roots here before anything trusts them. A file of one piece
//! or less needs no layer: its root checks it.
//!
//! Files start on piece boundaries. The rest of btt sees a v2 torrent as a
//! v1 one with padding after each file, which is what a hybrid torrent
//! spells out with BEP 47 pad files (and how libtorrent lays them out), so
//! the store, the fs and the picker need nothing new; only the check of a
//! piece differs ([`V2::piece_ok`]). Pure: no I/O.

use super::{check_component, MetainfoError, Result};
use bendy::value::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A leaf covers this many bytes.
pub const BLOCK: u64 = 16 * 1024;

pub type Hash = [u8; 32];

pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

fn pair(a: &Hash, b: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// Every level of the tree over `bottom` (a power of two of nodes), bottom
/// first, up to the root.
fn levels(bottom: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut levels = vec![bottom];
    while levels.last().expect("a level").len() > 1 {
        let up = levels
            .last()
            .expect("a level")
            .chunks(2)
            .map(|c| pair(&c[0], &c[1]))
            .collect();
        levels.push(up);
    }
    levels
}

/// The root of a subtree of `n` zero leaves (`n` a power of two).
pub fn pad_root(n: usize) -> Hash {
    let mut h = [0u8; 32];
    let mut w = 1;
    while w < n {
        h = pair(&h, &h);
        w *= 2;
    }
    h
}

/// The root of a tree over `nodes`, padded with `pad` (the root of a
/// subtree of zero leaves as tall as each node) to `width` nodes, a power
/// of two no smaller than `nodes.len()`.
pub fn root(nodes: &[Hash], width: usize, pad: Hash) -> Hash {
    debug_assert!(width.is_power_of_two() && width >= nodes.len());
    let (mut layer, mut pad, mut w) = (nodes.to_vec(), pad, width);
    if layer.is_empty() {
        layer.push(pad);
    }
    while w > 1 {
        layer = layer
            .chunks(2)
            .map(|c| pair(&c[0], c.get(1).unwrap_or(&pad)))
            .collect();
        pad = pair(&pad, &pad);
        w /= 2;
    }
    layer[0]
}

/// The merkle root of `data` (a file, or the part of one a piece covers)
/// over `width` leaves: one per started block, then zero leaves.
pub fn data_root(data: &[u8], width: usize) -> Hash {
    let leaves: Vec<Hash> = data.chunks(BLOCK as usize).map(sha256).collect();
    root(&leaves, width.max(1), [0; 32])
}

/// A file as the file tree lists it (in the tree's order: bytewise sorted
/// at every level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeFile {
    /// Its components joined by `/`.
    pub path: String,
    pub length: u64,
    /// Absent only for an empty file.
    pub root: Option<Hash>,
}

/// The files of a `file tree` dictionary.
pub fn file_tree(tree: &Value) -> Result<Vec<TreeFile>> {
    let mut out = Vec::new();
    walk(tree, &mut String::new(), &mut out)?;
    if out.is_empty() {
        return Err(MetainfoError::Invalid {
            field: "file tree",
            why: "no files".into(),
        });
    }
    Ok(out)
}

fn walk(node: &Value, path: &mut String, out: &mut Vec<TreeFile>) -> Result<()> {
    let Value::Dict(d) = node else {
        return Err(MetainfoError::WrongType("file tree"));
    };
    if let Some(leaf) = d.get(&b""[..]) {
        if d.len() != 1 || path.is_empty() {
            return Err(MetainfoError::Invalid {
                field: "file tree",
                why: format!("{path:?} is both a file and a directory"),
            });
        }
        out.push(leaf_file(leaf, path)?);
        return Ok(());
    }
    if d.is_empty() {
        return Err(MetainfoError::Invalid {
            field: "file tree",
            why: format!("empty directory {path:?}"),
        });
    }
    for (k, v) in d {
        let c = std::str::from_utf8(k).map_err(|_| MetainfoError::Invalid {
            field: "file tree",
            why: "a name is not UTF-8".into(),
        })?;
        check_component(c)?;
        let at = path.len();
        if at > 0 {
            path.push('/');
        }
        path.push_str(c);
        walk(v, path, out)?;
        path.truncate(at);
    }
    Ok(())
}

fn leaf_file(leaf: &Value, path: &str) -> Result<TreeFile> {
    let Value::Dict(l) = leaf else {
        return Err(MetainfoError::WrongType("file tree"));
    };
    let length = match l.get(&b"length"[..]) {
        Some(Value::Integer(n)) if *n >= 0 => *n as u64,
        Some(Value::Integer(_)) => {
            return Err(MetainfoError::Invalid {
                field: "file tree",
                why: format!("{path:?} has a negative length"),
            })
        }
        Some(_) => return Err(MetainfoError::WrongType("file tree length")),
        None => return Err(MetainfoError::Missing("file tree length")),
    };
    let root = match l.get(&b"pieces root"[..]) {
        Some(Value::Bytes(b)) if b.len() == 32 => Some(<Hash>::try_from(&b[..]).expect("32")),
        Some(_) => return Err(MetainfoError::WrongType("pieces root")),
        None if length == 0 => None,
        None => return Err(MetainfoError::Missing("pieces root")),
    };
    Ok(TreeFile {
        path: path.to_string(),
        length,
        root: root.filter(|_| length > 0),
    })
}

/// The layer a torrent's piece layer is, counted from the 16 KiB blocks
/// (0) up, as BEP 52's hash requests count.
pub fn piece_layer_base(piece_length: u64) -> u32 {
    (piece_length / BLOCK).trailing_zeros()
}

/// Whether `layer`, the piece layer of a file of `layer.len()` pieces of
/// `piece_length`, hashes to the file's `root`.
pub fn layer_matches(root: &Hash, piece_length: u64, layer: &[Hash]) -> bool {
    let width = layer.len().next_power_of_two();
    self::root(layer, width, pad_root((piece_length / BLOCK) as usize)) == *root
}

/// The most hashes one hash request is answered with (libtorrent asks for
/// 512 at a time).
pub const MAX_HASHES: u32 = 512;

/// A block-layer hash request: `count` leaves of the file whose root is
/// `root`, from leaf `index`, with uncles up to `proof_layers` (none when
/// the span is a whole piece; a piece of more than [`MAX_HASHES`] blocks
/// is asked for in spans whose uncles reach up to the piece's node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSpan {
    pub root: Hash,
    pub index: u32,
    pub count: u32,
    pub proof_layers: u32,
}

/// One non-empty file's place in the piece space and its hashes.
#[derive(Clone, Debug)]
struct V2File {
    length: u64,
    root: Hash,
    first_piece: u32,
    pieces: u32,
    /// Where its piece layer is in [`V2::layers`] (empty: one piece, or no
    /// layer given).
    layer: std::ops::Range<u32>,
    /// The tree above the piece layer (padded, bottom level first), built
    /// when a peer first asks for hashes of this file.
    tree: std::sync::OnceLock<std::sync::Arc<Vec<Vec<Hash>>>>,
}

/// What a v2 or hybrid torrent adds: its SHA-256 info-hash and what checks
/// each piece.
#[derive(Clone, Debug)]
pub struct V2 {
    /// SHA-256 of the info dictionary (a v2 swarm's first 20 bytes of it
    /// stand for it on the wire, at trackers and in the DHT).
    pub info_hash: Hash,
    piece_length: u64,
    files: Vec<V2File>,
    layers: Vec<Hash>,
}

/// The `piece layers` dictionary: pieces root → that file's layer.
pub type Layers<'a> = BTreeMap<Cow<'a, [u8]>, Value<'a>>;

impl V2 {
    /// The hashes of `files` (in tree order, laid out one after another
    /// from a piece boundary each). `layers` must hold a valid layer for
    /// every file of more than one piece when `need_layers`; a hybrid
    /// torrent is checked with its v1 hashes and keeps what it is given.
    pub fn new(
        info_hash: Hash,
        piece_length: u64,
        files: &[TreeFile],
        layers: Option<&Layers>,
        need_layers: bool,
    ) -> Result<V2> {
        if piece_length < BLOCK || !piece_length.is_power_of_two() {
            return Err(MetainfoError::Invalid {
                field: "piece length",
                why: format!("{piece_length} is not a power of two of at least 16 KiB (v2)"),
            });
        }
        let bpp = (piece_length / BLOCK) as usize;
        let mut v = V2 {
            info_hash,
            piece_length,
            files: Vec::new(),
            layers: Vec::new(),
        };
        let mut next = 0u64;
        for f in files {
            let Some(r) = f.root else { continue };
            let pieces = f.length.div_ceil(piece_length);
            let first_piece = next;
            next += pieces;
            let too_many = || MetainfoError::Invalid {
                field: "file tree",
                why: "more than 2^32 pieces".into(),
            };
            let mut layer = 0..0;
            if pieces > 1 {
                let given = match layers.and_then(|l| l.get(&r[..])) {
                    Some(Value::Bytes(b)) => Some(b),
                    Some(_) => return Err(MetainfoError::WrongType("piece layers")),
                    None => None,
                };
                match given {
                    Some(b) => {
                        let hashes: Vec<Hash> = b
                            .chunks_exact(32)
                            .map(|c| c.try_into().expect("32"))
                            .collect();
                        let width = (pieces as usize).next_power_of_two();
                        if b.len() as u64 != pieces * 32 || root(&hashes, width, pad_root(bpp)) != r
                        {
                            return Err(MetainfoError::Invalid {
                                field: "piece layers",
                                why: format!("the layer of {:?} does not match its root", f.path),
                            });
                        }
                        let start = u32::try_from(v.layers.len()).map_err(|_| too_many())?;
                        v.layers.extend(hashes);
                        layer = start..start + pieces as u32;
                    }
                    None if need_layers => {
                        return Err(MetainfoError::Invalid {
                            field: "piece layers",
                            why: format!(
                                "missing for {:?} (a .torrent without its piece layers, as a v2 magnet link gives, cannot be checked yet)",
                                f.path
                            ),
                        })
                    }
                    None => {}
                }
            }
            v.files.push(V2File {
                length: f.length,
                root: r,
                first_piece: u32::try_from(first_piece).map_err(|_| too_many())?,
                pieces: u32::try_from(pieces).map_err(|_| too_many())?,
                layer,
                tree: Default::default(),
            });
        }
        Ok(v)
    }

    /// Pieces in all.
    pub fn num_pieces(&self) -> usize {
        self.files
            .last()
            .map_or(0, |f| (f.first_piece + f.pieces) as usize)
    }

    /// Whether `data`, piece `piece` as btt holds it (the file's bytes,
    /// then padding up to the piece length), hashes to what the torrent says.
    pub fn piece_ok(&self, piece: usize, data: &[u8]) -> bool {
        let Some((f, k)) = self.locate(piece) else {
            return false;
        };
        data.len() >= self.real_len(f, k) && self.leaves_ok(piece, &self.block_digests(piece, data))
    }

    /// Whether `leaves`, the SHA-256 of each 16 KiB block of `piece` (as
    /// [`V2::block_digests`] gives them, padding beyond the file's end
    /// ignored), hash up to its piece layer's hash (or, for a file of one
    /// piece, to its root): the check of a piece fed a block at a time.
    pub fn leaves_ok(&self, piece: usize, leaves: &[Hash]) -> bool {
        let Some((f, k)) = self.locate(piece) else {
            return false;
        };
        let blocks = (self.real_len(f, k) as u64).div_ceil(BLOCK) as usize;
        if leaves.len() < blocks {
            return false;
        }
        let leaves = &leaves[..blocks];
        if f.pieces == 1 {
            return root(leaves, blocks.next_power_of_two().max(1), [0; 32]) == f.root;
        }
        match self.layers.get(f.layer.start as usize + k as usize) {
            Some(want) if !f.layer.is_empty() => {
                root(leaves, (self.piece_length / BLOCK) as usize, [0; 32]) == *want
            }
            _ => false,
        }
    }

    /// The tree above `f`'s piece layer (padded, bottom level first),
    /// built on first use.
    fn tree_of<'a>(&self, f: &'a V2File) -> &'a std::sync::Arc<Vec<Vec<Hash>>> {
        f.tree.get_or_init(|| {
            let width = (f.pieces as usize).next_power_of_two();
            let pad = pad_root((self.piece_length / BLOCK) as usize);
            let mut level = self.layers[f.layer.start as usize..f.layer.end as usize].to_vec();
            level.resize(width, pad);
            std::sync::Arc::new(levels(level))
        })
    }

    /// The answer to a BEP 52 hash request for the file whose root is
    /// `root`: `count` hashes of its piece layer (padded to a power of two)
    /// from `index`, then one uncle hash per proof layer above the first
    /// `log2(count) - 1`, as libtorrent answers (and checks). `None`: a
    /// layer we do not hold (the block layer, a file we lack the layer of)
    /// or a request out of bounds; the asker gets a reject.
    pub fn answer(
        &self,
        root: &Hash,
        base: u32,
        index: u32,
        count: u32,
        proof_layers: u32,
    ) -> Option<Vec<Hash>> {
        let f = self.files.iter().find(|f| f.root == *root)?;
        if f.layer.is_empty() || base != piece_layer_base(self.piece_length) {
            return None;
        }
        let width = (f.pieces as u64).next_power_of_two();
        let height = width.trailing_zeros();
        if count == 0
            || count > MAX_HASHES
            || index as u64 + count as u64 > width
            || proof_layers >= height
        {
            return None;
        }
        let tree = self.tree_of(f);
        let mut out = tree[0][index as usize..(index + count) as usize].to_vec();
        // Uncles start above the subtree the hashes span.
        let inside = count.next_power_of_two().trailing_zeros().saturating_sub(1);
        let mut at = index as usize;
        for i in 0..proof_layers {
            at /= 2;
            if i >= inside {
                out.push(tree[i as usize + 1][at ^ 1]);
            }
        }
        Some(out)
    }

    /// The file piece `piece` is in, and the piece's place in it.
    fn locate(&self, piece: usize) -> Option<(&V2File, u32)> {
        let i = self
            .files
            .partition_point(|f| (f.first_piece + f.pieces) as usize <= piece);
        let f = self.files.get(i)?;
        Some((f, (piece - f.first_piece as usize) as u32))
    }

    /// The bytes of `piece` that are its file's (the rest is padding).
    pub fn data_len(&self, piece: usize) -> usize {
        self.locate(piece).map_or(0, |(f, k)| self.real_len(f, k))
    }

    /// Bytes of piece `k` of `f` that are the file's (the rest is padding).
    fn real_len(&self, f: &V2File, k: u32) -> usize {
        (f.length - k as u64 * self.piece_length).min(self.piece_length) as usize
    }

    /// The block-layer hash requests that tell which 16 KiB blocks of
    /// piece `piece` are wrong: the file's root and the blocks under the
    /// piece's node of the tree, in one request (no proof needed: the
    /// node's hash is known) or, for a piece of more than [`MAX_HASHES`]
    /// blocks, in spans of that many, each with the uncles up to the
    /// piece's node. Empty where we cannot check the answer (no layer).
    pub fn block_requests(&self, piece: usize) -> Vec<BlockSpan> {
        let Some((f, k)) = self.locate(piece) else {
            return vec![];
        };
        let bpp = (self.piece_length / BLOCK) as u32;
        let width = if f.pieces == 1 {
            (f.length.div_ceil(BLOCK) as u32).next_power_of_two()
        } else if f.layer.is_empty() {
            return vec![];
        } else {
            bpp
        };
        let Some(first) = k.checked_mul(bpp) else {
            return vec![];
        };
        let count = width.min(MAX_HASHES);
        // Uncles from the span's own layer up to just below the node.
        let proof_layers = if count < width {
            width.trailing_zeros() - 1
        } else {
            0
        };
        let real = self.real_len(f, k) as u64;
        (0..width / count)
            .map(|s| BlockSpan {
                root: f.root,
                index: first + s * count,
                count,
                proof_layers,
            })
            // A span wholly past the file's end is padding: nothing to judge.
            .filter(|s| ((s.index - first) as u64) * BLOCK < real)
            .collect()
    }

    /// Whether `hashes`, the answer to `span` (one of piece `piece`'s
    /// [`V2::block_requests`]: its blocks, then their uncles), hash up to
    /// the piece's node of the tree.
    pub fn block_hashes_ok(&self, piece: usize, span: BlockSpan, hashes: &[Hash]) -> bool {
        let Some((f, k)) = self.locate(piece) else {
            return false;
        };
        if !self.block_requests(piece).contains(&span) {
            return false;
        }
        let count = span.count as usize;
        let uncles = if span.proof_layers == 0 {
            0
        } else {
            (span.proof_layers + 1 - span.count.trailing_zeros()) as usize
        };
        if hashes.len() != count + uncles {
            return false;
        }
        let mut node = root(&hashes[..count], count, [0; 32]);
        let mut at = span.index >> span.count.trailing_zeros();
        for u in &hashes[count..] {
            node = if at.is_multiple_of(2) {
                pair(&node, u)
            } else {
                pair(u, &node)
            };
            at /= 2;
        }
        let want = if f.pieces == 1 {
            f.root
        } else {
            self.layers[(f.layer.start + k) as usize]
        };
        node == want
    }

    /// The SHA-256 of each block of piece `piece` as btt holds it (the
    /// file's blocks only, not the padding), to compare with the hashes
    /// [`V2::block_hashes_ok`] accepted.
    pub fn block_digests(&self, piece: usize, data: &[u8]) -> Vec<Hash> {
        let Some((f, k)) = self.locate(piece) else {
            return vec![];
        };
        let real = self.real_len(f, k).min(data.len());
        data[..real].chunks(BLOCK as usize).map(sha256).collect()
    }

    /// The pieces to read to answer a block-layer (base 0) hash request:
    /// whole pieces of one file, from a subtree of `count` blocks at
    /// `index` (a multiple of it; within one piece or whole pieces) with
    /// at most the proof the tree has. `None`: refused (unaligned, too
    /// many, or a file we lack the layer of).
    pub fn block_request_pieces(
        &self,
        root: &Hash,
        index: u32,
        count: u32,
        proof_layers: u32,
    ) -> Option<std::ops::Range<usize>> {
        let f = self.files.iter().find(|f| f.root == *root)?;
        let bpp = (self.piece_length / BLOCK) as u32;
        let blocks = f.length.div_ceil(BLOCK);
        let width = if f.pieces == 1 {
            blocks.next_power_of_two()
        } else if f.layer.is_empty() {
            return None;
        } else {
            (f.pieces as u64).next_power_of_two() * bpp as u64
        };
        let ok = count >= 2
            && count.is_power_of_two()
            && count <= MAX_HASHES
            && index.is_multiple_of(count)
            && index as u64 + count as u64 <= width
            && (proof_layers as u64) < width.trailing_zeros() as u64;
        if !ok || index as u64 >= blocks {
            return None;
        }
        let (bpp, start) = (bpp as u64, f.first_piece as u64);
        let first = start + index as u64 / bpp;
        let last =
            (start + (index as u64 + count as u64).div_ceil(bpp)).min(start + f.pieces as u64);
        Some(first as usize..last as usize)
    }

    /// The answer to a block-layer request [`V2::block_request_pieces`]
    /// accepted, from the [`V2::block_digests`] of each piece it named (so
    /// that a piece's data need not be held while the next is read): the
    /// blocks' SHA-256 (zero for the padding past the file's end), then
    /// the uncles libtorrent's order wants.
    pub fn block_answer(
        &self,
        root: &Hash,
        index: u32,
        count: u32,
        proof_layers: u32,
        pieces: &[Vec<Hash>],
    ) -> Option<Vec<Hash>> {
        let range = self.block_request_pieces(root, index, count, proof_layers)?;
        if pieces.len() != range.len() {
            return None;
        }
        let (f, k0) = self.locate(range.start)?;
        let whole = pieces.iter().enumerate().all(|(j, d)| {
            d.len() as u64 == (self.real_len(f, k0 + j as u32) as u64).div_ceil(BLOCK)
        });
        if !whole {
            return None;
        }
        let mut leaves: Vec<Hash> = pieces.concat();
        let bpp = self.piece_length / BLOCK;
        let skip = (index as u64 - k0 as u64 * bpp) as usize;
        let mut out: Vec<Hash> = leaves
            .iter()
            .skip(skip)
            .take(count as usize)
            .copied()
            .collect();
        out.resize(count as usize, [0; 32]);
        let from = count.trailing_zeros();
        if f.pieces == 1 {
            // The whole tree is under this one piece.
            let width = (f.length.div_ceil(BLOCK) as usize).next_power_of_two();
            leaves.resize(width, [0; 32]);
            let levels = levels(leaves);
            for l in from..=proof_layers {
                out.push(levels[l as usize][((index as u64) >> l) as usize ^ 1]);
            }
            return Some(out);
        }
        let shift = bpp.trailing_zeros();
        // Uncles below the piece's node (a span inside one piece) come from
        // its own blocks, the ones above from the tree over the layer.
        let inside = (from < shift && from <= proof_layers).then(|| {
            leaves.resize(bpp as usize, [0; 32]);
            levels(leaves)
        });
        let tree = self.tree_of(f);
        for l in from..=proof_layers {
            let at = ((index as u64) >> l) as usize ^ 1;
            out.push(match &inside {
                Some(p) if l < shift => p[l as usize][at % p[l as usize].len()],
                _ => tree[(l - shift) as usize][at],
            });
        }
        Some(out)
    }

    /// The `piece layers` a `.torrent` carries for these files (sorted by
    /// root, as bencode wants).
    pub fn layers_value(&self) -> Value<'static> {
        let mut d = BTreeMap::new();
        for f in self.files.iter().filter(|f| !f.layer.is_empty()) {
            let l = &self.layers[f.layer.start as usize..f.layer.end as usize];
            d.insert(
                Cow::Owned(f.root.to_vec()),
                Value::Bytes(Cow::Owned(l.concat())),
            );
        }
        Value::Dict(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &[u8])]) -> Vec<TreeFile> {
        files
            .iter()
            .map(|(p, d)| TreeFile {
                path: p.to_string(),
                length: d.len() as u64,
                root: (!d.is_empty()).then(|| {
                    data_root(
                        d,
                        (d.len() as u64).div_ceil(BLOCK).next_power_of_two() as usize,
                    )
                }),
            })
            .collect()
    }

    #[test]
    fn roots_pad_with_zero_leaves() {
        let a = [1u8; 100];
        // One block: the root is the block's hash.
        assert_eq!(data_root(&a, 1), sha256(&a));
        // Three blocks: a fourth, zero leaf.
        let d = vec![5u8; 2 * BLOCK as usize + 7];
        let l: Vec<Hash> = d.chunks(BLOCK as usize).map(sha256).collect();
        let want = pair(&pair(&l[0], &l[1]), &pair(&l[2], &[0; 32]));
        assert_eq!(data_root(&d, 4), want);
        // A layer padded with zero subtrees equals the tree over all leaves.
        let d = vec![9u8; 5 * BLOCK as usize];
        let pieces: Vec<Hash> = d
            .chunks(2 * BLOCK as usize)
            .map(|p| data_root(p, 2))
            .collect();
        assert_eq!(root(&pieces, 4, pad_root(2)), data_root(&d, 8));
        assert_eq!(pad_root(2), pair(&[0; 32], &[0; 32]));
    }

    #[test]
    fn pieces_check_against_layers_and_roots() {
        let pl = 2 * BLOCK;
        let big: Vec<u8> = (0..5 * BLOCK + 3).map(|i| (i % 251) as u8).collect();
        let small = b"hello".to_vec();
        let files = tree(&[("big", &big), ("empty", b""), ("small", &small)]);
        let layer: Vec<u8> = big
            .chunks(pl as usize)
            .flat_map(|p| data_root(p, 2))
            .collect();
        let mut layers = Layers::new();
        layers.insert(
            Cow::Owned(files[0].root.unwrap().to_vec()),
            Value::Bytes(Cow::Owned(layer.clone())),
        );
        let v = V2::new([0; 32], pl, &files, Some(&layers), true).unwrap();
        assert_eq!(v.num_pieces(), 4);
        for (k, p) in big.chunks(pl as usize).enumerate() {
            let mut padded = p.to_vec();
            padded.resize(pl as usize, 0);
            assert!(v.piece_ok(k, &padded), "piece {k}");
        }
        assert!(v.piece_ok(3, &small));
        let mut bad = big[..pl as usize].to_vec();
        bad[100] ^= 1;
        assert!(!v.piece_ok(0, &bad));
        assert!(!v.piece_ok(3, b"hellO"));
        assert!(!v.piece_ok(4, b"x"));
        assert_eq!(v.layers_value(), Value::Dict(layers.clone()));
        // A layer that does not match its root, or none, is refused.
        let mut wrong = layer.clone();
        wrong[0] ^= 1;
        layers.insert(
            Cow::Owned(files[0].root.unwrap().to_vec()),
            Value::Bytes(Cow::Owned(wrong)),
        );
        assert!(V2::new([0; 32], pl, &files, Some(&layers), true).is_err());
        assert!(V2::new([0; 32], pl, &files, None, true).is_err());
        // Unless the v1 hashes check the pieces (hybrid).
        assert!(V2::new([0; 32], pl, &files, None, false).is_ok());
        assert!(V2::new([0; 32], 3 * BLOCK, &files, None, false).is_err());
    }

    /// Hash requests are answered as libtorrent answers them: the hashes,
    /// then the uncles that lead from their subtree to the root.
    /// `files` whose file with root `r` has the piece layer `layer`.
    fn with_layer(pl: u64, files: &[TreeFile], r: Hash, layer: &[Hash]) -> V2 {
        let mut layers = Layers::new();
        layers.insert(
            Cow::Owned(r.to_vec()),
            Value::Bytes(Cow::Owned(layer.concat())),
        );
        V2::new([0; 32], pl, files, Some(&layers), true).unwrap()
    }

    #[test]
    fn hash_requests_get_the_layer_and_its_proof() {
        let pl = 2 * BLOCK;
        let big: Vec<u8> = (0..7 * pl).map(|i| (i % 253) as u8).collect();
        let files = tree(&[("big", &big)]);
        let r = files[0].root.unwrap();
        let layer: Vec<Hash> = big.chunks(pl as usize).map(|p| data_root(p, 2)).collect();
        let v = with_layer(pl, &files, r, &layer);
        // Pieces 2 and 3 with two proof layers: the sibling pair, then the
        // other half of the tree (whose last leaf is padding).
        let got = v.answer(&r, 1, 2, 2, 2).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(&got[..2], &layer[2..4]);
        let up = pair(&got[2], &pair(&got[0], &got[1]));
        assert_eq!(pair(&up, &got[3]), r);
        // The last chunk is padded; no proof asked, none given.
        let got = v.answer(&r, 1, 4, 4, 0).unwrap();
        assert_eq!(&got[..3], &layer[4..]);
        assert_eq!(got[3], pad_root(2));
        assert_eq!(
            pair(&pair(&layer[0], &layer[1]), &pair(&layer[2], &layer[3])),
            got_left(&v, &r)
        );
        // Out of bounds, a layer we do not hold, proof up to the root.
        for (base, index, count, proof) in [
            (1, 6, 4, 0),
            (0, 0, 2, 0),
            (1, 0, 0, 0),
            (1, 0, 2, 3),
            (1, 0, 1024, 0),
        ] {
            assert_eq!(
                v.answer(&r, base, index, count, proof),
                None,
                "{base} {index} {count} {proof}"
            );
        }
        assert_eq!(v.answer(&[1; 32], 1, 0, 2, 0), None);
    }

    #[test]
    fn block_hashes_name_the_bad_block_and_are_served_from_data() {
        let pl = 2 * BLOCK;
        let big: Vec<u8> = (0..6 * pl + 100).map(|i| (i % 251) as u8).collect();
        let small: Vec<u8> = (0..BLOCK + 100).map(|i| (i % 13) as u8).collect();
        let files = tree(&[("big", &big), ("small", &small)]);
        let (r, rs) = (files[0].root.unwrap(), files[1].root.unwrap());
        let layer: Vec<Hash> = big.chunks(pl as usize).map(|p| data_root(p, 2)).collect();
        let v = with_layer(pl, &files, r, &layer);
        // btt holds each piece padded to the piece length.
        let piece = |p: usize| {
            let (d, k) = if p < 7 { (&big, p) } else { (&small, p - 7) };
            let mut b = d[(k * pl as usize).min(d.len())..].to_vec();
            b.truncate(pl as usize);
            b.resize(pl as usize, 0);
            b
        };
        for p in [3, 5] {
            let span = v.block_requests(p)[0];
            assert_eq!(
                v.block_requests(p),
                vec![BlockSpan {
                    root: r,
                    index: 2 * p as u32,
                    count: 2,
                    proof_layers: 0,
                }]
            );
            let hashes = v
                .block_answer(
                    &r,
                    span.index,
                    span.count,
                    0,
                    &[v.block_digests(p, &piece(p))],
                )
                .unwrap();
            assert!(v.block_hashes_ok(p, span, &hashes), "piece {p}");
            assert_eq!(v.block_digests(p, &piece(p)), hashes);
            let mut bad = piece(p);
            bad[BLOCK as usize + 10] ^= 1;
            let got = v.block_digests(p, &bad);
            assert!(got[0] == hashes[0] && got[1] != hashes[1]);
            let mut wrong = hashes.clone();
            wrong[0][0] ^= 1;
            assert!(!v.block_hashes_ok(p, span, &wrong));
        }
        // The last piece's second block is past the file's end: a zero leaf.
        let last = v
            .block_answer(&r, 12, 2, 0, &[v.block_digests(6, &piece(6))])
            .unwrap();
        assert_eq!(last[1], [0; 32]);
        assert_eq!(v.block_digests(6, &piece(6)), last[..1]);
        // Four blocks with a proof up to the root: two uncles from the tree
        // above the piece layer.
        let got = v
            .block_answer(
                &r,
                0,
                4,
                3,
                &[v.block_digests(0, &piece(0)), v.block_digests(1, &piece(1))],
            )
            .unwrap();
        assert_eq!(got.len(), 6);
        let node = pair(&pair(&got[0], &got[1]), &pair(&got[2], &got[3]));
        assert_eq!(node, pair(&layer[0], &layer[1]));
        assert_eq!(pair(&pair(&node, &got[4]), &got[5]), r);
        // A one-piece file: the tree is its own, from its data.
        let span = v.block_requests(7)[0];
        assert_eq!(
            v.block_requests(7),
            vec![BlockSpan {
                root: rs,
                index: 0,
                count: 2,
                proof_layers: 0,
            }]
        );
        let hashes = v
            .block_answer(&rs, 0, 2, 0, &[v.block_digests(7, &piece(7))])
            .unwrap();
        assert!(v.block_hashes_ok(7, span, &hashes));
        assert_eq!(v.block_request_pieces(&rs, 0, 2, 1), None);
        // Refused: unaligned, a single block, too many, proof past the
        // root, padding only, an unknown file.
        for (root, index, count, proof) in [
            (r, 2, 4, 0),
            (r, 0, 1, 0),
            (r, 0, 1024, 0),
            (r, 0, 2, 4),
            (r, 14, 2, 0),
            ([1; 32], 0, 2, 0),
        ] {
            assert_eq!(
                v.block_request_pieces(&root, index, count, proof),
                None,
                "{index} {count} {proof}"
            );
        }
        assert_eq!(v.block_request_pieces(&r, 4, 4, 0), Some(2..4));
        assert_eq!(v.block_request_pieces(&r, 8, 8, 0), Some(4..7));
    }

    /// Pieces of more than [`MAX_HASHES`] blocks (16 MiB: 1 024) are asked
    /// for in spans of 512 whose one uncle is the other half; btt answers
    /// such a span from the piece's own blocks.
    #[test]
    fn block_hashes_of_a_piece_over_512_blocks_come_in_spans_with_proof() {
        let pl = 1024 * BLOCK;
        let big: Vec<u8> = (0..pl + 2 * BLOCK + 100).map(|i| (i % 251) as u8).collect();
        let one: Vec<u8> = (0..600 * BLOCK).map(|i| (i % 241) as u8).collect();
        let files = tree(&[("big", &big), ("one", &one)]);
        let (r, ro) = (files[0].root.unwrap(), files[1].root.unwrap());
        let layer: Vec<Hash> = big
            .chunks(pl as usize)
            .map(|p| data_root(p, 1024))
            .collect();
        let v = with_layer(pl, &files, r, &layer);
        let span = |root, index| BlockSpan {
            root,
            index,
            count: 512,
            proof_layers: 9,
        };
        let piece =
            |d: &[u8], k: usize| d[k * pl as usize..d.len().min((k + 1) * pl as usize)].to_vec();
        assert_eq!(v.block_requests(0), vec![span(r, 0), span(r, 512)]);
        // The last piece has 3 blocks: the second half is all padding.
        assert_eq!(v.block_requests(1), vec![span(r, 1024)]);
        // A one-piece file of 600 blocks: a tree of 1 024 leaves.
        assert_eq!(v.block_requests(2), vec![span(ro, 0), span(ro, 512)]);
        for (p, d, k, root) in [(0, &big, 0, r), (1, &big, 1, r), (2, &one, 0, ro)] {
            let digests = v.block_digests(p, &piece(d, k));
            for s in v.block_requests(p) {
                let got = v
                    .block_answer(
                        &root,
                        s.index,
                        s.count,
                        s.proof_layers,
                        std::slice::from_ref(&digests),
                    )
                    .unwrap();
                assert_eq!(got.len(), 513, "512 blocks and one uncle");
                let from = (s.index as usize) % 1024;
                for (i, h) in got[..512].iter().enumerate() {
                    let want = digests.get(from + i).copied().unwrap_or([0; 32]);
                    assert_eq!(*h, want, "piece {p} block {}", from + i);
                }
                assert!(v.block_hashes_ok(p, s, &got), "piece {p} span {}", s.index);
                for bad in [0, 511, 512] {
                    let mut wrong = got.clone();
                    wrong[bad][3] ^= 1;
                    assert!(!v.block_hashes_ok(p, s, &wrong), "{bad} changed");
                }
                assert!(!v.block_hashes_ok(p, s, &got[..512]), "no uncle");
                let other = BlockSpan {
                    proof_layers: 0,
                    ..s
                };
                assert!(!v.block_hashes_ok(p, other, &got), "not a span we ask");
            }
        }
    }

    /// The left half's root, through a request whose proof is the right half.
    fn got_left(v: &V2, r: &Hash) -> Hash {
        let got = v.answer(r, 1, 4, 4, 2).unwrap();
        got[4]
    }

    #[test]
    fn the_file_tree_is_read_in_order_and_checked() {
        let t = crate::bencode::decode(
            b"d1:ad0:d6:lengthi3e11:pieces root32:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaee1:bd1:cd0:d6:lengthi0eeeee",
        )
        .unwrap();
        let f = file_tree(&t).unwrap();
        assert_eq!(
            f.iter()
                .map(|f| (f.path.as_str(), f.length))
                .collect::<Vec<_>>(),
            vec![("a", 3), ("b/c", 0)]
        );
        for bad in [
            &b"de"[..],
            b"d2:..d0:d6:lengthi0eeee",
            b"d1:ad0:d6:lengthi3eeee",
            b"d1:ad0:d6:lengthi0ee1:bd0:d6:lengthi0eeeee",
            b"d1:ad6:lengthi0eee",
            b"d0:d6:lengthi0eee",
        ] {
            let t = crate::bencode::decode(bad).unwrap();
            assert!(file_tree(&t).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
