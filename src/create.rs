//! `btt create`: make a v1 `.torrent` from a file or a directory tree.
//!
//! Lets users (and the test-suite) produce torrents without another tool. Files are
//! listed in byte order of their paths, the way most clients do, so the same tree
//! always gives the same info-hash.

use bendy::encoding::{Encoder, SingleItemEncoder};
use sha1::{Digest, Sha1};
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
    #[error("piece length {0} must be a power of two of at least 16 KiB")]
    PieceLength(u64),
    #[error("encoding: {0}")]
    Encode(String),
}

#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Power of two ≥ 16 KiB; chosen from the total size when `None`.
    pub piece_length: Option<u64>,
    /// BEP 12 tiers; the first URL also becomes `announce`.
    pub trackers: Vec<Vec<String>>,
    pub private: bool,
    pub comment: Option<String>,
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

fn walk(
    dir: &Path,
    rel: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, PathBuf, u64)>,
) -> Result<(), CreateError> {
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
            out.push((rel.clone(), p, md.len()));
        }
        rel.pop();
    }
    Ok(())
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
        files.push((vec![], root.to_path_buf(), md.len()));
    }
    let total: u64 = files.iter().map(|f| f.2).sum();
    let pl = opts
        .piece_length
        .unwrap_or_else(|| auto_piece_length(total));
    if pl < 16 * 1024 || !pl.is_power_of_two() {
        return Err(CreateError::PieceLength(pl));
    }

    let mut pieces = Vec::new();
    let mut hasher = Sha1::new();
    let mut in_piece = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (_, path, _) in &files {
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        loop {
            let want = buf.len().min((pl - in_piece) as usize);
            let n = f.read(&mut buf[..want]).map_err(io(path))?;
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

    let enc_err = |e: bendy::encoding::Error| CreateError::Encode(e.to_string());
    let info = |e: SingleItemEncoder| {
        e.emit_dict(|mut d| {
            if multi {
                d.emit_pair_with(b"files", |e| {
                    e.emit_list(|l| {
                        for (rel, _, len) in &files {
                            l.emit_dict(|mut fd| {
                                fd.emit_pair(b"length", len)?;
                                fd.emit_pair_with(b"path", |e| {
                                    e.emit_list(|pl| {
                                        for c in rel {
                                            pl.emit_str(c)?;
                                        }
                                        Ok(())
                                    })
                                })
                            })?;
                        }
                        Ok(())
                    })
                })?;
            } else {
                d.emit_pair(b"length", total)?;
            }
            d.emit_pair(b"name", &name)?;
            d.emit_pair(b"piece length", pl)?;
            d.emit_pair_with(b"pieces", |e| e.emit_bytes(&pieces))?;
            if opts.private {
                d.emit_pair(b"private", 1)?;
            }
            Ok(())
        })
    };
    let mut enc = Encoder::new().with_max_depth(16);
    enc.emit_dict(|mut d| {
        if let Some(first) = opts.trackers.iter().flatten().next() {
            d.emit_pair(b"announce", first)?;
            d.emit_pair_with(b"announce-list", |e| {
                e.emit_list(|l| {
                    for tier in &opts.trackers {
                        l.emit_list(|t| {
                            for u in tier {
                                t.emit_str(u)?;
                            }
                            Ok(())
                        })?;
                    }
                    Ok(())
                })
            })?;
        }
        if let Some(c) = &opts.comment {
            d.emit_pair(b"comment", c)?;
        }
        d.emit_pair(b"created by", concat!("btt/", env!("CARGO_PKG_VERSION")))?;
        d.emit_pair(
            b"creation date",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )?;
        d.emit_pair_with(b"info", info)
    })
    .map_err(enc_err)?;
    enc.get_output().map_err(enc_err)
}
