#![forbid(unsafe_code)]
//! OCI and Docker images: references, manifests, index and platform choice, config, docker-archive and OCI layout
