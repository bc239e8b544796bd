//! A Replicated Growable Array (RGA) of characters with S4Vector identifiers, after Roh et al.,
//! "Replicated abstract data types: Building blocks for collaborative applications", JPDC 2011.
//!
//! Every replica of a document applies the same operations, in any order and any number of times,
//! and shows the same text. Operations are identified by S4Vectors (see [`S4Vector`]); an insert
//! lands after its reference, to the left of concurrent inserts with lower precedence; deletes
//! leave tombstones; an operation whose causes have not arrived waits in a buffer.
//!
//! **Positions are Unicode scalar values** (Rust `char`s): an index counts chars, not UTF-8 bytes
//! and not UTF-16 code units. Editors in JavaScript count UTF-16 code units: convert with
//! [`Rga::chars_to_utf16`] / [`Rga::utf16_to_chars`] (O(log n)), and have changes reported in
//! those units with [`Rga::set_units`].
//!
//! ```
//! use rga::{Rga, SiteId, VersionVector};
//!
//! let (alice, bob) = (SiteId(1), SiteId(2));
//! let mut a = Rga::new();
//! a.insert(alice, 0, "helo").unwrap();
//! let mut b = Rga::new();
//! b.apply_all(a.ops_since(&VersionVector::new())).unwrap();
//!
//! let before = b.version();
//! a.insert(alice, 3, "l").unwrap(); // "hello"
//! b.insert(bob, 4, "!").unwrap(); // "helo!"
//!
//! a.apply_all(b.ops_since(&before)).unwrap();
//! b.apply_all(a.ops_since(&before)).unwrap();
//! assert_eq!(a.text(), "hello!");
//! assert_eq!(b.text(), a.text());
//! ```
//!
//! Known property of RGA: when two users type *backwards* (each new char before the previous
//! one) at the same place concurrently, their chars can interleave. This crate keeps the paper's
//! rule rather than an unproven fix.

#![deny(missing_docs)]

mod apply;
mod bulk;
pub use bulk::BatchApplied;
mod check;
mod content;
mod encode;
pub use encode::{DECODE_ALLOC_BASE, DECODE_ALLOC_FACTOR, decode_ops, encode_ops};
mod error;
mod id;
mod index;
mod limits;
mod local;
mod log;
mod op;
mod pending;
mod replica;
mod stale;
mod tree;
mod version;

pub use apply::{Applied, Status};
pub use error::{BufferLimit, DecodeError, EditError, OpError};
pub use id::{CharId, IdRange, Precedence, S4Vector, SiteId};
pub use limits::{Limits, MAX_SAFE_INTEGER};
pub use local::{LocalEdit, NewOps};
pub use op::{Change, Op, Splice};
pub use replica::{Anchor, Rga, Units};
pub use version::VersionVector;
