//! `.torrent` files (BEP 3, 12, 47, 52) and magnet links (BEP 9) → typed [`Metainfo`].
//!
//! Pure: no I/O. The info-hash is the SHA-1 of the *raw* bytes of the `info`
//! dictionary as they appear in the file (re-encoding would change it for torrents
//! with unsorted keys). All file↔piece arithmetic lives here so the store, the fs and
//! the picker agree on it.

mod magnet;
pub mod v2;

pub use magnet::Magnet;

use bendy::decoding::{Decoder, FromBencode, Object};

use bendy::value::Value;
use sha1::{Digest, Sha1};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// SHA-1 of the info dictionary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    pub fn hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// 40 hex digits, either case.
    pub fn from_hex(s: &str) -> Option<InfoHash> {
        let b = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .ok()?;
        Some(InfoHash(b.try_into().ok()?))
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.hex())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetainfoError {
    #[error("not valid bencode: {0}")]
    Bencode(String),
    #[error("the torrent is not a dictionary")]
    NotADict,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("field `{field}` is invalid: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("unsafe path component {0:?} (absolute, `..`, empty or containing NUL/`/`)")]
    UnsafePath(String),
    #[error("`pieces` holds {have} hashes but the files need {need}")]
    PieceCount { have: usize, need: u64 },
    #[error("bad magnet link: {0}")]
    Magnet(String),
}

type Result<T> = std::result::Result<T, MetainfoError>;

/// One file of the torrent, in torrent order. Its path is a span of
/// [`Metainfo::paths`], read with [`Metainfo::path`] and friends: a torrent of
/// a million files would otherwise hold two or three small strings per file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Where its components (joined by `/`, the torrent's name not included)
    /// are in [`Metainfo::paths`]; empty for a single-file torrent.
    path_start: u32,
    path_len: u32,
    pub length: u64,
    /// Offset of the file's first byte in the torrent's concatenated content.
    pub offset: u64,
    /// BEP 47 padding file: counted in the piece arithmetic, never shown or stored.
    pub padding: bool,
}

impl FileEntry {
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
    fn path_span(&self) -> std::ops::Range<usize> {
        self.path_start as usize..(self.path_start + self.path_len) as usize
    }
}

/// A slice of one file that a piece (or part of one) covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSlice {
    pub file: usize,
    pub file_offset: u64,
    pub len: u64,
    /// Offset of this slice within the torrent's content.
    pub torrent_offset: u64,
}

#[derive(Clone, Debug)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    /// Raw info dictionary (served to peers asking for metadata, BEP 9).
    pub info_bytes: Vec<u8>,
    /// BEP 12 tiers; a lone `announce` becomes one tier.
    pub trackers: Vec<Vec<String>>,
    pub name: String,
    /// Every file's path, one arena: the torrent's name, then each file's
    /// components joined by `/` (a file's span is in its [`FileEntry`]).
    pub paths: Box<str>,
    pub piece_length: u64,
    /// v1 SHA-1 piece hashes (empty for a v2-only torrent).
    pub pieces: Vec<[u8; 20]>,
    /// The v2 hashes of a v2 or hybrid torrent (BEP 52). A v2-only one is
    /// checked with them, and its `info_hash` is their info-hash's first 20
    /// bytes (what stands for it on the wire); a hybrid is checked with its
    /// v1 hashes and known by both.
    pub v2: Option<Box<v2::V2>>,
    pub files: Vec<FileEntry>,
    pub total_length: u64,
    pub private: bool,
    pub multi_file: bool,
    pub creation_date: Option<i64>,
    pub comment: Option<String>,
}

fn bencode_err(e: bendy::decoding::Error) -> MetainfoError {
    MetainfoError::Bencode(e.to_string())
}

type Dict<'a> = BTreeMap<Cow<'a, [u8]>, Value<'a>>;

fn get<'a, 'b>(d: &'b Dict<'a>, key: &str) -> Option<&'b Value<'a>> {
    d.get(key.as_bytes())
}

fn int(d: &Dict, key: &'static str) -> Result<Option<i64>> {
    match get(d, key) {
        None => Ok(None),
        Some(Value::Integer(i)) => Ok(Some(*i)),
        Some(_) => Err(MetainfoError::WrongType(key)),
    }
}

fn bytes<'b>(d: &'b Dict, key: &'static str) -> Result<Option<&'b [u8]>> {
    match get(d, key) {
        None => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(MetainfoError::WrongType(key)),
    }
}

fn string(d: &Dict, key: &'static str) -> Result<Option<String>> {
    bytes(d, key)?
        .map(|b| {
            String::from_utf8(b.to_vec()).map_err(|_| MetainfoError::Invalid {
                field: key,
                why: "not UTF-8".into(),
            })
        })
        .transpose()
}

/// The info dictionary's fields but a list under `files`, whose raw bytes
/// are returned to be read as a stream by [`file_list`]: a torrent of a
/// million files would otherwise become a million small maps (over 1 GiB)
/// before its entries are built. A `files` that is not a list stays in the
/// fields (for the error).
fn info_fields(raw: &[u8]) -> Result<(Dict<'static>, Option<&[u8]>)> {
    let mut d = Decoder::new(raw).with_max_depth(crate::bencode::MAX_DEPTH);
    let Some(Object::Dict(mut dict)) = d.next_object().map_err(bencode_err)? else {
        return Err(MetainfoError::WrongType("info"));
    };
    let (mut fields, mut files) = (BTreeMap::new(), None);
    while let Some((key, value)) = dict.next_pair().map_err(bencode_err)? {
        match value {
            Object::List(list) if key == b"files" => {
                if files.is_some() {
                    return Err(MetainfoError::Invalid {
                        field: "files",
                        why: "given twice".into(),
                    });
                }
                files = Some(list.into_raw().map_err(bencode_err)?);
            }
            value => {
                let v = Value::decode_bencode_object(value).map_err(bencode_err)?;
                fields.insert(Cow::Owned(key.to_vec()), v.into_owned());
            }
        }
    }
    Ok((fields, files))
}

/// The entries of a multi-file torrent's `files` list (its raw bytes), read
/// one at a time, and their total length. Each path is appended to `paths`.
fn file_list(raw: &[u8], paths: &mut String) -> Result<(Vec<FileEntry>, u64)> {
    let mut d = Decoder::new(raw).with_max_depth(crate::bencode::MAX_DEPTH);
    let Some(Object::List(mut list)) = d.next_object().map_err(bencode_err)? else {
        return Err(MetainfoError::WrongType("files"));
    };
    let (mut files, mut offset) = (Vec::new(), 0u64);
    while let Some(item) = list.next_object().map_err(bencode_err)? {
        let Object::Dict(mut fd) = item else {
            return Err(MetainfoError::WrongType("files"));
        };
        let (mut length, mut path, mut padding) = (None, None, false);
        while let Some((key, value)) = fd.next_pair().map_err(bencode_err)? {
            match (key, value) {
                (b"length", Object::Integer(i)) => {
                    length =
                        Some(i.parse::<i64>().map_err(|e| {
                            MetainfoError::Bencode(format!("files.length {i:?}: {e}"))
                        })?)
                }
                (b"length", _) => return Err(MetainfoError::WrongType("files.length")),
                (b"path", Object::List(mut comps)) => {
                    if path.is_some() {
                        return Err(MetainfoError::Invalid {
                            field: "files.path",
                            why: "given twice".into(),
                        });
                    }
                    let start = paths.len();
                    while let Some(c) = comps.next_object().map_err(bencode_err)? {
                        let Object::Bytes(b) = c else {
                            return Err(MetainfoError::WrongType("files.path"));
                        };
                        let s = std::str::from_utf8(b).map_err(|_| MetainfoError::Invalid {
                            field: "files.path",
                            why: "not UTF-8".into(),
                        })?;
                        check_component(s)?;
                        if paths.len() > start {
                            paths.push('/');
                        }
                        paths.push_str(s);
                    }
                    path = Some(start..paths.len());
                }
                (b"attr", Object::Bytes(a)) => {
                    padding = std::str::from_utf8(a).is_ok_and(|a| a.contains('p'))
                }
                _ => {} // other keys (and their nested values) are skipped
            }
        }
        let length = length.ok_or(MetainfoError::Missing("files.length"))?;
        if length < 0 {
            return Err(MetainfoError::Invalid {
                field: "files.length",
                why: "negative".into(),
            });
        }
        let path = path.ok_or(MetainfoError::Missing("files.path"))?;
        if path.is_empty() {
            return Err(MetainfoError::UnsafePath(String::new()));
        }
        let too_long = || MetainfoError::Invalid {
            field: "files.path",
            why: "the paths add up to more than 4 GiB".into(),
        };
        let length = length as u64;
        files.push(FileEntry {
            path_start: u32::try_from(path.start).map_err(|_| too_long())?,
            path_len: u32::try_from(path.len()).map_err(|_| too_long())?,
            length,
            offset,
            padding,
        });
        offset = offset
            .checked_add(length)
            .ok_or_else(|| MetainfoError::Invalid {
                field: "files.length",
                why: "overflow".into(),
            })?;
    }
    if files.is_empty() {
        return Err(MetainfoError::Invalid {
            field: "files",
            why: "empty list".into(),
        });
    }
    files.shrink_to_fit();
    Ok((files, offset))
}

/// Rejects components that would escape the mount or the data directory.
pub fn check_component(c: &str) -> Result<()> {
    if c.is_empty() || c == "." || c == ".." || c.contains('/') || c.contains('\0') {
        return Err(MetainfoError::UnsafePath(c.to_string()));
    }
    Ok(())
}

/// A hybrid torrent's v1 files (pad files aside) must be its v2 files, in
/// the same order, each starting on a piece boundary: the two swarms then
/// share one piece space.
fn same_files(
    tree: &[v2::TreeFile],
    files: &[FileEntry],
    paths: &str,
    multi_file: bool,
    piece_length: u64,
) -> Result<()> {
    let differ = |why: String| MetainfoError::Invalid {
        field: "file tree",
        why: format!("the v1 and v2 parts of this hybrid torrent differ: {why}"),
    };
    let v1: Vec<&FileEntry> = files.iter().filter(|f| !f.padding).collect();
    if v1.len() != tree.len() {
        return Err(differ(format!("{} files and {}", v1.len(), tree.len())));
    }
    for (f, t) in v1.iter().zip(tree) {
        let path = match multi_file {
            true => &paths[f.path_span()],
            false => paths,
        };
        if path != t.path || f.length != t.length {
            return Err(differ(format!("{path:?} against {:?}", t.path)));
        }
        if f.length > 0 && f.offset % piece_length != 0 {
            return Err(differ(format!("{path:?} does not start a piece")));
        }
    }
    Ok(())
}

impl Metainfo {
    /// Parses a `.torrent` file's bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Metainfo> {
        // Find the raw info dict bytes first: the hash must cover them exactly.
        let mut decoder = Decoder::new(data).with_max_depth(64);
        let mut info_raw: Option<&[u8]> = None;
        let mut top: Dict = BTreeMap::new();
        match decoder.next_object().map_err(bencode_err)? {
            Some(Object::Dict(mut dict)) => {
                while let Some((key, value)) = dict.next_pair().map_err(bencode_err)? {
                    if key == b"info" {
                        match value {
                            Object::Dict(d) => info_raw = Some(d.into_raw().map_err(bencode_err)?),
                            _ => return Err(MetainfoError::WrongType("info")),
                        }
                    } else {
                        let v = Value::decode_bencode_object(value).map_err(bencode_err)?;
                        top.insert(Cow::Owned(key.to_vec()), v.into_owned());
                    }
                }
            }
            None => return Err(MetainfoError::Bencode("empty input".into())),
            Some(_) => return Err(MetainfoError::NotADict),
        }
        let info_raw = info_raw.ok_or(MetainfoError::Missing("info"))?;

        let mut trackers: Vec<Vec<String>> = Vec::new();
        if let Some(Value::List(tiers)) = get(&top, "announce-list") {
            for tier in tiers {
                if let Value::List(urls) = tier {
                    let t: Vec<String> = urls
                        .iter()
                        .filter_map(|u| match u {
                            Value::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
                            _ => None,
                        })
                        .filter(|u| !u.is_empty())
                        .collect();
                    if !t.is_empty() {
                        trackers.push(t);
                    }
                }
            }
        }
        if trackers.is_empty() {
            if let Some(a) = string(&top, "announce")? {
                if !a.is_empty() {
                    trackers.push(vec![a]);
                }
            }
        }
        let layers = match get(&top, "piece layers") {
            Some(Value::Dict(d)) => Some(d),
            Some(_) => return Err(MetainfoError::WrongType("piece layers")),
            None => None,
        };
        let mut m = Metainfo::from_info_and_layers(info_raw, trackers, layers)?;
        m.creation_date = int(&top, "creation date").ok().flatten();
        m.comment = string(&top, "comment").ok().flatten();
        Ok(m)
    }

    /// A torrent from its info dictionary's raw bytes alone (fetched from
    /// peers for a magnet link, BEP 9) and the trackers to use.
    pub fn from_info(info_raw: &[u8], trackers: Vec<Vec<String>>) -> Result<Metainfo> {
        Self::from_info_and_layers(info_raw, trackers, None)
    }

    /// [`Metainfo::from_info`] for a v2 torrent whose piece layers came
    /// from peers (BEP 52 hash requests): pieces root → layer.
    pub fn from_info_with_layers(
        info_raw: &[u8],
        trackers: Vec<Vec<String>>,
        layers: &[(v2::Hash, Vec<u8>)],
    ) -> Result<Metainfo> {
        let d: v2::Layers = layers
            .iter()
            .map(|(r, l)| (Cow::Owned(r.to_vec()), Value::Bytes(Cow::Borrowed(&l[..]))))
            .collect();
        Self::from_info_and_layers(info_raw, trackers, Some(&d))
    }

    /// For a v2-only info dictionary, the piece layers a torrent needs and
    /// an info dictionary does not hold: piece length and (pieces root,
    /// pieces) of every file of more than one piece. `None` for v1 and
    /// hybrid torrents (their v1 hashes check every piece) and for a
    /// dictionary that is not a valid torrent (reading it says why).
    pub fn layers_wanted(info_raw: &[u8]) -> Option<(u64, Vec<(v2::Hash, u32)>)> {
        let (info, _) = info_fields(info_raw).ok()?;
        if int(&info, "meta version").ok()? != Some(2) || get(&info, "pieces").is_some() {
            return None;
        }
        let tree = v2::file_tree(get(&info, "file tree")?).ok()?;
        let pl = u64::try_from(int(&info, "piece length").ok()??).ok()?;
        if pl < v2::BLOCK || !pl.is_power_of_two() {
            return None;
        }
        let wanted = tree
            .iter()
            .filter_map(|f| {
                let pieces = u32::try_from(f.length.div_ceil(pl)).ok()?;
                Some((f.root?, pieces)).filter(|_| pieces > 1)
            })
            .collect();
        Some((pl, wanted))
    }

    /// [`Metainfo::from_info`] with a v2 torrent's piece layers.
    fn from_info_and_layers(
        info_raw: &[u8],
        trackers: Vec<Vec<String>>,
        layers: Option<&v2::Layers>,
    ) -> Result<Metainfo> {
        let mut info_hash = InfoHash(Sha1::digest(info_raw).into());
        let (info, files_raw) = info_fields(info_raw)?;
        let tree = match int(&info, "meta version")? {
            None | Some(1) => None,
            Some(2) => Some(v2::file_tree(
                get(&info, "file tree").ok_or(MetainfoError::Missing("file tree"))?,
            )?),
            Some(v) => {
                return Err(MetainfoError::Invalid {
                    field: "meta version",
                    why: format!("version {v} is not known"),
                })
            }
        };
        let v2_only = tree.is_some() && get(&info, "pieces").is_none();

        let name_raw = string(&info, "name")?.ok_or(MetainfoError::Missing("name"))?;
        check_component(&name_raw)?;
        let name = name_raw;
        let mut paths = name.clone();
        let piece_length =
            int(&info, "piece length")?.ok_or(MetainfoError::Missing("piece length"))?;
        if piece_length <= 0 || piece_length > 256 << 20 {
            return Err(MetainfoError::Invalid {
                field: "piece length",
                why: format!("{piece_length} is not within 1 B..256 MiB"),
            });
        }
        let piece_length = piece_length as u64;
        let v2 = match &tree {
            Some(t) => Some(Box::new(v2::V2::new(
                v2::sha256(info_raw),
                piece_length,
                t,
                layers,
                v2_only,
            )?)),
            None => None,
        };
        if v2_only {
            let v2 = v2.expect("a v2 torrent");
            info_hash = InfoHash(v2.info_hash[..20].try_into().expect("20"));
            let tree = tree.expect("a v2 torrent");
            return Self::from_v2_tree(
                info_raw,
                info,
                trackers,
                name,
                piece_length,
                tree,
                v2,
                info_hash,
            );
        }
        let pieces_raw = bytes(&info, "pieces")?.ok_or(MetainfoError::Missing("pieces"))?;
        if pieces_raw.len() % 20 != 0 {
            return Err(MetainfoError::Invalid {
                field: "pieces",
                why: format!("length {} is not a multiple of 20", pieces_raw.len()),
            });
        }
        let pieces: Vec<[u8; 20]> = pieces_raw
            .chunks_exact(20)
            .map(|c| c.try_into().expect("20 bytes"))
            .collect();

        let (files, total_length, multi_file) =
            match (get(&info, "length"), files_raw, get(&info, "files")) {
                (Some(Value::Integer(len)), None, None) => {
                    if *len < 0 {
                        return Err(MetainfoError::Invalid {
                            field: "length",
                            why: "negative".into(),
                        });
                    }
                    let one = FileEntry {
                        path_start: 0,
                        path_len: 0,
                        length: *len as u64,
                        offset: 0,
                        padding: false,
                    };
                    (vec![one], *len as u64, false)
                }
                (None, Some(raw), None) => {
                    let (files, total) = file_list(raw, &mut paths)?;
                    (files, total, true)
                }
                (None, None, None) => return Err(MetainfoError::Missing("length or files")),
                (Some(_), None, None) => return Err(MetainfoError::WrongType("length")),
                (None, None, Some(_)) => return Err(MetainfoError::WrongType("files")),
                _ => {
                    return Err(MetainfoError::Invalid {
                        field: "info",
                        why: "has both `length` and `files`".into(),
                    })
                }
            };
        let need = total_length.div_ceil(piece_length);
        if pieces.len() as u64 != need {
            return Err(MetainfoError::PieceCount {
                have: pieces.len(),
                need,
            });
        }
        // Two files with the same path would shadow each other on disk and in
        // the fs, and so would a file whose path is another one's directory.
        let mut seen = std::collections::HashSet::with_capacity(files.len());
        for f in files.iter().filter(|f| !f.padding) {
            let p = &paths[f.path_span()];
            if !seen.insert(p) {
                return Err(MetainfoError::Invalid {
                    field: "files.path",
                    why: format!("duplicate {p:?}"),
                });
            }
        }
        for f in files.iter().filter(|f| !f.padding) {
            let p = &paths[f.path_span()];
            for (at, _) in p.match_indices('/') {
                if seen.contains(&p[..at]) {
                    return Err(MetainfoError::Invalid {
                        field: "files.path",
                        why: format!("{:?} is both a file and a directory", &p[..at]),
                    });
                }
            }
        }
        drop(seen);
        if let Some(tree) = &tree {
            same_files(tree, &files, &paths, multi_file, piece_length)?;
        }
        let paths = paths.into_boxed_str();
        Ok(Metainfo {
            info_hash,
            info_bytes: info_raw.to_vec(),
            trackers,
            name,
            paths,
            piece_length,
            pieces,
            v2,
            files,
            total_length,
            private: int(&info, "private")? == Some(1),
            multi_file,
            creation_date: None,
            comment: None,
        })
    }

    /// A v2-only torrent: each file of `tree` followed by padding up to a
    /// piece boundary (after the last one too, as libtorrent lays it out,
    /// so peers may ask for whole blocks at the end of any file).
    #[allow(clippy::too_many_arguments)]
    fn from_v2_tree(
        info_raw: &[u8],
        info: Dict,
        trackers: Vec<Vec<String>>,
        name: String,
        piece_length: u64,
        tree: Vec<v2::TreeFile>,
        v2: Box<v2::V2>,
        info_hash: InfoHash,
    ) -> Result<Metainfo> {
        let multi_file = !(tree.len() == 1 && tree[0].path == name);
        let mut paths = name.clone();
        let too_long = || MetainfoError::Invalid {
            field: "file tree",
            why: "the paths add up to more than 4 GiB".into(),
        };
        let (mut files, mut offset) = (Vec::with_capacity(tree.len() * 2), 0u64);
        for f in &tree {
            let (path_start, path_len) = match multi_file {
                true => {
                    let start = paths.len();
                    paths.push_str(&f.path);
                    (
                        u32::try_from(start).map_err(|_| too_long())?,
                        u32::try_from(f.path.len()).map_err(|_| too_long())?,
                    )
                }
                false => (0, 0),
            };
            let overflow = || MetainfoError::Invalid {
                field: "file tree",
                why: "lengths overflow".into(),
            };
            files.push(FileEntry {
                path_start,
                path_len,
                length: f.length,
                offset,
                padding: false,
            });
            offset = offset.checked_add(f.length).ok_or_else(overflow)?;
            let rest = (piece_length - f.length % piece_length) % piece_length;
            if rest > 0 {
                files.push(FileEntry {
                    path_start: 0,
                    path_len: 0,
                    length: rest,
                    offset,
                    padding: true,
                });
                offset = offset.checked_add(rest).ok_or_else(overflow)?;
            }
        }
        files.shrink_to_fit();
        let need = offset.div_ceil(piece_length);
        if v2.num_pieces() as u64 != need {
            return Err(MetainfoError::PieceCount {
                have: v2.num_pieces(),
                need,
            });
        }
        Ok(Metainfo {
            info_hash,
            info_bytes: info_raw.to_vec(),
            trackers,
            name,
            paths: paths.into_boxed_str(),
            piece_length,
            pieces: Vec::new(),
            v2: Some(v2),
            files,
            total_length: offset,
            private: int(&info, "private")? == Some(1),
            multi_file,
            creation_date: None,
            comment: None,
        })
    }

    /// Whether `data` is piece `piece` as the torrent's hashes say (SHA-1,
    /// or for a v2-only torrent its merkle trees).
    pub fn piece_ok(&self, piece: usize, data: &[u8]) -> bool {
        match (&self.v2, self.pieces.get(piece)) {
            (_, Some(want)) => <[u8; 20]>::from(Sha1::digest(data)) == *want,
            (Some(v2), None) if self.pieces.is_empty() => v2.piece_ok(piece, data),
            _ => false,
        }
    }

    /// [`Metainfo::piece_ok`] for a piece fed in order, a chunk at a time,
    /// so that it need not be in memory whole.
    pub fn piece_check(&self, piece: usize) -> PieceCheck<'_> {
        PieceCheck {
            meta: self,
            piece,
            sha1: Sha1::new(),
            leaves: Vec::new(),
            tail: Vec::new(),
            left: self.v2.as_ref().map_or(0, |v| v.data_len(piece)),
        }
    }

    /// Whether a peer naming `hash` in its handshake means this torrent: its
    /// info-hash, or a hybrid's other one (v2, truncated to 20 bytes).
    pub fn answers_to(&self, hash: &[u8; 20]) -> bool {
        self.info_hash.0 == *hash
            || self
                .v2
                .as_ref()
                .is_some_and(|v| v.info_hash[..20] == hash[..])
    }

    /// The info-hashes its swarms go by: one, or a hybrid's two (the v2
    /// one truncated to 20 bytes).
    pub fn swarms(&self) -> Vec<[u8; 20]> {
        let mut v = vec![self.info_hash.0];
        if let Some(h) = self.v2.as_ref().filter(|_| !self.pieces.is_empty()) {
            v.push(h.info_hash[..20].try_into().expect("20"));
        }
        v
    }

    /// Whether this is a v2-only torrent (BEP 52).
    pub fn v2_only(&self) -> bool {
        self.v2.is_some() && self.pieces.is_empty()
    }

    /// A `.torrent` file of this torrent: its trackers and the info
    /// dictionary's exact bytes (what a magnet link's metadata is kept as).
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        use bendy::value::Value as V;
        let tiers = self
            .trackers
            .iter()
            .map(|t| {
                V::List(
                    t.iter()
                        .map(|u| V::Bytes(Cow::Owned(u.as_bytes().to_vec())))
                        .collect(),
                )
            })
            .collect();
        let mut out = b"d".to_vec();
        if !self.trackers.is_empty() {
            out.extend_from_slice(b"13:announce-list");
            out.extend(crate::bencode::encode(&V::List(tiers)));
        }
        out.extend_from_slice(b"4:info");
        out.extend_from_slice(&self.info_bytes);
        if let Some(layers) = self.v2.as_ref().map(|v| v.layers_value()) {
            if !matches!(&layers, V::Dict(d) if d.is_empty()) {
                out.extend_from_slice(b"12:piece layers");
                out.extend(crate::bencode::encode(&layers));
            }
        }
        out.push(b'e');
        out
    }

    /// A magnet link for this torrent: info-hash (v1 `btih`, v2 `btmh`, a
    /// hybrid both), name and trackers.
    pub fn magnet(&self) -> String {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let mut m = "magnet:?".to_string();
        if !self.v2_only() {
            m += &format!("xt=urn:btih:{}&", self.info_hash.hex());
        }
        if let Some(v2) = &self.v2 {
            m += &format!(
                "xt=urn:btmh:1220{}&",
                data_encoding::HEXLOWER.encode(&v2.info_hash)
            );
        }
        m += &format!("dn={}", utf8_percent_encode(&self.name, NON_ALPHANUMERIC));
        for url in self.trackers.iter().flatten() {
            m += "&tr=";
            m += &utf8_percent_encode(url, NON_ALPHANUMERIC).to_string();
        }
        m
    }

    /// File `i`'s path inside the torrent's folder, components joined by
    /// `/` (empty for a single-file torrent, whose file is the torrent's name).
    pub fn path(&self, i: usize) -> &str {
        &self.paths[self.files[i].path_span()]
    }

    /// File `i`'s components relative to the download root, each with its
    /// span in [`Self::paths`]: the torrent's name first, then (multi-file)
    /// the file's components.
    pub fn components(&self, i: usize) -> impl Iterator<Item = (&str, std::ops::Range<usize>)> {
        let span = self.files[i].path_span();
        let start = span.start;
        let inner = (!span.is_empty()).then(|| {
            self.paths[span].split('/').scan(start, |at, c| {
                let r = *at..*at + c.len();
                *at = r.end + 1;
                Some((c, r))
            })
        });
        std::iter::once((&self.paths[..self.name.len()], 0..self.name.len()))
            .chain(inner.into_iter().flatten())
    }

    /// File `i`'s path relative to the download root.
    pub fn rel_path(&self, i: usize) -> std::path::PathBuf {
        self.components(i).map(|(c, _)| c).collect()
    }

    pub fn num_pieces(&self) -> usize {
        match &self.v2 {
            Some(v2) if self.pieces.is_empty() => v2.num_pieces(),
            _ => self.pieces.len(),
        }
    }

    pub fn piece_offset(&self, piece: usize) -> u64 {
        piece as u64 * self.piece_length
    }

    pub fn piece_size(&self, piece: usize) -> u64 {
        let start = self.piece_offset(piece);
        self.piece_length
            .min(self.total_length.saturating_sub(start))
    }

    /// Pieces overlapping the torrent byte range `[start, start+len)`.
    pub fn pieces_for_range(&self, start: u64, len: u64) -> std::ops::Range<usize> {
        if len == 0 || self.piece_length == 0 {
            return 0..0;
        }
        let first = start / self.piece_length;
        let last = (start + len - 1) / self.piece_length;
        first as usize..(last as usize + 1).min(self.num_pieces())
    }

    /// The files (and their byte ranges) that torrent bytes `[start, start+len)` cover,
    /// zero-length files excluded. Padding files are included; callers skip them.
    pub fn slices(&self, start: u64, len: u64) -> Vec<FileSlice> {
        let end = start + len;
        // Binary search the first file ending after `start`.
        let first = self.files.partition_point(|f| f.end() <= start);
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate().skip(first) {
            if f.offset >= end {
                break;
            }
            if f.length == 0 {
                continue;
            }
            let s = start.max(f.offset);
            let e = end.min(f.end());
            if s < e {
                out.push(FileSlice {
                    file: i,
                    file_offset: s - f.offset,
                    len: e - s,
                    torrent_offset: s,
                });
            }
        }
        out
    }

    /// Slices covering one whole piece.
    pub fn piece_slices(&self, piece: usize) -> Vec<FileSlice> {
        self.slices(self.piece_offset(piece), self.piece_size(piece))
    }
}

/// A piece's hash check fed a chunk at a time ([`Metainfo::piece_check`]).
pub struct PieceCheck<'a> {
    meta: &'a Metainfo,
    piece: usize,
    /// A v1 or hybrid torrent's check: SHA-1 of the whole piece.
    sha1: Sha1,
    /// A v2-only torrent's: the SHA-256 of each 16 KiB block, and the
    /// bytes of a block not yet complete.
    leaves: Vec<v2::Hash>,
    tail: Vec<u8>,
    /// Bytes of a v2-only piece still to come before its padding.
    left: usize,
}

impl PieceCheck<'_> {
    /// A v2-only torrent's hashes (a hybrid is checked by its SHA-1).
    fn v2_only(meta: &Metainfo) -> Option<&v2::V2> {
        meta.v2.as_deref().filter(|_| meta.pieces.is_empty())
    }

    /// The piece's next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        if Self::v2_only(self.meta).is_none() {
            self.sha1.update(data);
            return;
        }
        data = &data[..data.len().min(self.left)];
        self.left -= data.len();
        let block = crate::wire::BLOCK_SIZE as usize;
        if !self.tail.is_empty() {
            let take = (block - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() == block {
                self.leaves.push(v2::sha256(&self.tail));
                self.tail.clear();
            }
        }
        let whole = data.len() / block * block;
        self.leaves
            .extend(data[..whole].chunks(block).map(v2::sha256));
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// Whether the bytes fed are the piece.
    pub fn ok(mut self) -> bool {
        match Self::v2_only(self.meta) {
            None => match self.meta.pieces.get(self.piece) {
                Some(want) => <[u8; 20]>::from(self.sha1.finalize()) == *want,
                None => false,
            },
            Some(v2) => {
                if !self.tail.is_empty() {
                    let last = v2::sha256(&self.tail);
                    self.leaves.push(last);
                }
                v2.leaves_ok(self.piece, &self.leaves)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
