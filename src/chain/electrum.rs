//! Electrum backend (bdk_electrum). The network is checked by comparing the
//! server's block 0 with the configured network's genesis block.

use super::{ChainBackend, ChainError, OutputStatus, TxStatus};
use crate::pay::bitcoin::{
    constants::genesis_block, FeeRate, Network, OutPoint, Script, Transaction, Txid,
};
use bdk_electrum::electrum_client::{self, ElectrumApi};
use bdk_electrum::BdkElectrumClient;
use bdk_wallet::Wallet;
use std::time::Duration;

const STOP_GAP: usize = 20;
const BATCH: usize = 10;

pub struct ElectrumBackend {
    url: String,
    network: Network,
    client: BdkElectrumClient<electrum_client::Client>,
}

impl ElectrumBackend {
    pub fn connect(url: &str, network: Network) -> Result<Self, ChainError> {
        let config = electrum_client::ConfigBuilder::new()
            .timeout(Some(Duration::from_secs(20)))
            .retry(1)
            .build();
        let inner =
            electrum_client::Client::from_config(url, config).map_err(|e| ChainError::Backend {
                url: url.into(),
                msg: e.to_string(),
            })?;
        let b = ElectrumBackend {
            url: url.into(),
            network,
            client: BdkElectrumClient::new(inner),
        };
        let genesis = b.client.inner.block_header(0).map_err(|e| b.err(e))?;
        if genesis.block_hash() != genesis_block(network).block_hash() {
            return Err(ChainError::WrongNetwork {
                url: url.into(),
                ours: network,
                theirs: format!("a chain with genesis {}", genesis.block_hash()),
            });
        }
        Ok(b)
    }

    fn err(&self, e: electrum_client::Error) -> ChainError {
        ChainError::Backend {
            url: self.url.clone(),
            msg: e.to_string(),
        }
    }
}

impl ChainBackend for ElectrumBackend {
    fn network(&self) -> Network {
        self.network
    }

    fn sync_wallet(&self, wallet: &mut Wallet) -> Result<(), ChainError> {
        let request = wallet.start_full_scan();
        let update = self
            .client
            .full_scan(request, STOP_GAP, BATCH, true)
            .map_err(|e| self.err(e))?;
        wallet
            .apply_update(update)
            .map_err(|e| ChainError::Connect(e.to_string()))
    }

    fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        match self.client.transaction_broadcast(tx) {
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
            .client
            .inner
            .script_get_history(spk)
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
        match self.client.inner.transaction_get(txid) {
            Ok(tx) => Ok(Some(tx)),
            Err(electrum_client::Error::Protocol(_)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    fn tip_height(&self) -> Result<u32, ChainError> {
        let n = self
            .client
            .inner
            .block_headers_subscribe()
            .map_err(|e| self.err(e))?;
        Ok(n.height as u32)
    }

    fn fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError> {
        let btc_per_kvb = self
            .client
            .inner
            .estimate_fee(target_blocks as usize, None)
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
            .client
            .inner
            .script_get_history(spk)
            .map_err(|e| self.err(e))?;
        if !history.iter().any(|h| h.tx_hash == outpoint.txid) {
            return Ok(OutputStatus::Unknown);
        }
        for h in history.iter().filter(|h| h.tx_hash != outpoint.txid) {
            let tx = self
                .client
                .inner
                .transaction_get(&h.tx_hash)
                .map_err(|e| self.err(e))?;
            if tx.input.iter().any(|i| i.previous_output == *outpoint) {
                return Ok(OutputStatus::Spent);
            }
        }
        Ok(OutputStatus::Unspent)
    }
}
