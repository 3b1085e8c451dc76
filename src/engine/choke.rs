//! Upload slot choice (BEP 3 tit-for-tat): unchoke the interested peers that give us
//! the most (or, when we only seed, that take the most), plus one optimistic unchoke
//! rotated every few rounds so newcomers get a chance. Pure function.

use super::picker::PeerKey;

#[derive(Clone, Debug)]
pub struct Candidate {
    pub key: PeerKey,
    pub interested: bool,
    /// Bytes/s they send us (leeching) or we send them (seeding).
    pub rate: f64,
}

/// Returns the set to unchoke and the optimistic pick.
pub fn choose(
    cands: &[Candidate],
    slots: usize,
    optimistic: Option<PeerKey>,
    rotate: bool,
    rnd: usize,
) -> (Vec<PeerKey>, Option<PeerKey>) {
    let mut interested: Vec<&Candidate> = cands.iter().filter(|c| c.interested).collect();
    if interested.len() <= slots {
        // Room for everyone: no reason to hold anybody back.
        return (interested.iter().map(|c| c.key).collect(), None);
    }
    interested.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(a.key.cmp(&b.key)));
    let regular = slots.saturating_sub(1);
    let mut out: Vec<PeerKey> = interested[..regular].iter().map(|c| c.key).collect();
    let rest: Vec<PeerKey> = interested[regular..].iter().map(|c| c.key).collect();
    let keep = optimistic.filter(|o| !rotate && rest.contains(o));
    let opt = keep.or_else(|| (!rest.is_empty()).then(|| rest[rnd % rest.len()]));
    out.extend(opt);
    (out, opt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: u64, rate: f64, interested: bool) -> Candidate {
        Candidate {
            key,
            interested,
            rate,
        }
    }

    #[test]
    fn everyone_fits() {
        let (u, o) = choose(&[c(1, 0.0, true), c(2, 0.0, false)], 4, None, false, 0);
        assert_eq!(u, vec![1]);
        assert_eq!(o, None);
    }

    #[test]
    fn tit_for_tat_plus_optimistic() {
        let cands: Vec<_> = (1..=6).map(|k| c(k, k as f64, true)).collect();
        let (u, o) = choose(&cands, 3, None, true, 1);
        assert_eq!(&u[..2], &[6, 5]);
        assert_eq!(o, Some(3));
        assert_eq!(u[2], 3);
        let (_, o2) = choose(&cands, 3, Some(3), false, 0);
        assert_eq!(o2, Some(3), "kept until rotation");
    }
}
