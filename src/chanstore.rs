//! Durable channel state in SQLite, so that a crash or `kill -9` at any point
//! loses no funds (DESIGN.md: a channel never advances until its state is
//! persisted).
//!
//! - The buyer records its new total *before* sending the signature: after a
//!   crash it is equal to the seller's total or one step ahead, never behind.
//! - The seller records a newer payment *before* serving past it: after a crash
//!   it can close with everything it was paid for.
//!
//! Each update is one SQLite transaction in WAL mode with `synchronous=FULL`
//! (fsync at commit), and totals only move up (`WHERE total_msat < ?`), so a
//! stale writer can never roll a channel back. Keys are not stored here.

use crate::pay::bitcoin::hashes::Hash;
use crate::pay::bitcoin::{ecdsa, Network, OutPoint, PublicKey, ScriptBuf, Txid};
use crate::pay::channel::Payment;
use crate::pay::tx::Terms;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("channel database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("channel database {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no channel {0}")]
    NotFound(String),
    #[error("channel {id}: stored total {stored} msat is not below {got} msat")]
    NotIncreasing { id: String, stored: u64, got: u64 },
    #[error("channel {0} is {1}, not open")]
    NotOpen(String, &'static str),
    #[error("channel {0}: stored data is corrupt ({1})")]
    Corrupt(String, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Buyer,
    Seller,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Seller => "seller",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Buyer: stored, its funding not yet (known to be) broadcast. Only
    /// [`crate::market::follow`] moves it on, and only while no opener holds
    /// [`ChannelStore::opening`]: a funding that is missing then was never
    /// broadcast (the opener died or failed first).
    Opening,
    Open,
    Closing,
    Closed,
    Refunded,
    /// Seller: its funding never confirmed (double-spent, dropped, or
    /// unconfirmed for too long); not served any more.
    Failed,
}

impl ChannelState {
    fn as_str(self) -> &'static str {
        match self {
            ChannelState::Opening => "opening",
            ChannelState::Open => "open",
            ChannelState::Closing => "closing",
            ChannelState::Closed => "closed",
            ChannelState::Refunded => "refunded",
            ChannelState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "opening" => ChannelState::Opening,
            "open" => ChannelState::Open,
            "closing" => ChannelState::Closing,
            "closed" => ChannelState::Closed,
            "refunded" => ChannelState::Refunded,
            "failed" => ChannelState::Failed,
            _ => return None,
        })
    }
}

/// One channel as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub role: Role,
    pub terms: Terms,
    pub total_msat: u64,
    /// Seller side: the buyer's signature for `total_msat`.
    pub signature: Option<ecdsa::Signature>,
    pub state: ChannelState,
    pub meta: Meta,
    /// The closing or refund transaction, once broadcast.
    pub close_txid: Option<Txid>,
}

/// Bookkeeping that is not part of the channel's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Buyer: which derived key signs for this channel.
    pub key_index: Option<u32>,
    /// Buyer: the seller's address.
    pub peer: Option<String>,
    /// Buyer: a torrent the seller serves (the BitTorrent handshake needs one).
    pub info_hash: Option<[u8; 20]>,
}

impl Record {
    /// The best payment a seller holds, if any.
    pub fn payment(&self) -> Option<Payment> {
        self.signature.map(|signature| Payment {
            total_msat: self.total_msat,
            signature,
        })
    }
}

/// The id of a channel: its funding outpoint.
pub fn channel_id(funding: &OutPoint) -> String {
    format!("{}:{}", funding.txid, funding.vout)
}

/// Why an update of `id` to `total_msat` matched no row.
fn refusal(db: &Connection, id: &str, total_msat: u64) -> Result<StoreError, StoreError> {
    let stored: Option<(i64, String)> = db
        .query_row(
            "SELECT total_msat, state FROM channels WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match stored {
        None => StoreError::NotFound(id.into()),
        Some((_, st)) if st != "open" => StoreError::NotOpen(
            id.into(),
            ChannelState::parse(&st)
                .map(|s| s.as_str())
                .unwrap_or("unknown"),
        ),
        Some((s, _)) => StoreError::NotIncreasing {
            id: id.into(),
            stored: s as u64,
            got: total_msat,
        },
    })
}

pub struct ChannelStore {
    db: Connection,
    /// Beside the database: openers hold it shared while a channel they
    /// stored is `opening`; [`ChannelStore::no_opener`] tries it exclusive.
    opening_lock: std::path::PathBuf,
}

/// Held by a buyer from storing a channel until its funding is broadcast
/// and the channel marked open; released by the kernel if the process dies.
#[must_use]
pub struct OpeningGuard(#[allow(dead_code)] std::fs::File);

impl ChannelStore {
    /// Opens (creating, mode 0600) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        crate::config::touch_private(path).map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS channels (
                id TEXT PRIMARY KEY,
                role TEXT NOT NULL,
                network TEXT NOT NULL,
                capacity_sat INTEGER NOT NULL,
                fee_sat INTEGER NOT NULL,
                expiry_height INTEGER NOT NULL,
                buyer_pubkey BLOB NOT NULL,
                seller_pubkey BLOB NOT NULL,
                buyer_payout BLOB NOT NULL,
                seller_payout BLOB NOT NULL,
                funding_txid BLOB NOT NULL,
                funding_vout INTEGER NOT NULL,
                total_msat INTEGER NOT NULL DEFAULT 0,
                signature BLOB,
                state TEXT NOT NULL DEFAULT 'open',
                key_index INTEGER,
                peer TEXT,
                info_hash BLOB,
                close_txid BLOB
            )",
        )?;
        let mut opening_lock = path.as_os_str().to_owned();
        opening_lock.push(".opening");
        Ok(ChannelStore {
            db,
            opening_lock: opening_lock.into(),
        })
    }

    fn lock_file(&self) -> Result<std::fs::File, StoreError> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.opening_lock)
            .map_err(|source| StoreError::Io {
                path: self.opening_lock.display().to_string(),
                source,
            })
    }

    /// Marks an open in progress (any number may run at once); waits while
    /// a [`ChannelStore::no_opener`] check holds the lock.
    pub fn opening(&self) -> Result<OpeningGuard, StoreError> {
        let f = self.lock_file()?;
        f.lock_shared().map_err(|source| StoreError::Io {
            path: self.opening_lock.display().to_string(),
            source,
        })?;
        Ok(OpeningGuard(f))
    }

    /// `Some` (hold it while judging `opening` channels) if no process is
    /// between storing a channel and marking it open; `None` if one is.
    pub fn no_opener(&self) -> Result<Option<std::fs::File>, StoreError> {
        let f = self.lock_file()?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
                path: self.opening_lock.display().to_string(),
                source,
            }),
        }
    }

    /// Records a new channel (total 0).
    pub fn insert(&self, role: Role, t: &Terms) -> Result<String, StoreError> {
        self.insert_with(role, t, &Meta::default())
    }

    /// Records a new channel with the buyer's bookkeeping (key index, seller
    /// address, torrent used to reach it).
    pub fn insert_with(&self, role: Role, t: &Terms, meta: &Meta) -> Result<String, StoreError> {
        self.insert_in(ChannelState::Open, role, t, meta)
    }

    /// Records a buyer's new channel as `opening`, before its funding is
    /// broadcast (hold an [`OpeningGuard`] until it is marked open).
    pub fn insert_opening(&self, t: &Terms, meta: &Meta) -> Result<String, StoreError> {
        self.insert_in(ChannelState::Opening, Role::Buyer, t, meta)
    }

    fn insert_in(
        &self,
        state: ChannelState,
        role: Role,
        t: &Terms,
        meta: &Meta,
    ) -> Result<String, StoreError> {
        let id = channel_id(&t.funding);
        self.db.execute(
            "INSERT INTO channels (id, role, network, capacity_sat, fee_sat, expiry_height, buyer_pubkey, seller_pubkey,
               buyer_payout, seller_payout, funding_txid, funding_vout, key_index, peer, info_hash, state)
               VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
            params![
                id,
                role.as_str(),
                t.network.to_core_arg(),
                t.capacity_sat as i64,
                t.fee_sat as i64,
                t.expiry_height,
                t.buyer.to_bytes(),
                t.seller.to_bytes(),
                t.buyer_payout.as_bytes(),
                t.seller_payout.as_bytes(),
                t.funding.txid.to_byte_array().to_vec(),
                t.funding.vout,
                meta.key_index,
                meta.peer,
                meta.info_hash.map(|h| h.to_vec()),
                state.as_str(),
            ],
        )?;
        Ok(id)
    }

    /// Moves the total up (and, for a seller, stores the signature for it) in one
    /// durable transaction; refuses to move it down or sideways.
    pub fn advance(
        &mut self,
        id: &str,
        total_msat: u64,
        signature: Option<&ecdsa::Signature>,
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let n = tx.execute(
            "UPDATE channels SET total_msat = ?2, signature = ?3 WHERE id = ?1 AND total_msat < ?2 AND state = 'open'",
            params![id, total_msat as i64, signature.map(|s| s.to_vec())],
        )?;
        if n == 0 {
            return Err(refusal(&tx, id, total_msat)?);
        }
        tx.commit()?;
        Ok(())
    }

    /// [`ChannelStore::advance`] for several channels in one durable
    /// transaction (group commit: one fsync for a burst of payments). All or
    /// nothing.
    pub fn advance_many(
        &mut self,
        updates: &[(String, u64, Option<ecdsa::Signature>)],
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        for (id, total_msat, signature) in updates {
            let n = tx.execute(
                "UPDATE channels SET total_msat = ?2, signature = ?3 WHERE id = ?1 AND total_msat < ?2 AND state = 'open'",
                params![id, *total_msat as i64, signature.map(|s| s.to_vec())],
            )?;
            if n == 0 {
                return Err(refusal(&tx, id, *total_msat)?);
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records the closing (or refund) transaction and the new state.
    pub fn set_closing(
        &self,
        id: &str,
        state: ChannelState,
        txid: &Txid,
    ) -> Result<(), StoreError> {
        let n = self.db.execute(
            "UPDATE channels SET state = ?2, close_txid = ?3 WHERE id = ?1",
            params![id, state.as_str(), txid.to_byte_array().to_vec()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.into()));
        }
        Ok(())
    }

    /// The next unused buyer key index.
    pub fn next_key_index(&self) -> Result<u32, StoreError> {
        let n: Option<i64> = self
            .db
            .query_row("SELECT MAX(key_index) FROM channels", [], |r| r.get(0))?;
        Ok(n.map(|n| n as u32 + 1).unwrap_or(0))
    }

    pub fn set_state(&self, id: &str, state: ChannelState) -> Result<(), StoreError> {
        let n = self.db.execute(
            "UPDATE channels SET state = ?2 WHERE id = ?1",
            params![id, state.as_str()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.into()));
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Record, StoreError> {
        self.list()?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| StoreError::NotFound(id.into()))
    }

    /// Every channel, for resuming after a restart and for `btt channels list`.
    pub fn list(&self) -> Result<Vec<Record>, StoreError> {
        let mut st = self.db.prepare(
            "SELECT id, role, network, capacity_sat, fee_sat, expiry_height, buyer_pubkey, seller_pubkey, buyer_payout,
               seller_payout, funding_txid, funding_vout, total_msat, signature, state, key_index, peer, info_hash,
               close_txid FROM channels ORDER BY rowid",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                (
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, u32>(5)?,
                ),
                (
                    r.get::<_, Vec<u8>>(6)?,
                    r.get::<_, Vec<u8>>(7)?,
                    r.get::<_, Vec<u8>>(8)?,
                    r.get::<_, Vec<u8>>(9)?,
                ),
                (r.get::<_, Vec<u8>>(10)?, r.get::<_, u32>(11)?),
                r.get::<_, i64>(12)?,
                r.get::<_, Option<Vec<u8>>>(13)?,
                r.get::<_, String>(14)?,
                (
                    r.get::<_, Option<u32>>(15)?,
                    r.get::<_, Option<String>>(16)?,
                    r.get::<_, Option<Vec<u8>>>(17)?,
                    r.get::<_, Option<Vec<u8>>>(18)?,
                ),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                role,
                network,
                (cap, fee, expiry),
                (bpk, spk, bpay, spay),
                (txid, vout),
                total,
                sig,
                state,
                (key_index, peer, info_hash, close_txid),
            ) = row?;
            let bad = |what: &str| StoreError::Corrupt(id.clone(), what.to_string());
            let terms = Terms {
                network: Network::from_core_arg(&network).map_err(|_| bad("network"))?,
                capacity_sat: cap as u64,
                fee_sat: fee as u64,
                expiry_height: expiry,
                buyer: PublicKey::from_slice(&bpk).map_err(|_| bad("buyer key"))?,
                seller: PublicKey::from_slice(&spk).map_err(|_| bad("seller key"))?,
                buyer_payout: ScriptBuf::from_bytes(bpay),
                seller_payout: ScriptBuf::from_bytes(spay),
                funding: OutPoint {
                    txid: Txid::from_slice(&txid).map_err(|_| bad("funding txid"))?,
                    vout,
                },
            };
            out.push(Record {
                role: match role.as_str() {
                    "buyer" => Role::Buyer,
                    "seller" => Role::Seller,
                    _ => return Err(bad("role")),
                },
                terms,
                total_msat: total as u64,
                signature: sig
                    .map(|s| ecdsa::Signature::from_slice(&s))
                    .transpose()
                    .map_err(|_| bad("signature"))?,
                state: ChannelState::parse(&state).ok_or_else(|| bad("state"))?,
                meta: Meta {
                    key_index,
                    peer,
                    info_hash: info_hash
                        .map(|h| <[u8; 20]>::try_from(h.as_slice()))
                        .transpose()
                        .map_err(|_| bad("info hash"))?,
                },
                close_txid: close_txid
                    .map(|t| Txid::from_slice(&t))
                    .transpose()
                    .map_err(|_| bad("close txid"))?,
                id,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pay::bitcoin::secp256k1::{Secp256k1, SecretKey};
    use crate::pay::channel::{Buyer, Seller};

    fn terms() -> (Terms, SecretKey, SecretKey) {
        let secp = Secp256k1::new();
        let (b, s) = (
            SecretKey::from_slice(&[1; 32]).unwrap(),
            SecretKey::from_slice(&[2; 32]).unwrap(),
        );
        let (bp, sp) = (
            PublicKey::new(b.public_key(&secp)),
            PublicKey::new(s.public_key(&secp)),
        );
        let t = Terms {
            network: Network::Regtest,
            capacity_sat: 100_000,
            fee_sat: 300,
            expiry_height: 2_000,
            buyer: bp,
            seller: sp,
            buyer_payout: ScriptBuf::new_p2wpkh(&bp.wpubkey_hash().unwrap()),
            seller_payout: ScriptBuf::new_p2wpkh(&sp.wpubkey_hash().unwrap()),
            funding: OutPoint {
                txid: Txid::from_byte_array([7; 32]),
                vout: 1,
            },
        };
        (t, b, s)
    }

    #[test]
    fn persists_resumes_and_never_goes_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channels.sqlite");
        let (t, bk, sk) = terms();
        let (bid, sid);
        {
            let mut buyer_db = ChannelStore::open(&path).unwrap();
            bid = buyer_db.insert(Role::Buyer, &t).unwrap();
            let mut seller_db = ChannelStore::open(&dir.path().join("seller.sqlite")).unwrap();
            sid = seller_db.insert(Role::Seller, &t).unwrap();
            let mut b = Buyer::new(t.clone(), bk, 0).unwrap();
            let mut s = Seller::resume(t.clone(), sk, None).unwrap();
            for total in [10_000u64, 20_000, 35_000] {
                let p = b.pay(total).unwrap();
                buyer_db.advance(&bid, total, None).unwrap(); // before sending
                s.receive(p.clone()).unwrap();
                seller_db
                    .advance(&sid, p.total_msat, Some(&p.signature))
                    .unwrap(); // before serving
            }
            let e = seller_db.advance(&sid, 20_000, None).unwrap_err();
            assert!(
                matches!(
                    e,
                    StoreError::NotIncreasing {
                        stored: 35_000,
                        got: 20_000,
                        ..
                    }
                ),
                "{e}"
            );
            assert!(matches!(
                seller_db.advance("nope:0", 1, None),
                Err(StoreError::NotFound(_))
            ));
        }
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Restart both sides from disk.
        let buyer_rec = ChannelStore::open(&path).unwrap().get(&bid).unwrap();
        assert_eq!(
            (buyer_rec.role, buyer_rec.total_msat, buyer_rec.state),
            (Role::Buyer, 35_000, ChannelState::Open)
        );
        assert_eq!(buyer_rec.terms, t);
        let mut b = Buyer::new(buyer_rec.terms.clone(), bk, buyer_rec.total_msat).unwrap();
        let seller_db = ChannelStore::open(&dir.path().join("seller.sqlite")).unwrap();
        let rec = seller_db.get(&sid).unwrap();
        let mut s = Seller::resume(rec.terms.clone(), sk, rec.payment()).unwrap();
        assert_eq!(s.total_msat(), 35_000);
        s.receive(b.pay(50_000).unwrap()).unwrap();
        seller_db.set_state(&sid, ChannelState::Closing).unwrap();
        assert_eq!(seller_db.list().unwrap()[0].state, ChannelState::Closing);
    }

    #[test]
    fn an_open_in_progress_is_seen_by_other_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channels.sqlite");
        let (a, b) = (
            ChannelStore::open(&path).unwrap(),
            ChannelStore::open(&path).unwrap(),
        );
        let (t, _, _) = terms();
        assert!(b.no_opener().unwrap().is_some(), "nobody opens yet");
        let g1 = a.opening().unwrap();
        let g2 = b.opening().unwrap(); // openers do not wait for each other
        let id = a.insert_opening(&t, &Meta::default()).unwrap();
        assert_eq!(b.get(&id).unwrap().state, ChannelState::Opening);
        assert!(b.no_opener().unwrap().is_none());
        drop(g1);
        assert!(a.no_opener().unwrap().is_none(), "one opener left");
        drop(g2);
        let quiet = b.no_opener().unwrap();
        assert!(quiet.is_some());
        // Payments wait for the open to be marked done.
        let mut a = a;
        assert!(matches!(
            a.advance(&id, 1_000, None),
            Err(StoreError::NotOpen(..))
        ));
        drop(quiet);
    }
}
