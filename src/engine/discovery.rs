//! Why a torrent has no peers, in words the user can act on.
//!
//! A mount with nobody to ask waits; a read then fails after the read
//! timeout. Without this the user saw only "Input/output error". Each
//! source of peers (trackers, the DHT, local discovery, the peers given with
//! `--peer`) notes here how it fared, and [`Discovery::no_peers`] says it in
//! one line: the mount's log, the cause of each timed-out read and `btt
//! status` show it. Sans-io.

/// How the sources of peers fared so far.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Trackers asked (0: none, or `--no-trackers`).
    pub trackers: usize,
    /// Whether the trackers have answered at all.
    tracker_answered: bool,
    /// Why the last announce failed (cleared by an answer).
    tracker_error: Option<String>,
    /// The DHT is searched.
    pub dht: bool,
    /// Local peer discovery is on.
    pub lsd: bool,
    /// Peers given with `--peer` (or a magnet's `x.pe=`).
    pub given: usize,
    /// Why the last dial failed.
    dial_error: Option<String>,
}

/// "1 peer", "3 peers".
pub fn plural(n: usize, one: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    }
}

impl Discovery {
    pub fn new(trackers: usize, dht: bool, lsd: bool, given: usize) -> Discovery {
        Discovery {
            trackers,
            dht,
            lsd,
            given,
            ..Default::default()
        }
    }

    pub fn tracker_answered(&mut self) {
        self.tracker_answered = true;
        self.tracker_error = None;
    }

    pub fn tracker_failed(&mut self, why: String) {
        self.tracker_error = Some(why);
    }

    pub fn dial_failed(&mut self, why: String) {
        self.dial_error = Some(why);
    }

    /// One line: "no peers yet: 1 tracker failing (connection refused),
    /// DHT off, 1 peer given (refused the connection)".
    pub fn no_peers(&self) -> String {
        let mut parts = Vec::new();
        match (self.trackers, &self.tracker_error, self.tracker_answered) {
            (0, _, _) => parts.push("no trackers".to_string()),
            (n, Some(why), _) => parts.push(format!("{} failing ({why})", plural(n, "tracker"))),
            (n, None, true) => {
                parts.push(format!("{} answered with no peers", plural(n, "tracker")))
            }
            (n, None, false) => parts.push(format!("{} asked", plural(n, "tracker"))),
        }
        parts.push(match self.dht {
            true => "none from the DHT yet".into(),
            false => "DHT off".into(),
        });
        if self.lsd {
            parts.push("none on the local network".into());
        }
        if self.given > 0 {
            parts.push(match &self.dial_error {
                Some(why) => format!("{} given ({why})", plural(self.given, "peer")),
                None => format!("{} given", plural(self.given, "peer")),
            });
        }
        let mut line = format!("no peers yet: {}", parts.join(", "));
        if self.trackers == 0 && !self.dht && !self.lsd && self.given == 0 {
            line += " (give one with --peer HOST:PORT, or let the DHT run)";
        }
        line
    }
}

/// A dial's failure in a few words ("refused the connection").
pub fn dial_error_text(e: &super::conn::PeerError) -> String {
    use super::conn::PeerError;
    match e {
        PeerError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "refused the connection".into()
        }
        PeerError::HandshakeTimeout => "did not answer".into(),
        PeerError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => "did not answer".into(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_each_source_did() {
        let mut d = Discovery::new(1, false, false, 1);
        d.tracker_failed("connection refused".into());
        d.dial_failed("refused the connection".into());
        assert_eq!(
            d.no_peers(),
            "no peers yet: 1 tracker failing (connection refused), DHT off, 1 peer given (refused the connection)"
        );
        d.tracker_answered();
        d.dht = true;
        assert_eq!(
            d.no_peers(),
            "no peers yet: 1 tracker answered with no peers, none from the DHT yet, 1 peer given (refused the connection)"
        );
        let none = Discovery::default().no_peers();
        assert!(
            none.contains("no trackers, DHT off") && none.contains("--peer"),
            "{none}"
        );
    }
}
