//! `btt_pay` on a peer connection, both sides. As buyer: a peer that
//! announces it is a seller; a channel is bound to the connection off the
//! runtime when free peers cannot deliver, and paid requests are budgeted.
//! As seller: the buyer's messages go in order to a per-connection worker
//! that answers them off the runtime (they block on fsync and chain calls).
//! What the messages say is the market layer's (through the hooks); here
//! they are routed.

use super::PAY_EXT_ID;
use crate::engine::conn::{dec, Link, PeerError};
use crate::engine::peer::Session;
use crate::engine::{PeerCmd, SellerSaid, Torrent};
use crate::wire::{ExtHandshake, Message};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

/// `btt_pay` messages a peer may have waiting for an answer.
const MAX_PAY_QUEUE: usize = 1024;

/// What a peer is to the buyer (`Session::buy_state`).
pub(in crate::engine) mod seller {
    /// A free peer.
    pub const NO: u8 = 0;
    /// A seller we are getting a channel with.
    pub const BINDING: u8 = 1;
    /// A seller bound to a channel: paid requests allowed.
    pub const BOUND: u8 = 2;
    /// A seller we cannot use (no channel, or it refused).
    pub const UNUSABLE: u8 = 3;
    /// A seller we may use but do not need yet (no channel until we do).
    pub const IDLE: u8 = 4;
}

/// `btt_pay` on one connection.
pub(in crate::engine) struct PayState {
    /// Buyer side: one of [`seller`]'s states (shared with the task that
    /// binds a channel).
    buy_state: Arc<AtomicU8>,
    /// Seller side: the worker answering the buyer's messages.
    worker: Option<mpsc::UnboundedSender<Bytes>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The id the peer wants `btt_pay` replies on (0: not announced).
    their_id: Arc<AtomicU8>,
}

impl PayState {
    /// The state of a new connection to `addr`; a seller's worker starts
    /// (`close` ends the connection of a peer that breaks the rules).
    pub(in crate::engine) fn start(
        t: &Torrent,
        addr: SocketAddr,
        link: &Link,
        close: Option<mpsc::UnboundedSender<PeerCmd>>,
    ) -> PayState {
        let their_id = Arc::new(AtomicU8::new(0));
        let (worker, task) = match &t.cfg.pay {
            Some(hook) => {
                let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
                let (hook, link, id) = (hook.0.clone(), link.clone(), their_id.clone());
                let close = close.expect("a pay hook");
                let task = tokio::spawn(
                    async move {
                        while let Some(first) = rx.recv().await {
                            // Whatever else is queued goes in the same batch.
                            let mut batch = vec![first.to_vec()];
                            while batch.len() < 256 {
                                match rx.try_recv() {
                                    Ok(m) => batch.push(m.to_vec()),
                                    Err(_) => break,
                                }
                            }
                            for _ in &batch {
                                dec(&link.queued.pay);
                            }
                            let h = hook.clone();
                            let replies =
                                tokio::task::spawn_blocking(move || h.handle_batch(addr, &batch))
                                    .await
                                    .unwrap_or_default();
                            if hook.misbehaving(addr) {
                                let _ =
                                    close.send(PeerCmd::Close("malformed btt_pay messages".into()));
                                return;
                            }
                            let their = id.load(Ordering::Relaxed);
                            if their == 0 {
                                continue;
                            }
                            for r in replies {
                                link.send(Message::Extended {
                                    id: their,
                                    payload: Bytes::from(r),
                                });
                            }
                        }
                    }
                    .in_current_span(),
                );
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        PayState {
            buy_state: Arc::new(AtomicU8::new(seller::NO)),
            worker,
            task,
            their_id,
        }
    }

    pub(in crate::engine) fn buy_state(&self) -> u8 {
        self.buy_state.load(Ordering::Relaxed)
    }

    pub(in crate::engine) fn set_buy_state(&self, s: u8) {
        self.buy_state.store(s, Ordering::Relaxed);
    }

    pub(in crate::engine) fn their_id(&self) -> u8 {
        self.their_id.load(Ordering::Relaxed)
    }
}

/// Our handshake names the extension (and, selling, our terms).
pub(super) fn add_to_handshake(t: &Torrent, h: &mut ExtHandshake) {
    if let Some(hook) = &t.cfg.pay {
        let name = hook.0.ext_name().to_string();
        h.m.insert(name.clone(), PAY_EXT_ID);
        h.extra.insert(name, hook.0.handshake());
    } else if let Some(buy) = &t.cfg.buy {
        h.m.insert(buy.0.ext_name().to_string(), PAY_EXT_ID);
    }
}

impl Session {
    /// Too many of the peer's messages wait for the seller worker.
    pub(in crate::engine) fn pay_overflowing(&self) -> Option<PeerError> {
        (self.link.queued.pay.load(Ordering::Relaxed) > MAX_PAY_QUEUE)
            .then(|| PeerError::Protocol("too many btt_pay messages waiting".into()))
    }

    pub(in crate::engine) fn is_seller(&self) -> bool {
        self.pay.buy_state() != seller::NO
    }

    /// Gives a paid request's budget back.
    pub(in crate::engine) fn release_paid(&self, bytes: u64) {
        if let (Some(buy), true) = (&self.t.cfg.buy, self.is_seller()) {
            buy.0.release(self.key, bytes);
        }
    }

    /// A paid block arrived that will not be paid for: it still takes room
    /// under the seller's credit.
    pub(in crate::engine) fn waste_paid(&self, bytes: u64) {
        if let (Some(buy), true) = (&self.t.cfg.buy, self.is_seller()) {
            buy.0.wasted(self.key, bytes);
        }
    }

    /// The peer's extension handshake: its id for `btt_pay`, and a seller's
    /// terms.
    pub(in crate::engine) fn pay_handshake(&mut self, h: &ExtHandshake) {
        let name = self.t.pay_ext_name();
        if let Some(id) = name.and_then(|n| h.m.get(n)) {
            self.pay.their_id.store(*id, Ordering::Relaxed);
            if let Some(info) = name.and_then(|n| h.extra.get(n)) {
                self.seller_announced(*id, info);
            }
        }
    }

    /// A `btt_pay` message from the peer.
    pub(in crate::engine) fn on_pay_msg(&mut self, payload: Bytes) {
        if let Some(p) = self.t.lock().peers.get_mut(&self.key) {
            p.speaks_pay = true;
        }
        // A node that sells and buys gets both directions on one
        // connection: a seller's answer to our `resume` is the buyer's, a
        // buyer's message goes to the seller worker.
        let said = match (&self.t.cfg.buy, self.is_seller()) {
            (Some(buy), true) => buy.0.seller_said(self.key, &payload),
            _ => SellerSaid::NotForBuyer,
        };
        match said {
            SellerSaid::State { open, unpaid } => self.channel_bound(open, unpaid),
            SellerSaid::Refused(why) => {
                warn!(reason = %why, "seller refused; not buying from it");
                self.pay.set_buy_state(seller::UNUSABLE);
            }
            SellerSaid::Nothing => {}
            SellerSaid::NotForBuyer => {
                if let Some(tx) = &self.pay.worker {
                    self.link.queued.pay.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(payload);
                }
            }
        }
    }

    /// A peer announced `btt_pay`: if the buyer wants it, treat it as a paid
    /// seller and bind a channel to this connection off the runtime.
    fn seller_announced(&mut self, their_id: u8, info: &bendy::value::Value<'static>) {
        let Some(buy) = self.t.cfg.buy.clone() else {
            return;
        };
        if self.is_seller() || !buy.0.consider(self.key, self.addr, info, self.wake.clone()) {
            return;
        }
        self.pay.set_buy_state(seller::IDLE);
        self.pay.their_id.store(their_id, Ordering::Relaxed);
        self.t.lock().picker.add_paid_pieces(&self.has);
        self.request_more();
    }

    /// Gets a channel for this seller off the runtime, then binds this
    /// connection to it with `resume`.
    pub(in crate::engine) fn bind_channel(&mut self) {
        let Some(buy) = self.t.cfg.buy.clone() else {
            return;
        };
        self.pay.set_buy_state(seller::BINDING);
        info!("free peers cannot deliver: getting a channel with this seller");
        let their_id = self.pay.their_id();
        let (conn, ih, link, state) = (
            self.key,
            self.t.meta.info_hash.0,
            self.link.clone(),
            self.pay.buy_state.clone(),
        );
        tokio::spawn(
            async move {
                let r = tokio::task::spawn_blocking(move || buy.0.bind(conn, ih)).await;
                match r {
                    Ok(Ok(payload)) => link.send(Message::Extended {
                        id: their_id,
                        payload: Bytes::from(payload),
                    }),
                    Ok(Err(e)) => {
                        warn!(error = %e, "no channel with this seller; not buying from it");
                        state.store(seller::UNUSABLE, Ordering::Relaxed);
                    }
                    Err(e) => {
                        warn!(error = %e, "channel task failed");
                        state.store(seller::UNUSABLE, Ordering::Relaxed);
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// The seller answered `resume`: buy, bind to another channel, or give up.
    fn channel_bound(&mut self, open: bool, unpaid: u64) {
        use crate::engine::Bound;
        let Some(buy) = self.t.cfg.buy.clone() else {
            return;
        };
        match buy
            .0
            .bound(self.key, open, unpaid, self.t.meta.piece_length)
        {
            Bound::Usable => {
                info!(unpaid, "bound to a paid channel");
                self.pay.set_buy_state(seller::BOUND);
                self.request_more();
            }
            Bound::Exhausted => {
                self.pay.set_buy_state(seller::IDLE);
                self.request_more();
            }
            Bound::TooSmall => {
                info!("not buying from this seller");
                self.pay.set_buy_state(seller::UNUSABLE);
            }
        }
    }

    /// The connection ended: a seller counts what it accepted and never
    /// sent; a buyer's requests never answered are not paid (blocks it
    /// delivered into pieces in progress are, once those verify).
    pub(in crate::engine) fn pay_closed(&mut self) {
        if let Some(task) = self.pay.task.take() {
            task.abort();
        }
        if let Some(hook) = &self.t.cfg.pay {
            let unsent = self.link.queued.bytes.load(Ordering::Relaxed);
            if unsent > 0 {
                hook.0.unserved(self.addr, self.t.meta.info_hash.0, unsent);
            }
            hook.0.disconnected(self.addr);
        }
        if let Some(buy) = self.t.cfg.buy.clone() {
            if self.is_seller() {
                self.t.lock().picker.remove_paid_pieces(&self.has);
                let asked: u64 = self.outstanding.iter().map(|(r, _)| r.length as u64).sum();
                self.release_paid(asked);
            }
            buy.0.disconnected(self.key);
        }
    }
}
