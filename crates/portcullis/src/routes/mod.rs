//! The request handlers, one module per route family. Each reads its request, runs it through
//! the rooms below (authentication, guards, books, upstream) and ends it through
//! [`crate::lifecycle`].

pub mod chat;
pub mod passthrough;
pub mod scan;
pub mod stream;
