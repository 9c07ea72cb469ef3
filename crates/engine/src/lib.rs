#![forbid(unsafe_code)]
//! The daemon's domain logic: images, containers, events and system facts.
//! Knows nothing of HTTP: the `api` crate maps requests onto it and its
//! errors onto status codes.

pub mod containers;
pub mod error;
pub mod events;
pub mod images;
pub mod registry_client;
pub mod spec;
pub mod system;

use std::path::PathBuf;

pub use error::{Error, Result};
pub use events::{Event, EventBus, EventFilter};

/// Where and how the engine keeps its state (dockerd's flags and daemon.json keys).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// `overlay2` or `vfs`; `None` picks overlay2 when it can be mounted.
    pub storage_driver: Option<String>,
    pub containers: containers::ContainerSettings,
    /// Insecure registries, mirrors and the certs.d directory.
    pub registry: registry_client::RegistrySettings,
    /// Layers moved at once by one pull or push.
    pub transfers: registry_client::TransferLimits,
}

pub struct Engine {
    config: EngineConfig,
    id: String,
    events: std::sync::Arc<EventBus>,
    images: std::sync::Arc<images::ImageService>,
    containers: std::sync::Arc<containers::ContainerService>,
    started: std::time::SystemTime,
}

impl Engine {
    /// Opens (creating if needed) the engine's state under the data root.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        for dir in [&config.data_root, &config.exec_root] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let id = system::engine_id(&config.data_root)?;
        let events = std::sync::Arc::new(EventBus::new(1024));
        let images = std::sync::Arc::new(images::ImageService::open(
            &config.data_root,
            config.storage_driver.as_deref(),
            events.clone(),
        )?);
        let containers = containers::ContainerService::open(
            images.clone(),
            events.clone(),
            config.containers.clone(),
            &config.data_root,
            &config.exec_root,
            system::host_info().hostname,
        )?;
        Ok(Engine {
            config,
            id,
            events,
            images,
            containers,
            started: std::time::SystemTime::now(),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn images(&self) -> &images::ImageService {
        &self.images
    }

    pub fn containers(&self) -> &containers::ContainerService {
        &self.containers
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn started(&self) -> std::time::SystemTime {
        self.started
    }
}
