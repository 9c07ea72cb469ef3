//! The image config (Docker's and OCI's, one format): a typed view for reading, the
//! original bytes for hashing. The image ID is the sha256 of the bytes exactly as
//! stored, so the config is never re-serialized for hashing.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};

/// A config blob: its bytes as stored, their digest (the image ID) and a parsed view.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageConfig {
    raw: Vec<u8>,
    digest: Digest,
    parsed: ConfigFile,
}

impl ImageConfig {
    /// Parses and validates a config blob (`rootfs.type` must be `layers`).
    pub fn from_bytes(raw: Vec<u8>) -> Result<ImageConfig> {
        let parsed: ConfigFile =
            serde_json::from_slice(&raw).map_err(|e| ImageError::json("image config", e))?;
        if parsed.rootfs.kind != "layers" {
            return Err(ImageError::InvalidConfig {
                reason: format!(
                    "rootfs.type is {:?}, expected \"layers\"",
                    parsed.rootfs.kind
                ),
            });
        }
        Ok(ImageConfig {
            digest: Digest::sha256_of(&raw),
            raw,
            parsed,
        })
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The config digest, which is the image ID.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn parsed(&self) -> &ConfigFile {
        &self.parsed
    }

    pub fn diff_ids(&self) -> &[Digest] {
        &self.parsed.rootfs.diff_ids
    }

    /// ChainIDs of every layer, bottom first.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(self.diff_ids())
    }
}

/// The parsed config. Fields this crate does not know are kept in `other`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_config: Option<ContainerConfig>,
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The `config` object: what a container made from the image starts with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub env: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub on_build: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(
        default,
        deserialize_with = "string_or_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub test: Option<Vec<String>>,
    /// Durations are nanoseconds, as Go's `time.Duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker's `StrSlice`: a JSON string is a one-element list.
fn string_or_list<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

/// ChainID of a stack of layers: the first is its diff_id, each next one is
/// `sha256(parent_chain_id + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The ChainID of the whole stack (of the top layer); `None` for no layers.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    chain_ids(diff_ids).pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(hex: &str) -> Digest {
        Digest::from_sha256_hex(hex).expect("hex")
    }

    /// Diff IDs and the ChainID dockerd 20.10 reported for the same two layers
    /// (`/var/lib/docker/image/overlay2/layerdb/sha256/<chain id>`).
    #[test]
    fn chain_ids_match_dockerd() {
        let l1 = d("1935d4c3f7b8f00e9ab4aa9782af13e57d5fab3ffde60452aec137e23afc259d");
        let l2 = d("d4119065dc51de6437310faf32edc788a502c9a6afbdef14d2f1d36b03ce8e42");
        let ids = chain_ids(&[l1.clone(), l2.clone()]);
        assert_eq!(ids[0], l1);
        assert_eq!(ids[1], Digest::sha256_of(format!("{l1} {l2}").as_bytes()),);
        assert_eq!(ids[1].hex(), CHAIN_2);
        assert_eq!(chain_id(&[]), None);
    }

    const CHAIN_2: &str = "a728a2d2af5a88ec6d7fcf55bd3b443de09c5fb3d1004f134429513a4b5e2c50";

    #[test]
    fn keeps_raw_bytes_and_unknown_fields() {
        let raw = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":"sh","Env":null,"X-New":true},
            "rootfs":{"type":"layers","diff_ids":[]},"history":null,"moby.buildkit.buildinfo.v1":"e30="}"#;
        let cfg = ImageConfig::from_bytes(raw.to_vec()).expect("config");
        assert_eq!(cfg.raw(), raw);
        assert_eq!(cfg.digest(), &Digest::sha256_of(raw));
        let p = cfg.parsed();
        let c = p.config.as_ref().expect("config object");
        assert_eq!(c.cmd.as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(c.env, None);
        assert_eq!(c.other.get("X-New"), Some(&serde_json::json!(true)));
        assert!(p.other.contains_key("moby.buildkit.buildinfo.v1"));
        let again: ConfigFile =
            serde_json::from_slice(&serde_json::to_vec(p).expect("ser")).expect("de");
        assert_eq!(&again, p);
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(matches!(
            ImageConfig::from_bytes(b"{".to_vec()),
            Err(ImageError::InvalidJson { .. })
        ));
        assert!(matches!(
            ImageConfig::from_bytes(br#"{"architecture":"amd64"}"#.to_vec()),
            Err(ImageError::InvalidJson { .. })
        ));
        assert!(matches!(
            ImageConfig::from_bytes(br#"{"rootfs":{"type":"bogus","diff_ids":[]}}"#.to_vec()),
            Err(ImageError::InvalidConfig { .. })
        ));
        assert!(matches!(
            ImageConfig::from_bytes(
                br#"{"rootfs":{"type":"layers","diff_ids":["sha256:xyz"]}}"#.to_vec()
            ),
            Err(ImageError::InvalidJson { .. })
        ));
    }
}
