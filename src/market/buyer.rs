//! The buyer's side of `btt_pay`: reach a seller over a BitTorrent
//! connection, open (fund) a channel, pay, ask for a close, refund.
//!
//! Order of effects is the safety argument: the channel (with the index of
//! its derived key) is stored before the funding transaction is broadcast, so
//! a crash can never strand coins we cannot refund; each new total is stored
//! before its signature leaves, so after a crash we are equal to the seller or
//! one payment ahead, and [`Buyer`] re-sends that payment on resume.
//! Blocking I/O (std sockets with time-outs): these are one-shot commands.

use crate::chain::{fee_rate_or, ChainBackend};
use crate::chanstore::{channel_id, ChannelState, ChannelStore, Meta, Record, Role, StoreError};
use crate::pay::bitcoin::{consensus::encode, Amount, OutPoint, Txid};
use crate::pay::channel::Buyer;
use crate::pay::opening::{self, Acks, Resumed, StepError};
use crate::pay::proto::{self, ChannelTerms, Msg, ProtoError, SellerInfo};
use crate::pay::script::{funding_script_pubkey, funding_witness_script};
use crate::pay::tx::Terms;
use crate::pay::PayError;
use crate::wallet::{public_key, BttWallet, WalletError};
use crate::wire::{self, ExtHandshake, Handshake, Message};
use bytes::{Bytes, BytesMut};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a seller may take to answer one message (seconds).
const ANSWER_SECS: u64 = 60;
use tracing::{info, info_span};

pub use crate::pay::opening::OpenState;

#[derive(Debug, thiserror::Error)]
pub enum BuyError {
    #[error("seller {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("seller {addr} did not answer within {secs} s (busy, or its chain backend is slow); try again")]
    NoAnswer { addr: SocketAddr, secs: u64 },
    #[error("seller {0}: protocol error: {1}")]
    Protocol(SocketAddr, String),
    #[error("seller {0} does not sell over btt_pay")]
    NotASeller(SocketAddr),
    #[error("seller is on {theirs}, the wallet is on {ours}")]
    WrongNetwork { ours: String, theirs: String },
    #[error("seller refused ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("channel {0} has no seller address recorded")]
    NoPeer(String),
    #[error("channel {id} is {state:?}")]
    NotOpen { id: String, state: ChannelState },
    #[error("seller holds {theirs} msat for channel {id} but we signed only {ours} msat")]
    SellerAhead { id: String, ours: u64, theirs: u64 },
    #[error(transparent)]
    Pay(#[from] PayError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
}

impl BuyError {
    /// A reply from the seller at `addr` that the buyer does not take.
    fn step(addr: SocketAddr, id: &str, e: StepError) -> BuyError {
        match e {
            StepError::Closed => BuyError::Refused {
                code: "closed".into(),
                message: e.to_string(),
            },
            StepError::SellerAhead { ours, theirs } => BuyError::SellerAhead {
                id: id.into(),
                ours,
                theirs,
            },
            StepError::Unexpected { .. } | StepError::OtherKey => {
                BuyError::Protocol(addr, e.to_string())
            }
        }
    }

    /// Whether a payment that failed with this error had already been stored
    /// (it failed on the way to the seller, not before): the buyer owes it
    /// and resumes by re-sending it, never by paying it again.
    pub fn stored(&self) -> bool {
        !matches!(
            self,
            BuyError::Store(_) | BuyError::Pay(_) | BuyError::NotOpen { .. }
        )
    }
}

/// A BitTorrent connection to a seller, used only for `btt_pay`.
pub struct SellerConn {
    addr: SocketAddr,
    stream: TcpStream,
    /// Bytes written and read on this connection (payment overhead figures).
    pub wire_bytes: u64,
    buf: BytesMut,
    their_id: u8,
    pub info: SellerInfo,
}

impl SellerConn {
    pub fn connect(addr: SocketAddr, info_hash: [u8; 20]) -> Result<SellerConn, BuyError> {
        let io = |source| BuyError::Io { addr, source };
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(ANSWER_SECS)))
            .map_err(io)?;
        let _ = stream.set_nodelay(true);
        let mut c = SellerConn {
            addr,
            stream,
            wire_bytes: 0,
            buf: BytesMut::new(),
            their_id: 0,
            info: SellerInfo {
                network: String::new(),
                node_key: public_key(
                    &crate::pay::bitcoin::secp256k1::SecretKey::from_slice(&[1; 32]).expect("key"),
                ),
                msat_per_gib: 0,
                credit: 0,
                min_expiry_blocks: 0,
                max_expiry_blocks: 0,
                zero_conf_sat: 0,
            },
        };
        c.stream
            .write_all(&Handshake::new(info_hash, crate::new_peer_id()).encode())
            .map_err(io)?;
        let mut hs = [0u8; wire::HANDSHAKE_LEN];
        c.stream.read_exact(&mut hs).map_err(io)?;
        let theirs = Handshake::decode(&hs).map_err(|e| BuyError::Protocol(addr, e.to_string()))?;
        if theirs.info_hash != info_hash || !theirs.supports_extensions() {
            return Err(BuyError::NotASeller(addr));
        }
        let mut ours = ExtHandshake::default();
        ours.m.insert(proto::EXT_NAME.into(), proto::LOCAL_EXT_ID);
        c.send_wire(Message::Extended {
            id: 0,
            payload: Bytes::from(ours.encode()),
        })?;
        loop {
            if let Message::Extended { id: 0, payload } = c.recv_wire()? {
                let h = ExtHandshake::decode(&payload)
                    .map_err(|e| BuyError::Protocol(addr, e.to_string()))?;
                let (Some(id), Some(v)) = (h.m.get(proto::EXT_NAME), h.extra.get(proto::EXT_NAME))
                else {
                    return Err(BuyError::NotASeller(addr));
                };
                c.their_id = *id;
                c.info = SellerInfo::from_value(v)
                    .map_err(|e| BuyError::Protocol(addr, e.to_string()))?;
                return Ok(c);
            }
        }
    }

    pub fn send_wire(&mut self, m: Message) -> Result<(), BuyError> {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let addr = self.addr;
        self.wire_bytes += out.len() as u64;
        self.stream
            .write_all(&out)
            .map_err(|source| BuyError::Io { addr, source })
    }

    pub fn recv_wire(&mut self) -> Result<Message, BuyError> {
        let addr = self.addr;
        loop {
            if let Some(m) = wire::decode(&mut self.buf, 1 << 20)
                .map_err(|e| BuyError::Protocol(addr, e.to_string()))?
            {
                return Ok(m);
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).map_err(|source| {
                // The read timeout shows as WouldBlock (or TimedOut).
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    BuyError::NoAnswer {
                        addr,
                        secs: ANSWER_SECS,
                    }
                } else {
                    BuyError::Io { addr, source }
                }
            })?;
            if n == 0 {
                return Err(BuyError::Io {
                    addr,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.wire_bytes += n as u64;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn send(&mut self, m: &Msg) -> Result<(), BuyError> {
        let id = self.their_id;
        self.send_wire(Message::Extended {
            id,
            payload: Bytes::from(m.encode()),
        })
    }

    /// The next `btt_pay` message; an `error` message becomes [`BuyError::Refused`].
    pub fn recv(&mut self) -> Result<Msg, BuyError> {
        loop {
            if let Message::Extended { id, payload } = self.recv_wire()? {
                if id != proto::LOCAL_EXT_ID {
                    continue;
                }
                let m = Msg::decode(&payload)
                    .map_err(|e: ProtoError| BuyError::Protocol(self.addr, e.to_string()))?;
                if let Msg::Error { code, message, .. } = m {
                    return Err(BuyError::Refused { code, message });
                }
                return Ok(m);
            }
        }
    }

    pub fn request(&mut self, m: &Msg) -> Result<Msg, BuyError> {
        self.send(m)?;
        self.recv()
    }
}

pub struct Opened {
    pub id: String,
    pub funding: OutPoint,
    pub state: OpenState,
}

/// Opens and funds a channel with the seller at `addr`.
pub fn open_channel(
    wallet: &mut BttWallet,
    store: &ChannelStore,
    chain: &dyn ChainBackend,
    addr: SocketAddr,
    info_hash: [u8; 20],
    capacity_sat: u64,
) -> Result<Opened, BuyError> {
    let mut conn = SellerConn::connect(addr, info_hash)?;
    let network = wallet.network().to_core_arg().to_string();
    if conn.info.network != network {
        return Err(BuyError::WrongNetwork {
            ours: network,
            theirs: conn.info.network.clone(),
        });
    }
    let tip = chain.tip_height()?;
    let expiry_height =
        opening::expiry_height(tip, wallet.config.channels.expiry_blocks, &conn.info);
    let reply = conn.request(&Msg::Propose {
        network: network.clone(),
        capacity_sat,
        expiry_height,
    })?;
    let (seller_key, seller_payout) =
        opening::accepted(&conn.info, reply).map_err(|e| BuyError::step(addr, "", e))?;
    let fallback = wallet.config.channels.fallback_fee_rate;
    let rate = fee_rate_or(chain, 6, fallback);
    let fee_sat = opening::commitment_fee_sat(rate.to_sat_per_vb_ceil());
    let key_index = store.next_key_index()?;
    let key = wallet.channel_key(key_index);
    let buyer_key = public_key(&key);
    let buyer_payout = wallet.payout_script()?;
    let spk = funding_script_pubkey(&funding_witness_script(
        &buyer_key,
        &seller_key,
        expiry_height,
    ));
    let tx = wallet.build_payment(spk.clone(), Amount::from_sat(capacity_sat), rate)?;
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == spk)
        .expect("the funding output we asked for") as u32;
    let funding = OutPoint {
        txid: tx.compute_txid(),
        vout,
    };
    let terms = Terms {
        network: wallet.network(),
        capacity_sat,
        fee_sat,
        expiry_height,
        buyer: buyer_key,
        seller: seller_key,
        buyer_payout,
        seller_payout,
        funding,
    };
    Buyer::new(terms.clone(), key, 0)?;
    let id = channel_id(&funding);
    let span = info_span!("channel", %id);
    let _g = span.enter();
    // Stored before broadcast: whatever happens next, we can refund. While
    // the guard is held, no follow judges the unbroadcast funding gone; if we
    // die or the broadcast fails, the next follow settles the channel.
    let opening = store.opening()?;
    store.insert_opening(
        &terms,
        &Meta {
            key_index: Some(key_index),
            peer: Some(addr.to_string()),
            info_hash: Some(info_hash),
        },
    )?;
    crate::failpoint::hit("buyer-open-stored");
    wallet.broadcast(chain, tx.clone())?;
    info!(capacity_sat, fee_sat, expiry_height, "funding broadcast");
    crate::failpoint::hit("buyer-open-broadcast");
    store.set_state(&id, ChannelState::Open)?;
    drop(opening);
    let state = send_funded(&mut conn, &terms, &encode::serialize(&tx))?;
    Ok(Opened { id, funding, state })
}

fn wire_terms(t: &Terms) -> ChannelTerms {
    ChannelTerms {
        network: t.network.to_core_arg().to_string(),
        capacity_sat: t.capacity_sat,
        fee_sat: t.fee_sat,
        expiry_height: t.expiry_height,
        buyer_key: t.buyer,
        seller_key: t.seller,
        buyer_payout: t.buyer_payout.clone(),
        seller_payout: t.seller_payout.clone(),
        funding: t.funding,
    }
}

fn send_funded(conn: &mut SellerConn, t: &Terms, raw: &[u8]) -> Result<OpenState, BuyError> {
    let reply = conn.request(&Msg::Funded {
        terms: wire_terms(t),
        tx: raw.to_vec(),
    })?;
    opening::funded(reply).map_err(|e| BuyError::step(conn.addr, "", e))
}

/// A buyer channel reconnected to its seller and brought in step.
pub struct Session {
    conn: SellerConn,
    buyer: Buyer,
    key: crate::pay::bitcoin::secp256k1::SecretKey,
    id: String,
    funding: OutPoint,
}

fn open_record(store: &ChannelStore, id: &str) -> Result<Record, BuyError> {
    let r = store.get(id)?;
    if r.role != Role::Buyer {
        return Err(BuyError::NotOpen {
            id: id.into(),
            state: r.state,
        });
    }
    Ok(r)
}

impl Session {
    /// Connects to the channel's seller, makes sure the channel is ready
    /// (re-announcing the funding if the seller does not know it yet) and
    /// re-sends our last payment if the seller missed it.
    pub fn resume(
        wallet: &BttWallet,
        store: &mut ChannelStore,
        chain: &dyn ChainBackend,
        id: &str,
    ) -> Result<Session, BuyError> {
        let r = open_record(store, id)?;
        if r.state != ChannelState::Open {
            return Err(BuyError::NotOpen {
                id: id.into(),
                state: r.state,
            });
        }
        let (Some(peer), Some(ih), Some(idx)) = (&r.meta.peer, r.meta.info_hash, r.meta.key_index)
        else {
            return Err(BuyError::NoPeer(id.into()));
        };
        let addr: SocketAddr = peer.parse().map_err(|_| BuyError::NoPeer(id.into()))?;
        let mut conn = SellerConn::connect(addr, ih)?;
        let network = wallet.network().to_core_arg();
        if conn.info.network != network {
            return Err(BuyError::WrongNetwork {
                ours: network.into(),
                theirs: conn.info.network.clone(),
            });
        }
        let funding = r.terms.funding;
        let ours = r.total_msat;
        let theirs = match conn.request(&Msg::Resume { channel: funding }) {
            Ok(reply) => match opening::resumed(ours, reply) {
                Ok(Resumed::InStep) => ours,
                Ok(Resumed::Resend { theirs }) => theirs,
                Err(e) => return Err(BuyError::step(addr, id, e)),
            },
            Err(BuyError::Refused { code, .. })
                if code == "unknown_channel" && opening::announce_again(ours) =>
            {
                let tx = chain
                    .get_tx(&funding.txid)?
                    .ok_or_else(|| BuyError::Refused {
                        code: "funding_unknown".into(),
                        message: "the funding transaction is not on the chain".into(),
                    })?;
                match send_funded(&mut conn, &r.terms, &encode::serialize(&tx))? {
                    OpenState::Ready => 0,
                    OpenState::Pending { have, need } => {
                        return Err(BuyError::Refused {
                            code: "pending".into(),
                            message: format!(
                                "the seller waits for {need} confirmation(s) of the funding, it has {have}"
                            ),
                        })
                    }
                }
            }
            Err(e) => return Err(e),
        };
        if theirs < ours {
            // We stored `ours` but the seller never got it (we crashed or
            // lost the connection): sign it again.
            let mut b = Buyer::new(r.terms.clone(), wallet.channel_key(idx), theirs)?;
            let p = b.pay(ours)?;
            conn.send(&Msg::Pay {
                channel: funding,
                total_msat: p.total_msat,
                signature: p.signature,
            })?;
            crate::failpoint::hit("buyer-resume-sent");
            match conn.recv()? {
                Msg::Ack { total_msat, .. } if total_msat == ours => {}
                _ => return Err(BuyError::Protocol(addr, "expected ack".into())),
            }
            info!(channel = %id, total_msat = ours, "re-sent the last payment");
        }
        let buyer = Buyer::new(r.terms.clone(), wallet.channel_key(idx), ours)?;
        Ok(Session {
            conn,
            buyer,
            key: wallet.channel_key(idx),
            id: id.into(),
            funding,
        })
    }

    /// The channel's total as this session last signed it.
    pub fn total_msat(&self) -> u64 {
        self.buyer.total_msat()
    }

    /// Bytes this session has put on and read from the wire.
    pub fn wire_bytes(&self) -> u64 {
        self.conn.wire_bytes
    }

    /// Pays `count` times `step_msat`, up to `window` payments in flight; each
    /// new total is stored before its signature is sent.
    pub fn pay(
        &mut self,
        store: &mut ChannelStore,
        step_msat: u64,
        count: u64,
        window: usize,
    ) -> Result<u64, BuyError> {
        let mut in_flight = Acks::default();
        let mut sent = 0;
        while sent < count || !in_flight.is_empty() {
            let room = window.max(1) - in_flight.len();
            if sent < count && room > 0 {
                // Sign what fits in the window, store the newest total once
                // (group commit), then send them all. On any error the session
                // is dropped, so the in-memory total running ahead of the
                // store does not matter.
                let n = (room as u64).min(count - sent);
                let mut signed = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let total = self.buyer.total_msat() + step_msat;
                    signed.push(self.buyer.pay(total)?);
                }
                store.advance(&self.id, self.buyer.total_msat(), None)?;
                crate::failpoint::hit("buyer-pay-stored");
                for p in signed {
                    self.conn.send(&Msg::Pay {
                        channel: self.funding,
                        total_msat: p.total_msat,
                        signature: p.signature,
                    })?;
                    in_flight.sent(p.total_msat);
                }
                sent += n;
                crate::failpoint::hit("buyer-pay-sent");
                continue;
            }
            let reply = self.conn.recv()?;
            in_flight
                .reply(&reply)
                .map_err(|e| BuyError::step(self.conn.addr, &self.id, e))?;
        }
        Ok(self.buyer.total_msat())
    }

    /// Adds `delta_msat` to whatever the channel's stored total is now, so that
    /// several processes (two mounts of one buyer) can pay on one channel: the
    /// new total is signed (which checks it fits the channel), stored
    /// (retrying if another process moved it), then sent. A seller that
    /// already holds more (another process's payment overtook ours and covers
    /// it) is fine. An error for which [`BuyError::stored`] holds came after
    /// the total was stored: [`Session::resume`] re-sends it.
    pub fn pay_increment(
        &mut self,
        store: &mut ChannelStore,
        delta_msat: u64,
    ) -> Result<u64, BuyError> {
        let (total, b, p) = loop {
            let cur = store.get(&self.id)?.total_msat;
            let next = cur + delta_msat;
            let mut b = Buyer::new(self.buyer.terms().clone(), self.key, cur)?;
            let p = b.pay(next)?;
            match store.advance(&self.id, next, None) {
                Ok(()) => {
                    crate::failpoint::hit("buyer-pay-stored");
                    break (next, b, p);
                }
                Err(StoreError::NotIncreasing { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.buyer = b;
        let answer = self
            .conn
            .send(&Msg::Pay {
                channel: self.funding,
                total_msat: total,
                signature: p.signature,
            })
            .and_then(|()| {
                crate::failpoint::hit("buyer-pay-sent");
                self.conn.recv()
            });
        match answer {
            Ok(Msg::Ack { .. }) => Ok(total),
            Err(BuyError::Refused { code, .. }) if code == "not_increasing" => Ok(total),
            Ok(other) => Err(BuyError::Protocol(
                self.conn.addr,
                format!("expected ack, got {}", other.kind()),
            )),
            Err(e) => Err(e),
        }
    }

    /// Asks the seller to co-sign and broadcast the best commitment.
    pub fn close(mut self, store: &ChannelStore) -> Result<Txid, BuyError> {
        self.conn.send(&Msg::Close {
            channel: self.funding,
        })?;
        crate::failpoint::hit("buyer-close-sent");
        match self.conn.recv()? {
            Msg::Closed { txid, .. } => {
                store.set_closing(&self.id, ChannelState::Closing, &txid)?;
                Ok(txid)
            }
            _ => Err(BuyError::Protocol(self.conn.addr, "expected closed".into())),
        }
    }
}

/// Reclaims a channel's funds through the CLTV path (after expiry).
pub fn refund(
    wallet: &BttWallet,
    store: &ChannelStore,
    chain: &dyn ChainBackend,
    id: &str,
) -> Result<Txid, BuyError> {
    let r = open_record(store, id)?;
    let idx = r
        .meta
        .key_index
        .ok_or_else(|| BuyError::NoPeer(id.into()))?;
    let buyer = Buyer::new(r.terms.clone(), wallet.channel_key(idx), r.total_msat)?;
    let tip = chain.tip_height()?;
    let tx = buyer.refund(tip)?;
    let txid = chain.broadcast(&tx)?;
    store.set_closing(id, ChannelState::Refunded, &txid)?;
    info!(channel = %id, %txid, "refund broadcast");
    Ok(txid)
}
