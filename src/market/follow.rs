//! Channel states that follow the chain, on both sides.
//!
//! A channel's stored state is what this node last did or heard; the chain
//! has the last word. [`follow`] asks the chain about every channel that is
//! not settled yet and records what it finds: a funding spent by the other
//! side's close (or a refund) makes an open channel closing, then closed once
//! the spending transaction confirms; a funding that left the node's mempool
//! unconfirmed makes it failed. Failed is not final: anyone holding the
//! transaction may broadcast it again, and then the coins sit in the
//! channel, so a failed channel whose funding is back is open again (or
//! closing, if already spent), and `channels list` says so. A buyer's channel stored as opening moves
//! to open once its funding is seen; it is judged failed only when no
//! process is opening a channel (see [`ChannelStore::opening`]): in between
//! storing and broadcasting, a missing funding is not news. `btt wallet sync`, `btt channels list`, a
//! running seller and a buying mount all call it, so `channels list` is true
//! after a sync and while they run.

use crate::chain::{ChainBackend, ChainError, OutputStatus, TxStatus};
use crate::chanstore::{ChannelState, ChannelStore, Record, StoreError};
use crate::pay::bitcoin::Txid;
use crate::wallet::BttWallet;

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One channel as the chain shows it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub id: String,
    pub state: ChannelState,
    /// The transaction that spent the funding, if known.
    pub close_txid: Option<Txid>,
    /// Its confirmations (0: in the mempool or not found).
    pub close_confirmations: u32,
    /// Whether the state differs from what was stored.
    pub changed: bool,
}

/// What the chain says of one channel's funding output and its spender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Funding {
    Unspent,
    Spent,
    /// The funding transaction is neither in the chain nor in the mempool.
    Gone,
}

/// The state a channel moves to (sans-io): `stored` as recorded, `funding`
/// as the chain shows it, `close_confirmations` of the known spender.
pub fn next_state(
    stored: ChannelState,
    funding: Funding,
    spender_confirmations: Option<u32>,
) -> ChannelState {
    use ChannelState::*;
    match (stored, funding, spender_confirmations) {
        // Settled: nothing moves them back.
        (Closed, _, _) => Closed,
        (Refunded, _, _) => Refunded,
        (_, _, Some(c)) if c > 0 => Closed,
        (Open | Opening | Failed, Funding::Spent, _) => Closing,
        (Open | Opening, Funding::Gone, _) => Failed,
        // A funding back in the mempool or mined: the coins are in the channel.
        (Opening | Failed, Funding::Unspent, _) => Open,
        (state, _, _) => state,
    }
}

/// Follows the channels in `store` that `which` selects on `chain`; `wallet` (optional) names spenders the
/// store does not know. Records changes; returns what it saw. Opening
/// channels are followed only while no opener is at work (and listed as
/// they are otherwise).
pub fn follow(
    store: &ChannelStore,
    chain: &dyn ChainBackend,
    wallet: Option<&BttWallet>,
    which: impl Fn(&Record) -> bool,
) -> Result<Vec<Seen>, FollowError> {
    let mut records = store.list()?;
    // Held while the chain is asked: no opener stores and broadcasts in
    // between, so a funding missing now was never broadcast. Listed again
    // under it, as an opener may have finished meanwhile.
    let quiet = match records.iter().any(|r| r.state == ChannelState::Opening) {
        true => store.no_opener()?,
        false => None,
    };
    if quiet.is_some() {
        records = store.list()?;
    }
    let mut out = Vec::new();
    for r in records {
        if !which(&r) {
            continue;
        }
        if r.state == ChannelState::Opening && quiet.is_none() {
            out.push(Seen {
                id: r.id.clone(),
                state: r.state,
                close_txid: None,
                close_confirmations: 0,
                changed: false,
            });
            continue;
        }
        out.push(follow_one(store, chain, wallet, &r)?);
    }
    Ok(out)
}

fn follow_one(
    store: &ChannelStore,
    chain: &dyn ChainBackend,
    wallet: Option<&BttWallet>,
    r: &Record,
) -> Result<Seen, FollowError> {
    let spk = r.terms.funding_script_pubkey();
    let funding = match chain.output_status(&r.terms.funding, &spk)? {
        OutputStatus::Unspent => Funding::Unspent,
        OutputStatus::Spent => Funding::Spent,
        // An index can lag the node: gone only if the node lacks it too.
        OutputStatus::Unknown => match chain.get_tx(&r.terms.funding.txid)? {
            None => Funding::Gone,
            Some(_) => Funding::Unspent,
        },
    };
    let close_txid = r.close_txid.or_else(|| match funding {
        Funding::Spent => wallet.and_then(|w| w.spender_of(&r.terms.funding)),
        _ => None,
    });
    let confs = match close_txid {
        Some(t) => match chain.tx_status(&t, &spk)? {
            TxStatus::Confirmed { confirmations, .. } => Some(confirmations),
            TxStatus::Mempool => Some(0),
            TxStatus::Unknown => None,
        },
        None => None,
    };
    let state = next_state(r.state, funding, confs);
    let changed = state != r.state || (close_txid.is_some() && r.close_txid.is_none());
    if changed {
        match close_txid {
            Some(t) => store.set_closing(&r.id, state, &t)?,
            None => store.set_state(&r.id, state)?,
        }
        tracing::info!(channel = %r.id, from = ?r.state, to = ?state, "channel state follows the chain");
    }
    Ok(Seen {
        id: r.id.clone(),
        state,
        close_txid,
        close_confirmations: confs.unwrap_or(0),
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelState::*;

    #[test]
    fn states_follow_the_chain() {
        assert_eq!(next_state(Open, Funding::Unspent, None), Open);
        assert_eq!(next_state(Open, Funding::Spent, None), Closing);
        assert_eq!(next_state(Open, Funding::Spent, Some(0)), Closing);
        assert_eq!(next_state(Open, Funding::Spent, Some(2)), Closed);
        assert_eq!(next_state(Closing, Funding::Spent, Some(1)), Closed);
        assert_eq!(next_state(Closing, Funding::Unspent, Some(0)), Closing);
        assert_eq!(next_state(Open, Funding::Gone, None), Failed);
        assert_eq!(next_state(Refunded, Funding::Spent, Some(5)), Refunded);
        assert_eq!(next_state(Closed, Funding::Unspent, None), Closed);
        assert_eq!(next_state(Opening, Funding::Unspent, None), Open);
        assert_eq!(next_state(Opening, Funding::Gone, None), Failed);
        assert_eq!(next_state(Opening, Funding::Spent, Some(0)), Closing);
        // A failed funding broadcast again.
        assert_eq!(next_state(Failed, Funding::Gone, None), Failed);
        assert_eq!(next_state(Failed, Funding::Unspent, None), Open);
        assert_eq!(next_state(Failed, Funding::Spent, Some(0)), Closing);
        assert_eq!(next_state(Failed, Funding::Spent, Some(3)), Closed);
    }
}
