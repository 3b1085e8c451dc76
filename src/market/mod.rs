//! The I/O around [`crate::pay`]: following channels on chain (and, as the
//! layers settle, the buyer agent, seller node and payment worker). `pay`
//! decides; this module asks the chain and the stores and applies it.

pub mod follow;
