//! The on-chain wallet: bdk_wallet persisted in SQLite, BIP84 descriptors from
//! a BIP39 mnemonic, plus the keys channels use.
//!
//! Why one seed for everything: backing up the words restores the coins and
//! every channel key (channel keys are derived, never stored): buyer keys at
//! `m/7777'/coin'/0'/i` (one per channel, `i` kept in the channel store) and
//! the seller's node key at `m/7777'/coin'/1'/0`. The mnemonic file and the
//! wallet database are created 0600; neither keys nor words are ever logged.

use crate::chain::{ChainBackend, ChainError};
use crate::config::{touch_private, write_private, Config, ConfigError, Home};
use crate::pay::bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv};
use crate::pay::bitcoin::secp256k1::{Secp256k1, SecretKey};
use crate::pay::bitcoin::{
    address::NetworkUnchecked, Address, Amount, FeeRate, Network, PublicKey, ScriptBuf,
    Transaction, Txid,
};
use bdk_wallet::template::Bip84;
use bdk_wallet::{KeychainKind, PersistedWallet, SignOptions, Wallet};
use rusqlite::Connection;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("a wallet already exists in {0}; refusing to overwrite it")]
    Exists(String),
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    #[error("wallet database: {0}")]
    Db(String),
    #[error("the wallet file is for {found}, the config says {config}")]
    WrongNetwork { config: Network, found: String },
    #[error("address {addr} is not a {network} address")]
    AddressNetwork { addr: String, network: Network },
    #[error("cannot build the transaction: {0}")]
    Build(String),
    #[error("cannot sign the transaction: {0}")]
    Sign(String),
}

pub struct BttWallet {
    pub wallet: PersistedWallet<Connection>,
    conn: Connection,
    xprv: Xpriv,
    pub config: Config,
}

fn coin_type(network: Network) -> u32 {
    if network == Network::Bitcoin {
        0
    } else {
        1
    }
}

impl BttWallet {
    /// Creates a wallet in `home`: the config, the mnemonic (new, or `words`
    /// to import) and the wallet database. Returns the words to show once.
    pub fn init(
        home: &Home,
        config: Config,
        words: Option<&str>,
    ) -> Result<(BttWallet, bip39::Mnemonic), WalletError> {
        if home.mnemonic().exists() || home.wallet_db().exists() {
            return Err(WalletError::Exists(home.dir.display().to_string()));
        }
        let mnemonic = match words {
            Some(w) => bip39::Mnemonic::parse_normalized(w.trim())
                .map_err(|e| WalletError::Mnemonic(e.to_string()))?,
            None => {
                let entropy: [u8; 16] = rand::random();
                bip39::Mnemonic::from_entropy(&entropy)
                    .map_err(|e| WalletError::Mnemonic(e.to_string()))?
            }
        };
        config.network()?;
        home.save_config(&config)?;
        write_private(&home.mnemonic(), format!("{mnemonic}\n").as_bytes())?;
        let w = Self::open(home)?;
        Ok((w, mnemonic))
    }

    /// Opens the wallet in `home`, checking that every file agrees on the network.
    pub fn open(home: &Home) -> Result<BttWallet, WalletError> {
        let config = home.load_config()?;
        let network = config.network()?;
        let words = std::fs::read_to_string(home.mnemonic()).map_err(|source| ConfigError::Io {
            path: home.mnemonic().display().to_string(),
            source,
        })?;
        let mnemonic = bip39::Mnemonic::parse_normalized(words.trim())
            .map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        let seed = mnemonic.to_seed("");
        let xprv =
            Xpriv::new_master(network, &seed).map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        touch_private(&home.wallet_db()).map_err(|source| ConfigError::Io {
            path: home.wallet_db().display().to_string(),
            source,
        })?;
        let mut conn =
            Connection::open(home.wallet_db()).map_err(|e| WalletError::Db(e.to_string()))?;
        let loaded = Wallet::load()
            .descriptor(
                KeychainKind::External,
                Some(Bip84(xprv, KeychainKind::External)),
            )
            .descriptor(
                KeychainKind::Internal,
                Some(Bip84(xprv, KeychainKind::Internal)),
            )
            .check_network(network)
            .load_wallet(&mut conn);
        let wallet = match loaded {
            Ok(Some(w)) => w,
            Ok(None) => Wallet::create(
                Bip84(xprv, KeychainKind::External),
                Bip84(xprv, KeychainKind::Internal),
            )
            .network(network)
            .create_wallet(&mut conn)
            .map_err(|e| WalletError::Db(e.to_string()))?,
            Err(bdk_wallet::LoadWithPersistError::InvalidChangeSet(
                bdk_wallet::LoadError::Mismatch(bdk_wallet::LoadMismatch::Network {
                    loaded, ..
                }),
            )) => {
                return Err(WalletError::WrongNetwork {
                    config: network,
                    found: loaded.to_string(),
                })
            }
            Err(e) => return Err(WalletError::Db(e.to_string())),
        };
        Ok(BttWallet {
            wallet,
            conn,
            xprv,
            config,
        })
    }

    pub fn network(&self) -> Network {
        self.wallet.network()
    }

    fn persist(&mut self) -> Result<(), WalletError> {
        self.wallet
            .persist(&mut self.conn)
            .map_err(|e| WalletError::Db(e.to_string()))?;
        Ok(())
    }

    /// A fresh receive address (revealed and persisted so it is watched).
    pub fn address(&mut self) -> Result<Address, WalletError> {
        let a = self
            .wallet
            .reveal_next_address(KeychainKind::External)
            .address;
        self.persist()?;
        Ok(a)
    }

    pub fn balance(&self) -> bdk_wallet::Balance {
        self.wallet.balance()
    }

    pub fn sync(&mut self, backend: &dyn ChainBackend) -> Result<(), WalletError> {
        self.check_backend(backend)?;
        backend.sync_wallet(&mut self.wallet)?;
        self.persist()
    }

    fn check_backend(&self, backend: &dyn ChainBackend) -> Result<(), WalletError> {
        if backend.network() != self.network() {
            return Err(WalletError::WrongNetwork {
                config: self.network(),
                found: backend.network().to_string(),
            });
        }
        Ok(())
    }

    /// Checks that `addr` belongs to the wallet's network.
    pub fn check_address(&self, addr: Address<NetworkUnchecked>) -> Result<Address, WalletError> {
        let shown = format!("{addr:?}");
        addr.require_network(self.network())
            .map_err(|_| WalletError::AddressNetwork {
                addr: shown,
                network: self.network(),
            })
    }

    /// Builds and signs a transaction paying `amount` to `script`; not broadcast.
    pub fn build_payment(
        &mut self,
        script: ScriptBuf,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<Transaction, WalletError> {
        let mut b = self.wallet.build_tx();
        b.add_recipient(script, amount).fee_rate(fee_rate);
        let mut psbt = b.finish().map_err(|e| WalletError::Build(e.to_string()))?;
        let secp = Secp256k1::new();
        psbt.sign(&self.xprv, &secp).map_err(|(_, errors)| {
            WalletError::Sign(format!("{} input(s) failed", errors.len()))
        })?;
        let done = self
            .wallet
            .finalize_psbt(&mut psbt, SignOptions::default())
            .map_err(|e| WalletError::Sign(e.to_string()))?;
        if !done {
            return Err(WalletError::Sign("not every input could be signed".into()));
        }
        let tx = psbt
            .extract_tx()
            .map_err(|e| WalletError::Build(e.to_string()))?;
        self.persist()?;
        Ok(tx)
    }

    /// Broadcasts a transaction of ours and records it as unconfirmed.
    pub fn broadcast(
        &mut self,
        backend: &dyn ChainBackend,
        tx: Transaction,
    ) -> Result<Txid, WalletError> {
        self.check_backend(backend)?;
        let txid = backend.broadcast(&tx)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.wallet.apply_unconfirmed_txs([(Arc::new(tx), now)]);
        self.persist()?;
        Ok(txid)
    }

    /// `btt wallet send`.
    pub fn send(
        &mut self,
        backend: &dyn ChainBackend,
        to: Address,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<Txid, WalletError> {
        let tx = self.build_payment(to.script_pubkey(), amount, fee_rate)?;
        self.broadcast(backend, tx)
    }

    /// The public descriptors (no private keys), for a watch-only copy.
    pub fn public_descriptors(&self) -> (String, String) {
        (
            self.wallet
                .public_descriptor(KeychainKind::External)
                .to_string(),
            self.wallet
                .public_descriptor(KeychainKind::Internal)
                .to_string(),
        )
    }

    fn derive(&self, path: [ChildNumber; 4]) -> SecretKey {
        let secp = Secp256k1::new();
        let path = DerivationPath::from(path.to_vec());
        self.xprv
            .derive_priv(&secp, &path)
            .expect("BIP32 derivation of a fixed-length path")
            .private_key
    }

    /// The buyer's key for channel number `index`.
    pub fn channel_key(&self, index: u32) -> SecretKey {
        let coin = coin_type(self.network());
        self.derive([
            ChildNumber::from_hardened_idx(7777).expect("index"),
            ChildNumber::from_hardened_idx(coin).expect("index"),
            ChildNumber::from_hardened_idx(0).expect("index"),
            ChildNumber::from_normal_idx(index).expect("channel index below 2^31"),
        ])
    }

    /// The seller's node key, announced in the extension handshake.
    pub fn node_key(&self) -> SecretKey {
        let coin = coin_type(self.network());
        self.derive([
            ChildNumber::from_hardened_idx(7777).expect("index"),
            ChildNumber::from_hardened_idx(coin).expect("index"),
            ChildNumber::from_hardened_idx(1).expect("index"),
            ChildNumber::from_normal_idx(0).expect("index"),
        ])
    }

    /// A fresh payout script of ours (a new receive address).
    pub fn payout_script(&mut self) -> Result<ScriptBuf, WalletError> {
        Ok(self.address()?.script_pubkey())
    }

    /// The payout script a seller offers in `accept`: the first receive
    /// address not used yet, the same one until a close pays it. Proposals
    /// cost an attacker nothing, so they must not reveal address after
    /// address: a wallet restored from the words scans only a gap of unused
    /// addresses and would miss payouts beyond it.
    pub fn offered_payout_script(&mut self) -> Result<ScriptBuf, WalletError> {
        let a = self
            .wallet
            .next_unused_address(KeychainKind::External)
            .address;
        self.persist()?;
        Ok(a.script_pubkey())
    }
}

/// The compressed public key of `sk`.
impl BttWallet {
    /// A transaction this wallet knows (as of its last sync) that spends
    /// `outpoint`: how a buyer learns the txid of the close a seller made (it
    /// pays the buyer's change to this wallet).
    pub fn spender_of(
        &self,
        outpoint: &crate::pay::bitcoin::OutPoint,
    ) -> Option<crate::pay::bitcoin::Txid> {
        self.wallet
            .transactions()
            .find(|c| {
                c.tx_node
                    .tx
                    .input
                    .iter()
                    .any(|i| i.previous_output == *outpoint)
            })
            .map(|c| c.tx_node.txid)
    }
}

pub fn public_key(sk: &SecretKey) -> PublicKey {
    PublicKey::new(sk.public_key(&Secp256k1::signing_only()))
}
