//! The money side's configuration: one `config.toml` in the btt home directory.
//!
//! Why a file and not flags: the network and the chain backend must be the
//! same for every command that touches the wallet or a channel (`btt wallet`,
//! `btt channels`, `btt seed --sell`), otherwise a regtest key could end up
//! signing for mainnet. So the network is chosen once at `btt wallet init`,
//! written here, and every later check (wallet file, backend, peer, channel)
//! compares against it.
//!
//! Layout of the home directory (default `$XDG_DATA_HOME/btt`, override with
//! `--home` or `BTT_HOME`), every file created 0600:
//! - `config.toml`: this file;
//! - `mnemonic`: the BIP39 words (the only secret; back it up);
//! - `wallet.sqlite`: bdk's wallet state;
//! - `channels.sqlite`: channel state ([`crate::chanstore`]).

use crate::pay::bitcoin::Network;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid btt config: {msg}")]
    Parse { path: String, msg: String },
    #[error("no wallet in {0}: run `btt wallet init` first")]
    NoWallet(String),
    #[error("unknown network {0:?} (expected bitcoin, testnet4, signet or regtest)")]
    UnknownNetwork(String),
}

/// Which chain backend the wallet and channels use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    /// An Electrum server, `tcp://host:port` or `ssl://host:port`.
    Electrum {
        url: String,
        /// The `ssl://` server's own certificate (PEM), pinned: most
        /// Electrum servers' certificates are self-signed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cert: Option<PathBuf>,
    },
    /// Bitcoin Core (or compatible) JSON-RPC, `http://host:port`.
    Rpc {
        url: String,
        #[serde(default)]
        user: String,
        #[serde(default)]
        password: String,
        /// A cookie file instead of user/password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cookie: Option<PathBuf>,
    },
}

impl BackendConfig {
    /// The server, as shown to the user (never the password).
    pub fn describe(&self) -> String {
        match self {
            BackendConfig::Electrum { url, cert: None } => format!("Electrum server {url}"),
            BackendConfig::Electrum { url, cert: Some(c) } => {
                format!("Electrum server {url} (pinned certificate {})", c.display())
            }
            BackendConfig::Rpc { url, .. } => format!("JSON-RPC server {url}"),
        }
    }
}

/// Channel policy, for both roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelConfig {
    /// Seller: the largest unconfirmed funding it accepts (sat); 0 waits for
    /// `min_confirmations`.
    pub zero_conf_limit_sat: u64,
    /// Seller: confirmations needed above the zero-conf limit.
    pub min_confirmations: u32,
    /// Seller: accepted channel lifetime, in blocks from the current tip.
    pub min_expiry_blocks: u32,
    pub max_expiry_blocks: u32,
    /// Seller: close this many blocks before expiry.
    pub close_margin_blocks: u32,
    /// Buyer: lifetime asked for new channels.
    pub expiry_blocks: u32,
    /// Fee rate (sat/vB) used when the backend has no estimate.
    pub fallback_fee_rate: u64,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            zero_conf_limit_sat: 0,
            min_confirmations: 1,
            min_expiry_blocks: 144,
            max_expiry_blocks: 4032,
            close_margin_blocks: 12,
            expiry_blocks: 1008,
            fallback_fee_rate: 2,
        }
    }
}

/// Buyer defaults for mounts and `btt get` (flags override them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuyPrefs {
    /// e.g. "2000sat/GiB"; unset: never buy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_sat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_size_sat: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// bitcoin, testnet4, signet or regtest.
    pub network: String,
    pub backend: BackendConfig,
    #[serde(default)]
    pub channels: ChannelConfig,
    #[serde(default)]
    pub buy: BuyPrefs,
}

impl Config {
    pub fn network(&self) -> Result<Network, ConfigError> {
        parse_network(&self.network)
    }
}

pub fn parse_network(s: &str) -> Result<Network, ConfigError> {
    match s {
        "bitcoin" | "mainnet" => Ok(Network::Bitcoin),
        "testnet4" => Ok(Network::Testnet4),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        other => Err(ConfigError::UnknownNetwork(other.to_string())),
    }
}

/// The btt home directory and the paths inside it.
#[derive(Clone, Debug)]
pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    /// `explicit`, else `$BTT_HOME`, else `$XDG_DATA_HOME/btt`, else `~/.local/share/btt`.
    pub fn locate(explicit: Option<&Path>) -> Home {
        let dir = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("BTT_HOME").map(PathBuf::from))
            .or_else(|| std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("btt")))
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                PathBuf::from(home).join(".local/share/btt")
            });
        Home { dir }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn mnemonic(&self) -> PathBuf {
        self.dir.join("mnemonic")
    }
    pub fn wallet_db(&self) -> PathBuf {
        self.dir.join("wallet.sqlite")
    }
    pub fn channels_db(&self) -> PathBuf {
        self.dir.join("channels.sqlite")
    }

    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let path = self.config();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NoWallet(self.dir.display().to_string()))
            }
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        cfg.network()?;
        Ok(cfg)
    }

    pub fn save_config(&self, cfg: &Config) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(cfg).map_err(|e| ConfigError::Parse {
            path: self.config().display().to_string(),
            msg: e.to_string(),
        })?;
        write_private(&self.config(), text.as_bytes())
    }
}

/// Creates `path`'s parent directory (0700) if missing.
fn private_parent(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match path.parent() {
        Some(dir) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        None => Ok(()),
    }
}

/// Creates the directory (0700) and writes `path` with mode 0600, durably.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    };
    private_parent(path).map_err(io)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Creates an empty file with mode 0600 if it does not exist (so SQLite never
/// creates it with the umask's mode).
pub fn touch_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    private_parent(path)?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_network_check() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::locate(Some(dir.path()));
        assert!(matches!(home.load_config(), Err(ConfigError::NoWallet(_))));
        let cfg = Config {
            network: "regtest".into(),
            backend: BackendConfig::Electrum {
                url: "tcp://127.0.0.1:50001".into(),
                cert: None,
            },
            channels: ChannelConfig::default(),
            buy: BuyPrefs::default(),
        };
        home.save_config(&cfg).unwrap();
        assert_eq!(home.load_config().unwrap(), cfg);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.config())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(
            home.config(),
            "network = \"moon\"\n[backend]\nkind = \"electrum\"\nurl = \"x\"\n",
        )
        .unwrap();
        let e = home.load_config().unwrap_err().to_string();
        assert!(e.contains("moon"), "{e}");
    }
}
