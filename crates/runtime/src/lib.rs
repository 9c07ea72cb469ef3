#![forbid(unsafe_code)]
//! runtime.
