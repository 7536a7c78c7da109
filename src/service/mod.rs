//! The WAL service: the protocol between `pgkeep archive-push`/`archive-get` and pgkeepd's
//! receiver (`wire`), and the client that speaks it (`client`). Database nodes send raw WAL and
//! a token; pgkeepd checks, compresses, encrypts and stores it, so the nodes hold neither the
//! store's credentials nor the repository's key.

pub mod client;
pub mod wire;

pub use client::{Client, Fetched};
pub use wire::{ErrorAnswer, Outcome, PushAnswer};
