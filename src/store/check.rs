//! What is wrong with data found on disk, file by file: `btt seed` reports
//! it, `btt get` refuses to overwrite it. Pure over the torrent, the pieces
//! that verified and the files' sizes.

/// What is wrong with one file's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Missing,
    /// Its size on disk.
    Size(u64),
    /// Right size, but a piece that lies in it (and in no file missing or
    /// of the wrong size) does not verify.
    Differs,
}

/// The files whose data is missing or wrong, in torrent order. `have` is
/// what verified; `len` gives a file's size on disk by its path under the
/// data folder.
pub fn file_problems(
    meta: &crate::metainfo::Metainfo,
    have: &crate::bitfield::Bitfield,
    len: impl Fn(&std::path::Path) -> Option<u64>,
) -> Vec<(usize, Problem)> {
    // Sizes first: a piece shared with a missing neighbour fails for it.
    let sized: Vec<Option<u64>> = (0..meta.files.len())
        .map(|i| match meta.files[i].padding {
            true => Some(meta.files[i].length),
            false => len(&meta.rel_path(i)),
        })
        .collect();
    let whole = |i: usize| sized[i] == Some(meta.files[i].length);
    let mut out = Vec::new();
    for (i, f) in meta.files.iter().enumerate() {
        if f.padding || f.length == 0 {
            continue;
        }
        let problem = match sized[i] {
            None => Problem::Missing,
            Some(l) if l != f.length => Problem::Size(l),
            Some(_) => {
                let differs = meta
                    .pieces_for_range(f.offset, f.length)
                    .filter(|&p| !have.get(p))
                    .any(|p| meta.piece_slices(p).iter().all(|s| whole(s.file)));
                match differs {
                    true => Problem::Differs,
                    false => continue,
                }
            }
        };
        out.push((i, problem));
    }
    out
}

/// [`file_problems`] in words: the first five ("tree/one (missing)",
/// "tree/x (3 of 7 bytes)", "tree/y (content differs)") then how many more.
pub fn describe(meta: &crate::metainfo::Metainfo, problems: &[(usize, Problem)]) -> String {
    let mut out: Vec<String> = problems
        .iter()
        .take(5)
        .map(|(i, p)| {
            let why = match p {
                Problem::Missing => "missing".to_string(),
                Problem::Size(l) => format!("{l} of {} bytes", meta.files[*i].length),
                Problem::Differs => "content differs".into(),
            };
            format!("{} ({why})", meta.rel_path(*i).display())
        })
        .collect();
    if problems.len() > out.len() {
        out.push(format!("and {} more", problems.len() - out.len()));
    }
    match out.is_empty() {
        true => "every file is whole".into(),
        false => out.join(", "),
    }
}
