//! The I/O around [`crate::pay`]: the buyer's one-shot channel commands
//! ([`buyer`]: open, resume, pay, close, refund over a blocking connection),
//! the buyer agent inside a mount with its payment workers ([`buying`]), the
//! seller node ([`seller_node`]: answers `btt_pay`, watches fundings, closes;
//! [`admit`] limits proposals per IP),
//! and channel states that follow the chain ([`follow`]). `pay` holds the
//! rules and transactions without I/O; this module talks to sockets, the
//! stores, the wallet and the chain, and implements the engine's hook traits.

pub mod admit;
pub mod buyer;
pub mod buying;
pub mod follow;
pub mod seller_node;
