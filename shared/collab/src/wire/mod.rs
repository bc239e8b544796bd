//! Wire messages: what replicas send each other through SNS ([`replication`]) and what editors
//! and this backend send each other over a WebSocket ([`socket`]). Pure data and their size
//! limits; nothing here does I/O.

pub mod replication;
pub mod socket;

pub use replication::{Broadcast, Envelope, Outbound, SNS_MAX_BYTES, split};
pub use socket::{
    ClientMessage, MAX_PRESENCE_COLOR, MAX_PRESENCE_NAME, PresenceAnchors, ServerMessage,
    WS_MAX_BYTES, encode_for_socket,
};
