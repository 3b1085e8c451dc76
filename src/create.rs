//! `btt create`: make a `.torrent` (v1, v2 or hybrid) from a file or a
//! directory tree.
//!
//! Lets users (and the test-suite) produce torrents without another tool. Files are
//! listed in byte order of their paths, the way most clients do (and the
//! order a v2 file tree has), so the same tree always gives the same
//! info-hash. v2 and hybrid torrents start every file on a piece boundary
//! (a hybrid's v1 list says so with BEP 47 pad files, after the last file
//! too, as libtorrent lays them out; a single file needs none) and carry
//! their piece layers.

use crate::metainfo::v2::{self, Hash, BLOCK};
use bendy::value::Value;
use sha1::{Digest, Sha1};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: has no usable name")]
    NoName(PathBuf),
    #[error("{0}: file name is not UTF-8")]
    NotUtf8(PathBuf),
    #[error("{0}: contains no files")]
    Empty(PathBuf),
    #[error("{0}: a v2 torrent needs some data (every file is empty)")]
    NoData(PathBuf),
    #[error("piece length {0} must be a power of two of at least 16 KiB")]
    PieceLength(u64),
    #[error("encoding: {0}")]
    Encode(String),
}

/// Which hashes the torrent carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// SHA-1 per piece (BEP 3): every client reads it.
    #[default]
    V1,
    /// SHA-256 merkle trees per file (BEP 52).
    V2,
    /// Both: v1 clients and v2 clients share one swarm each.
    Hybrid,
}

#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Power of two ≥ 16 KiB; chosen from the total size when `None`.
    pub piece_length: Option<u64>,
    /// BEP 12 tiers; the first URL also becomes `announce`.
    pub trackers: Vec<Vec<String>>,
    pub private: bool,
    pub comment: Option<String>,
    pub format: Format,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// About 1000–2000 pieces, between 16 KiB and 16 MiB each.
pub fn auto_piece_length(total: u64) -> u64 {
    let mut pl = 16 * 1024u64;
    while pl < 16 << 20 && total / pl > 2000 {
        pl *= 2;
    }
    pl
}

/// One file to share: its components under the root, where it is, its size.
struct Input {
    rel: Vec<String>,
    path: PathBuf,
    len: u64,
}

fn walk(dir: &Path, rel: &mut Vec<String>, out: &mut Vec<Input>) -> Result<(), CreateError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let name = e
            .file_name()
            .into_string()
            .map_err(|_| CreateError::NotUtf8(p.clone()))?;
        let md = std::fs::metadata(&p).map_err(io(&p))?;
        rel.push(name);
        if md.is_dir() {
            walk(&p, rel, out)?;
        } else if md.is_file() {
            out.push(Input {
                rel: rel.clone(),
                path: p,
                len: md.len(),
            });
        }
        rel.pop();
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes (less only at the end of the file).
fn fill(f: &mut std::fs::File, buf: &mut [u8], path: &Path) -> Result<usize, CreateError> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).map_err(io(path))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// v1 piece hashes over the files one after another (pieces span files).
fn v1_pieces(files: &[Input], pl: u64) -> Result<Vec<u8>, CreateError> {
    let mut pieces = Vec::new();
    let mut hasher = Sha1::new();
    let mut in_piece = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for inp in files {
        let mut f = std::fs::File::open(&inp.path).map_err(io(&inp.path))?;
        loop {
            let want = buf.len().min((pl - in_piece) as usize);
            let n = f.read(&mut buf[..want]).map_err(io(&inp.path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            in_piece += n as u64;
            if in_piece == pl {
                pieces.extend_from_slice(&hasher.finalize_reset());
                in_piece = 0;
            }
        }
    }
    if in_piece > 0 {
        pieces.extend_from_slice(&hasher.finalize());
    }
    Ok(pieces)
}

/// A file's v2 hashes: its root and (more than one piece) its piece layer.
struct Hashed {
    root: Option<Hash>,
    layer: Vec<u8>,
}

/// Every file's v2 hashes, read a piece at a time; with `sha1`, also the v1
/// hashes of pieces aligned to files (a file's last one padded with zeros
/// when `pad`, as in a hybrid of several files).
fn aligned_hashes(
    files: &[Input],
    pl: u64,
    sha1: bool,
    pad: bool,
) -> Result<(Vec<Hashed>, Vec<u8>), CreateError> {
    let bpp = (pl / BLOCK) as usize;
    let mut buf = vec![0u8; pl as usize];
    let (mut out, mut pieces) = (Vec::with_capacity(files.len()), Vec::new());
    for inp in files {
        let mut f = std::fs::File::open(&inp.path).map_err(io(&inp.path))?;
        let (mut layer, mut read, mut single) = (Vec::new(), 0u64, None);
        loop {
            let n = fill(&mut f, &mut buf, &inp.path)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            let data = &buf[..n];
            if sha1 {
                let mut h = Sha1::new();
                h.update(data);
                if pad {
                    h.update(vec![0u8; pl as usize - n]);
                }
                pieces.extend_from_slice(&h.finalize());
            }
            if inp.len <= pl {
                let blocks = (n as u64).div_ceil(BLOCK) as usize;
                single = Some(v2::data_root(data, blocks.next_power_of_two()));
            } else {
                layer.extend_from_slice(&v2::data_root(data, bpp));
            }
            if n < buf.len() {
                break;
            }
        }
        if read != inp.len {
            return Err(CreateError::Io {
                path: inp.path.clone(),
                source: std::io::Error::other("changed size while being read"),
            });
        }
        let root = match (read, single) {
            (0, _) => None,
            (_, Some(r)) => Some(r),
            _ => {
                let hashes: Vec<Hash> = layer
                    .chunks_exact(32)
                    .map(|c| c.try_into().expect("32"))
                    .collect();
                let width = hashes.len().next_power_of_two();
                Some(v2::root(&hashes, width, v2::pad_root(bpp)))
            }
        };
        out.push(Hashed { root, layer });
    }
    Ok((out, pieces))
}

fn b(s: &[u8]) -> Value<'static> {
    Value::Bytes(Cow::Owned(s.to_vec()))
}

fn key(s: &str) -> Cow<'static, [u8]> {
    Cow::Owned(s.as_bytes().to_vec())
}

/// The v2 `file tree`: each file's components as nested dictionaries, the
/// leaf under the empty key.
fn file_tree(name: &str, files: &[Input], hashed: &[Hashed], multi: bool) -> Value<'static> {
    let mut top = BTreeMap::new();
    for (inp, h) in files.iter().zip(hashed) {
        let mut leaf = BTreeMap::new();
        leaf.insert(key("length"), Value::Integer(inp.len as i64));
        if let Some(r) = h.root {
            leaf.insert(key("pieces root"), b(&r));
        }
        let single = [name.to_string()];
        let comps: &[String] = if multi { &inp.rel } else { &single };
        let mut at = &mut top;
        for c in comps {
            let node = at
                .entry(key(c))
                .or_insert_with(|| Value::Dict(BTreeMap::new()));
            let Value::Dict(d) = node else {
                unreachable!("directories are dictionaries")
            };
            at = d;
        }
        at.insert(key(""), Value::Dict(leaf));
    }
    Value::Dict(top)
}

/// The v1 `files` list; with `pads`, a BEP 47 pad file after every file
/// that does not end on a piece boundary.
fn files_list(files: &[Input], pl: u64, pads: bool) -> Value<'static> {
    let mut list = Vec::new();
    for inp in files {
        let mut d = BTreeMap::new();
        d.insert(key("length"), Value::Integer(inp.len as i64));
        d.insert(
            key("path"),
            Value::List(inp.rel.iter().map(|c| b(c.as_bytes())).collect()),
        );
        list.push(Value::Dict(d));
        let rest = (pl - inp.len % pl) % pl;
        if pads && rest > 0 {
            let mut d = BTreeMap::new();
            d.insert(key("attr"), b(b"p"));
            d.insert(key("length"), Value::Integer(rest as i64));
            d.insert(
                key("path"),
                Value::List(vec![b(b".pad"), b(rest.to_string().as_bytes())]),
            );
            list.push(Value::Dict(d));
        }
    }
    Value::List(list)
}

/// Builds the `.torrent` bytes for `root`.
pub fn create_torrent(root: &Path, opts: &CreateOptions) -> Result<Vec<u8>, CreateError> {
    let name = root
        .file_name()
        .ok_or_else(|| CreateError::NoName(root.to_path_buf()))?
        .to_str()
        .ok_or_else(|| CreateError::NotUtf8(root.to_path_buf()))?
        .to_string();
    let md = std::fs::metadata(root).map_err(io(root))?;
    let mut files = Vec::new();
    let multi = md.is_dir();
    if multi {
        walk(root, &mut Vec::new(), &mut files)?;
        if files.is_empty() {
            return Err(CreateError::Empty(root.to_path_buf()));
        }
    } else {
        files.push(Input {
            rel: vec![],
            path: root.to_path_buf(),
            len: md.len(),
        });
    }
    let total: u64 = files.iter().map(|f| f.len).sum();
    let pl = opts
        .piece_length
        .unwrap_or_else(|| auto_piece_length(total));
    if pl < 16 * 1024 || !pl.is_power_of_two() {
        return Err(CreateError::PieceLength(pl));
    }
    if opts.format != Format::V1 && total == 0 {
        return Err(CreateError::NoData(root.to_path_buf()));
    }

    let mut info = BTreeMap::new();
    let mut layers = BTreeMap::new();
    let v1 = match opts.format {
        Format::V1 => Some(v1_pieces(&files, pl)?),
        Format::V2 | Format::Hybrid => {
            let hybrid = opts.format == Format::Hybrid;
            let (hashed, pieces) = aligned_hashes(&files, pl, hybrid, multi)?;
            info.insert(key("file tree"), file_tree(&name, &files, &hashed, multi));
            info.insert(key("meta version"), Value::Integer(2));
            for h in hashed.iter().filter(|h| !h.layer.is_empty()) {
                layers.insert(
                    Cow::Owned(h.root.expect("a file with a layer has a root").to_vec()),
                    b(&h.layer),
                );
            }
            hybrid.then_some(pieces)
        }
    };
    if let Some(pieces) = v1 {
        // A single file needs no pad (libtorrent's hybrids have none there).
        match multi {
            true => info.insert(
                key("files"),
                files_list(&files, pl, opts.format == Format::Hybrid),
            ),
            false => info.insert(key("length"), Value::Integer(total as i64)),
        };
        info.insert(key("pieces"), b(&pieces));
    }
    info.insert(key("name"), b(name.as_bytes()));
    info.insert(key("piece length"), Value::Integer(pl as i64));
    if opts.private {
        info.insert(key("private"), Value::Integer(1));
    }

    let mut top = BTreeMap::new();
    if let Some(first) = opts.trackers.iter().flatten().next() {
        top.insert(key("announce"), b(first.as_bytes()));
        let tiers = opts
            .trackers
            .iter()
            .map(|t| Value::List(t.iter().map(|u| b(u.as_bytes())).collect()))
            .collect();
        top.insert(key("announce-list"), Value::List(tiers));
    }
    if let Some(c) = &opts.comment {
        top.insert(key("comment"), b(c.as_bytes()));
    }
    top.insert(
        key("created by"),
        b(concat!("btt/", env!("CARGO_PKG_VERSION")).as_bytes()),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    top.insert(key("creation date"), Value::Integer(now as i64));
    top.insert(key("info"), Value::Dict(info));
    if !layers.is_empty() {
        top.insert(key("piece layers"), Value::Dict(layers));
    }
    let mut enc = bendy::encoding::Encoder::new().with_max_depth(4096);
    enc.emit(Value::Dict(top))
        .map_err(|e| CreateError::Encode(e.to_string()))?;
    enc.get_output()
        .map_err(|e| CreateError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;

    /// Made from the same files with the same piece length, btt's v2 and
    /// hybrid torrents are libtorrent's (`metainfo/testdata`): the same
    /// info-hashes, so both sides hash, pad and order alike.
    #[test]
    fn v2_and_hybrid_torrents_match_what_libtorrent_makes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("fx");
        for (p, data) in crate::metainfo::tests::lt_fixture() {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        for (format, lt) in [
            (
                Format::V2,
                &include_bytes!("metainfo/testdata/lt_v2.torrent")[..],
            ),
            (
                Format::Hybrid,
                &include_bytes!("metainfo/testdata/lt_hybrid.torrent")[..],
            ),
        ] {
            let opts = CreateOptions {
                piece_length: Some(32768),
                format,
                ..Default::default()
            };
            let ours = Metainfo::from_bytes(&create_torrent(&root, &opts).unwrap()).unwrap();
            let theirs = Metainfo::from_bytes(lt).unwrap();
            assert_eq!(ours.info_hash, theirs.info_hash, "{format:?}");
            assert_eq!(
                ours.v2.unwrap().info_hash,
                theirs.v2.unwrap().info_hash,
                "{format:?}"
            );
        }
        // v1 stays v1; a single file makes a single-file v2 torrent.
        let one = create_torrent(&root.join("a.bin"), &CreateOptions::default()).unwrap();
        assert!(Metainfo::from_bytes(&one).unwrap().v2.is_none());
        let opts = CreateOptions {
            format: Format::V2,
            ..Default::default()
        };
        let one =
            Metainfo::from_bytes(&create_torrent(&root.join("a.bin"), &opts).unwrap()).unwrap();
        assert!(one.v2_only() && !one.multi_file && one.name == "a.bin");
    }
}
