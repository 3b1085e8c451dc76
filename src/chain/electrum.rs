//! Electrum backend (bdk_electrum), over TCP (`tcp://`) or TLS (`ssl://`,
//! see [`super::tls`]). The network is checked by comparing the server's
//! block 0 with the configured network's genesis block.
//!
//! A long-running seller keeps one backend for hours; when its connection
//! drops, the next call dials again once before it reports an error.

use super::tls::{self, TlsStream};
use super::{ChainBackend, ChainError, OutputStatus, TxStatus};
use crate::pay::bitcoin::{
    constants::genesis_block, FeeRate, Network, OutPoint, Script, Transaction, Txid,
};
use bdk_electrum::electrum_client::{self, raw_client::RawClient, ElectrumApi};
use bdk_electrum::BdkElectrumClient;
use bdk_wallet::Wallet;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const STOP_GAP: usize = 20;
const BATCH: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(20);

type Dial<E> = Box<dyn Fn() -> Result<E, String> + Send + Sync>;

pub struct ElectrumBackend<E> {
    url: String,
    network: Network,
    client: RwLock<Arc<BdkElectrumClient<E>>>,
    dial: Dial<E>,
}

/// Connects to `tcp://HOST:PORT` or `ssl://HOST:PORT` (`cert`: the pinned
/// certificate of an `ssl://` server) and checks its network.
pub fn connect(
    url: &str,
    cert: Option<&Path>,
    network: Network,
) -> Result<Box<dyn ChainBackend>, ChainError> {
    let bad = |msg: String| ChainError::Backend {
        url: url.into(),
        msg,
    };
    if let Some(hostport) = url.strip_prefix("ssl://") {
        let (host, port) = hostport
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
            .ok_or_else(|| bad("expected ssl://HOST:PORT".into()))?;
        let pin = cert
            .map(tls::read_pin)
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        let dial: Dial<RawClient<TlsStream>> = Box::new(move || {
            let stream =
                tls::dial(&host, port, pin.as_ref(), TIMEOUT).map_err(|e| e.to_string())?;
            let c = RawClient::from(stream);
            // The protocol version is asked for (and kept) before anything else.
            c.protocol_version().map_err(|e| e.to_string())?;
            Ok(c)
        });
        return Ok(Box::new(ElectrumBackend::new(url, network, dial)?));
    }
    if cert.is_some() {
        return Err(bad(
            "a pinned certificate (--electrum-cert) is for ssl:// servers".into(),
        ));
    }
    if !url.starts_with("tcp://") {
        return Err(bad("expected tcp://HOST:PORT or ssl://HOST:PORT".into()));
    }
    Ok(Box::new(ElectrumBackend::new(url, network, tcp_dial(url))?))
}

fn tcp_dial(url: &str) -> Dial<electrum_client::Client> {
    let u = url.to_string();
    Box::new(move || {
        let config = electrum_client::ConfigBuilder::new()
            .timeout(Some(TIMEOUT))
            .retry(1)
            .build();
        electrum_client::Client::from_config(&u, config).map_err(|e| e.to_string())
    })
}

/// A failure of the connection rather than an answer from the server.
fn is_transport(e: &electrum_client::Error) -> bool {
    use electrum_client::Error as E;
    matches!(
        e,
        E::IOError(_) | E::SharedIOError(_) | E::AllAttemptsErrored(_) | E::CouldntLockReader
    )
}

impl<E: ElectrumApi + Send + Sync> ElectrumBackend<E> {
    fn new(url: &str, network: Network, dial: Dial<E>) -> Result<Self, ChainError> {
        let inner = dial().map_err(|msg| ChainError::Backend {
            url: url.into(),
            msg,
        })?;
        let b = ElectrumBackend {
            url: url.into(),
            network,
            client: RwLock::new(Arc::new(BdkElectrumClient::new(inner))),
            dial,
        };
        let genesis = b.call(|c| c.inner.block_header(0)).map_err(|e| b.err(e))?;
        if genesis.block_hash() != genesis_block(network).block_hash() {
            return Err(ChainError::WrongNetwork {
                url: url.into(),
                ours: network,
                theirs: format!("a chain with genesis {}", genesis.block_hash()),
            });
        }
        Ok(b)
    }

    /// Runs `f` on the client; after a dropped connection, dials once more.
    fn call<T>(
        &self,
        f: impl Fn(&BdkElectrumClient<E>) -> Result<T, electrum_client::Error>,
    ) -> Result<T, electrum_client::Error> {
        let client = self.client.read().expect("client lock").clone();
        match f(&client) {
            Err(e) if is_transport(&e) => {
                tracing::debug!(url = %self.url, error = %e, "chain server connection lost; dialing again");
                let fresh = match (self.dial)() {
                    Ok(inner) => Arc::new(BdkElectrumClient::new(inner)),
                    Err(_) => return Err(e),
                };
                *self.client.write().expect("client lock") = fresh.clone();
                f(&fresh)
            }
            r => r,
        }
    }

    fn err(&self, e: electrum_client::Error) -> ChainError {
        ChainError::Backend {
            url: self.url.clone(),
            msg: e.to_string(),
        }
    }
}

impl<E: ElectrumApi + Send + Sync> ChainBackend for ElectrumBackend<E> {
    fn network(&self) -> Network {
        self.network
    }

    fn sync_wallet(&self, wallet: &mut Wallet) -> Result<(), ChainError> {
        let update = self
            .call(|c| c.full_scan(wallet.start_full_scan(), STOP_GAP, BATCH, true))
            .map_err(|e| self.err(e))?;
        wallet
            .apply_update(update)
            .map_err(|e| ChainError::Connect(e.to_string()))
    }

    fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        match self.call(|c| c.transaction_broadcast(tx)) {
            Ok(txid) => Ok(txid),
            Err(electrum_client::Error::Protocol(v)) => {
                let msg = v
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                let reason = super::reject_reason(&msg);
                if super::already_known(&reason) {
                    return Ok(tx.compute_txid());
                }
                Err(ChainError::Rejected(reason))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    fn tx_status(&self, txid: &Txid, spk: &Script) -> Result<TxStatus, ChainError> {
        let history = self
            .call(|c| c.inner.script_get_history(spk))
            .map_err(|e| self.err(e))?;
        let Some(h) = history.iter().find(|h| h.tx_hash == *txid) else {
            return Ok(TxStatus::Unknown);
        };
        if h.height <= 0 {
            return Ok(TxStatus::Mempool);
        }
        let tip = self.tip_height()?;
        let height = h.height as u32;
        Ok(TxStatus::Confirmed {
            height,
            confirmations: tip.saturating_sub(height) + 1,
        })
    }

    fn get_tx(&self, txid: &Txid) -> Result<Option<Transaction>, ChainError> {
        match self.call(|c| c.inner.transaction_get(txid)) {
            Ok(tx) => Ok(Some(tx)),
            Err(electrum_client::Error::Protocol(_)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    fn tip_height(&self) -> Result<u32, ChainError> {
        let n = self
            .call(|c| c.inner.block_headers_subscribe())
            .map_err(|e| self.err(e))?;
        Ok(n.height as u32)
    }

    fn fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError> {
        let btc_per_kvb = self
            .call(|c| c.inner.estimate_fee(target_blocks as usize, None))
            .map_err(|e| self.err(e))?;
        if btc_per_kvb <= 0.0 {
            return Ok(None);
        }
        let sat_per_kwu = (btc_per_kvb * 1e8 / 4.0).ceil() as u64;
        Ok(Some(FeeRate::from_sat_per_kwu(sat_per_kwu)))
    }

    fn output_status(&self, outpoint: &OutPoint, spk: &Script) -> Result<OutputStatus, ChainError> {
        // The script's history holds the creating transaction and any that
        // spends from it; listunspent is not used, as ElectrumX's view of
        // unconfirmed outputs can lag its history.
        let history = self
            .call(|c| c.inner.script_get_history(spk))
            .map_err(|e| self.err(e))?;
        if !history.iter().any(|h| h.tx_hash == outpoint.txid) {
            return Ok(OutputStatus::Unknown);
        }
        for h in history.iter().filter(|h| h.tx_hash != outpoint.txid) {
            let tx = self
                .call(|c| c.inner.transaction_get(&h.tx_hash))
                .map_err(|e| self.err(e))?;
            if tx.input.iter().any(|i| i.previous_output == *outpoint) {
                return Ok(OutputStatus::Spent);
            }
        }
        Ok(OutputStatus::Unspent)
    }
}
