#![forbid(unsafe_code)]
//! Content-addressed blob store: ingest, verify digest, commit atomically, GC by references
