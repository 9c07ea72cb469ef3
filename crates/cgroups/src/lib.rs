#![forbid(unsafe_code)]
//! cgroups.
