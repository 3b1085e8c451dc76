//! Bitcoin Core JSON-RPC backend (bdk_bitcoind_rpc). Wallet sync walks blocks
//! with bdk's `Emitter` from the wallet's last checkpoint (so reorgs are
//! followed), then the mempool. Other calls use plain JSON so that replies
//! with extra or missing fields from Core-compatible nodes still parse.

use super::{ChainBackend, ChainError, OutputStatus, TxStatus};
use crate::pay::bitcoin::{
    consensus::encode, FeeRate, Network, OutPoint, Script, Transaction, Txid,
};
use bdk_bitcoind_rpc::bitcoincore_rpc::{self, jsonrpc, Auth, RpcApi};
use bdk_bitcoind_rpc::Emitter;
use bdk_wallet::Wallet;
use serde_json::{json, Value};
use std::path::Path;

pub struct RpcBackend {
    url: String,
    network: Network,
    client: bitcoincore_rpc::Client,
}

/// Core's "not found" error code.
const RPC_INVALID_ADDRESS_OR_KEY: i32 = -5;

fn core_chain_name(n: Network) -> &'static str {
    match n {
        Network::Bitcoin => "main",
        Network::Testnet => "test",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        _ => "regtest",
    }
}

impl RpcBackend {
    pub fn connect(
        url: &str,
        user: &str,
        password: &str,
        cookie: Option<&Path>,
        network: Network,
    ) -> Result<Self, ChainError> {
        let auth = match cookie {
            Some(c) => Auth::CookieFile(c.to_path_buf()),
            None if user.is_empty() && password.is_empty() => Auth::None,
            None => Auth::UserPass(user.into(), password.into()),
        };
        let client = bitcoincore_rpc::Client::new(url, auth).map_err(|e| ChainError::Backend {
            url: url.into(),
            msg: e.to_string(),
        })?;
        let b = RpcBackend {
            url: url.into(),
            network,
            client,
        };
        let info: Value = b.call("getblockchaininfo", &[])?;
        let chain = info["chain"].as_str().unwrap_or("?").to_string();
        if chain != core_chain_name(network) {
            return Err(ChainError::WrongNetwork {
                url: url.into(),
                ours: network,
                theirs: chain,
            });
        }
        Ok(b)
    }

    fn err(&self, e: impl std::fmt::Display) -> ChainError {
        ChainError::Backend {
            url: self.url.clone(),
            msg: e.to_string(),
        }
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: &[Value],
    ) -> Result<T, ChainError> {
        self.client.call(method, args).map_err(|e| self.err(e))
    }

    /// `Ok(None)` when the node answers "not found".
    fn call_opt<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: &[Value],
    ) -> Result<Option<T>, ChainError> {
        match self.client.call(method, args) {
            Ok(v) => Ok(Some(v)),
            Err(e) if rpc_code(&e) == Some(RPC_INVALID_ADDRESS_OR_KEY) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }
}

fn rpc_code(e: &bitcoincore_rpc::Error) -> Option<i32> {
    match e {
        bitcoincore_rpc::Error::JsonRpc(jsonrpc::Error::Rpc(r)) => Some(r.code),
        _ => None,
    }
}

impl ChainBackend for RpcBackend {
    fn network(&self) -> Network {
        self.network
    }

    fn sync_wallet(&self, wallet: &mut Wallet) -> Result<(), ChainError> {
        let start = wallet.latest_checkpoint().height();
        let unconfirmed: Vec<_> = wallet
            .transactions()
            .filter(|t| !t.chain_position.is_confirmed())
            .map(|t| t.tx_node.tx.clone())
            .collect();
        let mut emitter =
            Emitter::new(&self.client, wallet.latest_checkpoint(), start, unconfirmed);
        while let Some(ev) = emitter.next_block().map_err(|e| self.err(e))? {
            let (height, connected_to) = (ev.block_height(), ev.connected_to());
            wallet
                .apply_block_connected_to(&ev.block, height, connected_to)
                .map_err(|e| ChainError::Connect(e.to_string()))?;
        }
        let mempool = emitter.mempool().map_err(|e| self.err(e))?;
        wallet.apply_evicted_txs(mempool.evicted);
        wallet.apply_unconfirmed_txs(mempool.update);
        Ok(())
    }

    fn broadcast(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let hex = encode::serialize_hex(tx);
        match self
            .client
            .call::<Value>("sendrawtransaction", &[json!(hex)])
        {
            Ok(_) => Ok(tx.compute_txid()),
            Err(bitcoincore_rpc::Error::JsonRpc(jsonrpc::Error::Rpc(r))) => {
                // -27: already in the chain.
                if r.code == -27 || super::already_known(&r.message) {
                    return Ok(tx.compute_txid());
                }
                Err(ChainError::Rejected(format!(
                    "{} (code {})",
                    super::reject_reason(&r.message),
                    r.code
                )))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    fn tx_status(&self, txid: &Txid, _spk: &Script) -> Result<TxStatus, ChainError> {
        let Some(v) = self.call_opt::<Value>("getrawtransaction", &[json!(txid), json!(true)])?
        else {
            return Ok(TxStatus::Unknown);
        };
        let confs = v["confirmations"].as_i64().unwrap_or(0);
        if confs <= 0 || v["blockhash"].is_null() {
            return Ok(TxStatus::Mempool);
        }
        let tip = self.tip_height()?;
        let confirmations = confs as u32;
        Ok(TxStatus::Confirmed {
            height: (tip + 1).saturating_sub(confirmations),
            confirmations,
        })
    }

    fn get_tx(&self, txid: &Txid) -> Result<Option<Transaction>, ChainError> {
        let Some(hex) = self.call_opt::<String>("getrawtransaction", &[json!(txid)])? else {
            return Ok(None);
        };
        encode::deserialize_hex(&hex)
            .map(Some)
            .map_err(|e| self.err(format!("bad transaction {txid}: {e}")))
    }

    fn tip_height(&self) -> Result<u32, ChainError> {
        let n: u64 = self.call("getblockcount", &[])?;
        Ok(n as u32)
    }

    fn fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError> {
        let v: Value = self.call("estimatesmartfee", &[json!(target_blocks)])?;
        Ok(v["feerate"]
            .as_f64()
            .filter(|r| *r > 0.0)
            .map(|btc_per_kvb| FeeRate::from_sat_per_kwu((btc_per_kvb * 1e8 / 4.0).ceil() as u64)))
    }

    fn output_status(
        &self,
        outpoint: &OutPoint,
        _spk: &Script,
    ) -> Result<OutputStatus, ChainError> {
        let out: Value = self.call(
            "gettxout",
            &[json!(outpoint.txid), json!(outpoint.vout), json!(true)],
        )?;
        if !out.is_null() {
            return Ok(OutputStatus::Unspent);
        }
        let Some(tx) = self.get_tx(&outpoint.txid)? else {
            return Ok(OutputStatus::Unknown);
        };
        if (outpoint.vout as usize) >= tx.output.len() {
            return Ok(OutputStatus::Unknown);
        }
        // The transaction may have reached the mempool between the two
        // calls (a funding just broadcast): spent only if its output is
        // still missing now that the node knows the transaction.
        let again: Value = self.call(
            "gettxout",
            &[json!(outpoint.txid), json!(outpoint.vout), json!(true)],
        )?;
        Ok(if again.is_null() {
            OutputStatus::Spent
        } else {
            OutputStatus::Unspent
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};

    /// A JSON-RPC node on 127.0.0.1 answering each method from `answer`,
    /// which sees how many times the method was asked before.
    fn node(answer: fn(&str, usize) -> Value) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut asked = std::collections::HashMap::<String, usize>::new();
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut len = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    if len == 0 {
                        break;
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let req: Value = serde_json::from_slice(&body).unwrap();
                    let method = req["method"].as_str().unwrap().to_string();
                    let n = asked.entry(method.clone()).or_default();
                    let reply =
                        json!({"result": answer(&method, *n), "error": null, "id": req["id"]});
                    *n += 1;
                    let reply = reply.to_string();
                    let mut w = &s;
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                }
            }
        });
        url
    }

    fn funding() -> (Transaction, OutPoint) {
        use crate::pay::bitcoin::{absolute, transaction, Amount, ScriptBuf, TxOut};
        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![],
            output: vec![TxOut {
                value: Amount::from_sat(1000),
                script_pubkey: ScriptBuf::new(),
            }],
        };
        let op = OutPoint::new(tx.compute_txid(), 0);
        (tx, op)
    }

    /// Seen in the paid suite: a funding broadcast a moment before was
    /// reported spent (its output not yet in the node's view, the
    /// transaction found a call later), and the buyer gave up the channel.
    #[test]
    fn a_funding_that_reaches_the_mempool_between_two_calls_is_not_spent() {
        fn answer(method: &str, n: usize) -> Value {
            let (tx, _) = funding();
            match (method, n) {
                ("getblockchaininfo", _) => json!({"chain": "regtest"}),
                // Not yet in the mempool, then there.
                ("gettxout", 0) => Value::Null,
                ("gettxout", _) => json!({"value": 0.00001}),
                ("getrawtransaction", _) => json!(encode::serialize_hex(&tx)),
                _ => Value::Null,
            }
        }
        let url = node(answer);
        let rpc = RpcBackend::connect(&url, "u", "p", None, Network::Regtest).unwrap();
        let (_, op) = funding();
        assert_eq!(
            rpc.output_status(&op, &crate::pay::bitcoin::ScriptBuf::new())
                .unwrap(),
            OutputStatus::Unspent
        );
        fn spent(method: &str, _: usize) -> Value {
            let (tx, _) = funding();
            match method {
                "getblockchaininfo" => json!({"chain": "regtest"}),
                "getrawtransaction" => json!(encode::serialize_hex(&tx)),
                _ => Value::Null,
            }
        }
        let rpc = RpcBackend::connect(&node(spent), "u", "p", None, Network::Regtest).unwrap();
        assert_eq!(
            rpc.output_status(&op, &crate::pay::bitcoin::ScriptBuf::new())
                .unwrap(),
            OutputStatus::Spent
        );
    }
}
