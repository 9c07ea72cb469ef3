#![forbid(unsafe_code)]
//! Docker Engine API server.
