#![forbid(unsafe_code)]
//! The SQLite store of images, tags, layers, containers and events, with schema migrations
