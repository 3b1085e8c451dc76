//! Chain access behind one trait, so the wallet and the channel logic never
//! care whether they talk to an Electrum server or to a node's JSON-RPC.
//!
//! Both implementations are blocking (their client libraries are); async code
//! calls them through `spawn_blocking`. Each checks at connect time that the
//! server is on the configured network, so a regtest wallet can never sync
//! from, or broadcast to, mainnet by mistake.

mod electrum;
mod rpc;
pub mod tls;

pub use electrum::ElectrumBackend;
pub use rpc::RpcBackend;

use crate::config::{BackendConfig, Config};
use crate::pay::bitcoin::{FeeRate, Network, OutPoint, Script, Transaction, Txid};
use bdk_wallet::Wallet;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("chain backend {url}: {msg}")]
    Backend { url: String, msg: String },
    #[error("chain backend {url} is on {theirs}, the wallet is on {ours}")]
    WrongNetwork {
        url: String,
        ours: Network,
        theirs: String,
    },
    #[error("transaction rejected by the backend: {0}")]
    Rejected(String),
    #[error("wallet update does not connect to the chain: {0}")]
    Connect(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Neither in the mempool nor in the best chain.
    Unknown,
    Mempool,
    Confirmed {
        height: u32,
        confirmations: u32,
    },
}

impl TxStatus {
    pub fn confirmations(self) -> u32 {
        match self {
            TxStatus::Confirmed { confirmations, .. } => confirmations,
            _ => 0,
        }
    }
}

/// Where an output stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStatus {
    /// The transaction creating it is unknown.
    Unknown,
    Unspent,
    /// Spent in the mempool or the chain.
    Spent,
}

/// What the wallet and the channels need from the chain.
pub trait ChainBackend: Send + Sync {
    fn network(&self) -> Network;
    /// Brings the wallet up to the backend's view (blocks and mempool).
    fn sync_wallet(&self, wallet: &mut Wallet) -> Result<(), ChainError>;
    fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError>;
    /// `spk` is the script of one of the transaction's outputs (Electrum
    /// indexes by script).
    fn tx_status(&self, txid: &Txid, spk: &Script) -> Result<TxStatus, ChainError>;
    fn get_tx(&self, txid: &Txid) -> Result<Option<Transaction>, ChainError>;
    fn tip_height(&self) -> Result<u32, ChainError>;
    /// The backend's estimate for confirmation within `target_blocks`, if it has one.
    fn fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError>;
    fn output_status(&self, outpoint: &OutPoint, spk: &Script) -> Result<OutputStatus, ChainError>;
}

/// Connects the configured backend and checks its network.
pub fn connect(cfg: &Config) -> Result<Box<dyn ChainBackend>, ChainError> {
    let network = cfg.network()?;
    Ok(match &cfg.backend {
        BackendConfig::Electrum { url, cert } => electrum::connect(url, cert.as_deref(), network)?,
        BackendConfig::Rpc {
            url,
            user,
            password,
            cookie,
        } => Box::new(RpcBackend::connect(
            url,
            user,
            password,
            cookie.as_deref(),
            network,
        )?),
    })
}

/// The backend's fee estimate for `target` blocks, or the configured fallback.
pub fn fee_rate_or(backend: &dyn ChainBackend, target: u16, fallback_sat_vb: u64) -> FeeRate {
    backend
        .fee_rate(target)
        .ok()
        .flatten()
        .filter(|r| r.to_sat_per_vb_ceil() >= 1)
        .unwrap_or_else(|| FeeRate::from_sat_per_vb(fallback_sat_vb.max(1)).expect("fee rate"))
}

/// The reason in a node's rejection, without the raw transaction some servers
/// append (it carries signatures, which we keep out of logs).
pub(crate) fn reject_reason(msg: &str) -> String {
    let reason: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('['))
        .collect();
    let text = reason.join(" ");
    text.chars().take(300).collect()
}

/// Whether a rejection only says the transaction is already known.
pub(crate) fn already_known(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("already-in-mempool")
        || r.contains("already in block chain")
        || r.contains("txn-already-known")
        || r.contains("already have transaction")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_text_drops_the_raw_transaction() {
        let m = "the transaction was rejected by network rules.\n\nnon-final\n[0200000000010176e2]";
        assert_eq!(
            reject_reason(m),
            "the transaction was rejected by network rules. non-final"
        );
        assert!(already_known(&reject_reason(
            "rejected.\n\ntxn-already-in-mempool\n[02000000]"
        )));
        assert!(!already_known("non-final"));
    }
}
