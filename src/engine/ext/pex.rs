//! BEP 11 `ut_pex`, both ways: every minute a peer that speaks it is told
//! which peers we connected to and dropped since we last told it; the
//! peers it tells us of are dialed like any other. Off for private
//! torrents (BEP 27). What one message may add is bounded by the codec, how
//! often we listen by [`MIN_INTERVAL`], and what we remember having sent
//! by the peers we hold.

use crate::engine::peer::Session;
use crate::wire::pex::{PexMsg, MAX_SEND};
use crate::wire::{self, ExtHandshake, Message};
use bytes::Bytes;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::debug;

/// How often we send (BEP 11: at most once a minute).
const INTERVAL: Duration = Duration::from_secs(60);
/// Messages that come faster than this are ignored.
const MIN_INTERVAL: Duration = Duration::from_secs(45);
/// The first message goes this long after the handshake (the peer's own
/// list has had time to settle, and short-lived connections cost nothing).
const FIRST: Duration = Duration::from_secs(5);

/// `ut_pex` on one connection.
#[derive(Debug)]
pub(in crate::engine) struct PexState {
    /// The id the peer wants `ut_pex` on (0: it does not speak it).
    their_id: u8,
    /// What we told it we are connected to.
    told: HashSet<SocketAddr>,
    next_send: Instant,
    last_heard: Option<Instant>,
}

impl Default for PexState {
    fn default() -> Self {
        PexState {
            their_id: 0,
            told: HashSet::new(),
            next_send: Instant::now() + FIRST,
            last_heard: None,
        }
    }
}

/// What to tell a peer we told `told` before, now that we hold `now`
/// (sans-io): at most [`MAX_SEND`] of each list; `told` is updated.
pub(super) fn diff(told: &mut HashSet<SocketAddr>, now: &[(SocketAddr, u8)]) -> PexMsg {
    let current: HashSet<SocketAddr> = now.iter().map(|(a, _)| *a).collect();
    let added: Vec<(SocketAddr, u8)> = now
        .iter()
        .filter(|(a, _)| !told.contains(a))
        .take(MAX_SEND)
        .copied()
        .collect();
    let dropped: Vec<SocketAddr> = told
        .iter()
        .filter(|a| !current.contains(a))
        .take(MAX_SEND)
        .copied()
        .collect();
    for a in &dropped {
        told.remove(a);
    }
    told.extend(added.iter().map(|(a, _)| *a));
    PexMsg { added, dropped }
}

impl Session {
    fn pex_allowed(&self) -> bool {
        !self.t.meta.private
    }

    pub(in crate::engine) fn pex_handshake(&mut self, h: &ExtHandshake) {
        if self.pex_allowed() {
            self.pex.their_id = h.m.get(wire::pex::NAME).copied().unwrap_or(0);
        }
    }

    /// Peers the peer tells us of are dialed (within the torrent's bound
    /// on addresses it keeps).
    pub(in crate::engine) fn on_pex_msg(&mut self, payload: &Bytes) {
        if !self.pex_allowed() || self.pex.their_id == 0 {
            return;
        }
        let now = Instant::now();
        if self
            .pex
            .last_heard
            .is_some_and(|t| now.duration_since(t) < MIN_INTERVAL)
        {
            debug!("ut_pex message too soon after the last: ignored");
            return;
        }
        self.pex.last_heard = Some(now);
        let msg = match PexMsg::decode(payload) {
            Ok(m) => m,
            Err(e) => return debug!(error = %e, "ignoring a bad ut_pex message"),
        };
        let usable: Vec<SocketAddr> = msg
            .added
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| a.port() != 0 && !a.ip().is_unspecified() && !a.ip().is_multicast())
            .collect();
        let new = self.t.add_peers_from_pex(&usable);
        debug!(
            added = msg.added.len(),
            dropped = msg.dropped.len(),
            new,
            "peers learned through PEX"
        );
    }

    /// Called on the session's timer: tells the peer what changed, once a
    /// minute.
    pub(in crate::engine) fn pex_tick(&mut self, now: Instant) {
        if self.pex.their_id == 0 || now < self.pex.next_send {
            return;
        }
        self.pex.next_send = now + INTERVAL;
        let connected = self.t.pex_peers(self.key);
        let msg = diff(&mut self.pex.told, &connected);
        if msg.added.is_empty() && msg.dropped.is_empty() {
            return;
        }
        let id = self.pex.their_id;
        self.send(Message::Extended {
            id,
            payload: Bytes::from(msg.encode()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_tell_is_what_changed_and_bounded() {
        let a =
            |i: u16| -> SocketAddr { SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881)) };
        let mut told = HashSet::new();
        let now: Vec<_> = (0..3).map(|i| (a(i), 0x10)).collect();
        let m = diff(&mut told, &now);
        assert_eq!(m.added, now);
        assert!(m.dropped.is_empty());
        // Nothing changed: nothing to say.
        assert_eq!(diff(&mut told, &now), PexMsg::default());
        // One dropped, one added.
        let now2 = vec![(a(0), 0x10), (a(2), 0x10), (a(9), 0)];
        let m = diff(&mut told, &now2);
        assert_eq!(m.added, vec![(a(9), 0)]);
        assert_eq!(m.dropped, vec![a(1)]);
        // A crowd goes out 50 at a time; what was not told is told next.
        let crowd: Vec<_> = (100..300).map(|i| (a(i), 0)).collect();
        let m = diff(&mut told, &crowd);
        assert_eq!((m.added.len(), m.dropped.len()), (MAX_SEND, 3));
        let m = diff(&mut told, &crowd);
        assert_eq!((m.added.len(), m.dropped.len()), (MAX_SEND, 0));
        assert_eq!(told.len(), 2 * MAX_SEND);
    }
}
