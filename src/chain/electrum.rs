//! Electrum backend (bdk_electrum), over TCP (`tcp://`) or TLS (`ssl://`,
//! see [`super::tls`]). The network is checked by comparing the server's
//! block 0 with the configured network's genesis block.
//!
//! A long-running seller keeps one backend for hours; when its connection
//! drops, the next call dials again once before it reports an error.
//!
//! One call at a time: a seller's chain watcher and its peers' funding
//! checks share a backend from several threads, and electrum-client's
//! hand-over of the socket reader between waiting callers can be lost (the
//! reader wakes a waiter while still holding the reader lock; the waiter
//! goes back to sleep and nobody reads again), which left the watcher
//! blocked for ever and channels unclosed at expiry. So the client sits
//! behind a mutex held for the whole call, redial included. The header
//! notifications the server pushes after `blockchain.headers.subscribe` are
//! drained on each tip query, so they do not pile up for as long as a seller
//! runs.

use super::tls::{self, TlsStream};
use super::{ChainBackend, ChainError, OutputStatus, TxStatus};
use crate::pay::bitcoin::{
    constants::genesis_block, FeeRate, Network, OutPoint, Script, Transaction, Txid,
};
use bdk_electrum::electrum_client::{self, raw_client::RawClient, ElectrumApi};
use bdk_electrum::BdkElectrumClient;
use bdk_wallet::Wallet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

const STOP_GAP: usize = 20;
const BATCH: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(20);

type Dial<E> = Box<dyn Fn() -> Result<E, String> + Send + Sync>;

pub struct ElectrumBackend<E> {
    url: String,
    network: Network,
    client: Mutex<BdkElectrumClient<E>>,
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
            client: Mutex::new(BdkElectrumClient::new(inner)),
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

    /// The client, for one caller at a time. A caller that panicked while
    /// holding it does not make it unusable for the others.
    fn client(&self) -> MutexGuard<'_, BdkElectrumClient<E>> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the client, holding it; after a dropped connection, dials
    /// once more.
    fn call<T>(
        &self,
        f: impl Fn(&BdkElectrumClient<E>) -> Result<T, electrum_client::Error>,
    ) -> Result<T, electrum_client::Error> {
        let mut client = self.client();
        match f(&client) {
            Err(e) if is_transport(&e) => {
                tracing::debug!(url = %self.url, error = %e, "chain server connection lost; dialing again");
                match (self.dial)() {
                    Ok(inner) => *client = BdkElectrumClient::new(inner),
                    Err(_) => return Err(e),
                };
                f(&client)
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
        let tip = self
            .call(|c| {
                let mut tip = c.inner.block_headers_subscribe()?.height;
                // Pushed notifications: the newest of them may be newer.
                while let Some(h) = c.inner.block_headers_pop()? {
                    tip = tip.max(h.height);
                }
                Ok(tip)
            })
            .map_err(|e| self.err(e))?;
        Ok(tip as u32)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pay::bitcoin::consensus::encode::serialize_hex;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    /// A minimal Electrum server on 127.0.0.1: answers the block-0 header
    /// and `blockchain.headers.subscribe`, each request on its own line,
    /// and sends a header notification every few answers.
    fn fake_server() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        let header = serialize_hex(&genesis_block(Network::Regtest).header);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let header = header.clone();
                std::thread::spawn(move || {
                    let mut out = conn.try_clone().unwrap();
                    let mut n = 0u64;
                    for line in BufReader::new(conn).lines() {
                        let Ok(line) = line else { return };
                        let req: serde_json::Value = serde_json::from_str(&line).unwrap();
                        let result = match req["method"].as_str() {
                            Some("server.version") => serde_json::json!(["fake", "1.4"]),
                            Some("blockchain.block.header") => serde_json::json!(header),
                            Some("blockchain.headers.subscribe") => {
                                serde_json::json!({"height": 100, "hex": header})
                            }
                            _ => serde_json::Value::Null,
                        };
                        n += 1;
                        let mut reply = String::new();
                        if n.is_multiple_of(7) {
                            reply += &serde_json::json!({"jsonrpc": "2.0",
                                "method": "blockchain.headers.subscribe",
                                "params": [{"height": 100, "hex": header}]})
                            .to_string();
                            reply.push('\n');
                        }
                        reply += &serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "result": result})
                            .to_string();
                        reply.push('\n');
                        if out.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    /// Threads sharing one backend (a seller's watcher and its peers' funding
    /// checks) all get their answers: none waits for ever on a reply that
    /// another thread read (electrum-client hands the reading over between
    /// callers, and a hand-over can be lost).
    #[test]
    fn concurrent_calls_on_one_backend_all_return() {
        let url = fake_server();
        let b: Arc<dyn ChainBackend> = Arc::from(connect(&url, None, Network::Regtest).unwrap());
        let (done, finished) = std::sync::mpsc::channel();
        let threads = 6;
        for _ in 0..threads {
            let (b, done) = (b.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    assert_eq!(b.tip_height().unwrap(), 100);
                }
                let _ = done.send(());
            });
        }
        for i in 0..threads {
            finished
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{} of {threads} callers hung", threads - i));
        }
    }

    /// Header notifications the server pushes do not pile up in the client
    /// (one per block, for as long as a seller runs).
    #[test]
    fn header_notifications_do_not_pile_up() {
        let url = fake_server();
        let b = ElectrumBackend::new(&url, Network::Regtest, tcp_dial(&url)).unwrap();
        for _ in 0..100 {
            assert_eq!(b.tip_height().unwrap(), 100);
        }
        let client = b.client();
        let mut queued = 0;
        while client.inner.block_headers_pop().unwrap().is_some() {
            queued += 1;
        }
        assert!(queued <= 1, "{queued} header notifications queued");
    }
}
