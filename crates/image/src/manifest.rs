//! Manifests and indexes in both dialects (Docker schema 2 and OCI share one shape),
//! media types, and choosing the host's platform from an index.
//!
//! Own serde types rather than oci-spec's: they must accept Docker's media types and
//! keep fields this crate does not know, and digests are always over the raw bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};

pub mod media_type {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    /// What docker uses for an uncompressed layer (not registered, but in the wild).
    pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_NONDIST_TAR: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_NONDIST_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_LAYER_NONDIST_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

    /// Whether a descriptor of this media type is an image layer we can unpack.
    pub fn is_layer(mt: &str) -> bool {
        matches!(
            mt,
            DOCKER_LAYER_GZIP
                | DOCKER_LAYER_FOREIGN_GZIP
                | DOCKER_LAYER_TAR
                | OCI_LAYER_TAR
                | OCI_LAYER_GZIP
                | OCI_LAYER_ZSTD
                | OCI_LAYER_NONDIST_TAR
                | OCI_LAYER_NONDIST_GZIP
                | OCI_LAYER_NONDIST_ZSTD
        )
    }

    pub fn is_config(mt: &str) -> bool {
        matches!(mt, DOCKER_CONFIG | OCI_CONFIG)
    }
}

/// A content descriptor (`mediaType`, `digest`, `size`, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: None,
            urls: None,
            other: serde_json::Map::new(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            os_version: None,
            os_features: None,
            variant: variant.map(str::to_string),
        }
    }

    /// The platform this process runs on, in Go's GOOS/GOARCH names.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// Normalized as containerd does: `x86_64`→`amd64`, `aarch64`→`arm64`, arm64's
    /// default variant `v8` dropped, arm's default variant `v7` filled in.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_lowercase();
        let (arch, variant) =
            normalize_arch(&self.architecture.to_lowercase(), self.variant.as_deref());
        Platform {
            architecture: arch,
            os,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_lowercase).filter(|v| !v.is_empty());
    match arch {
        "i386" => ("386".into(), None),
        "x86_64" | "x86-64" | "amd64" => {
            let v = variant.filter(|v| v != "v1");
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = variant.filter(|v| v != "8" && v != "v8");
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => {
            let v = match variant.as_deref() {
                None | Some("7") => "v7".to_string(),
                Some("5") | Some("6") | Some("8") => {
                    format!("v{}", variant.as_deref().unwrap_or("7"))
                }
                Some(v) => v.to_string(),
            };
            ("arm".into(), Some(v))
        }
        other => (other.to_string(), variant),
    }
}

/// The platforms a host can run, best first: arm64 also runs arm v8…v5,
/// arm v7 also runs v6 and v5; amd64 runs amd64 (any variant up to its own).
fn compatible_platforms(host: &Platform) -> Vec<Platform> {
    let host = host.normalized();
    let mut out = vec![host.clone()];
    let with = |arch: &str, v: Option<&str>| Platform::new(&host.os, arch, v);
    match (host.architecture.as_str(), host.variant.as_deref()) {
        ("arm64", _) => {
            for v in ["v8", "v7", "v6", "v5"] {
                out.push(with("arm", Some(v)));
            }
        }
        ("arm", Some(v)) => {
            let order = ["v8", "v7", "v6", "v5"];
            if let Some(pos) = order.iter().position(|x| *x == v) {
                for lower in &order[pos + 1..] {
                    out.push(with("arm", Some(lower)));
                }
            }
        }
        ("amd64", Some(v)) => {
            let order = ["v4", "v3", "v2"];
            if let Some(pos) = order.iter().position(|x| *x == v) {
                for lower in &order[pos + 1..] {
                    out.push(with("amd64", Some(lower)));
                }
            }
            out.push(with("amd64", None));
        }
        _ => {}
    }
    out
}

/// Picks the manifest for `host` from an index's entries, as dockerd/containerd do:
/// the best-ranked compatible platform, first entry on ties. Entries without a
/// platform are taken only when nothing matches explicitly.
pub fn choose_platform<'a>(manifests: &'a [Descriptor], host: &Platform) -> Result<&'a Descriptor> {
    let wanted = compatible_platforms(host);
    let rank = |d: &Descriptor| -> Option<usize> {
        let p = d.platform.as_ref()?.normalized();
        wanted.iter().position(|w| {
            w.os == p.os && w.architecture == p.architecture && w.variant == p.variant
        })
    };
    let best = manifests
        .iter()
        .filter_map(|d| rank(d).map(|r| (r, d)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d);
    if let Some(d) = best {
        return Ok(d);
    }
    if let Some(d) = manifests
        .iter()
        .find(|d| d.platform.is_none() && is_manifest_media_type(&d.media_type))
    {
        return Ok(d);
    }
    let available: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    Err(ImageError::NoMatchingPlatform {
        platform: host.to_string(),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    })
}

fn is_manifest_media_type(mt: &str) -> bool {
    matches!(mt, media_type::DOCKER_MANIFEST | media_type::OCI_MANIFEST)
}

/// An image manifest (Docker schema 2 or OCI).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// An index / manifest list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// What a manifest-ish document turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum ManifestKind {
    Manifest(Box<Manifest>),
    Index(Index),
}

/// Parses a manifest or index, telling them apart by `mediaType` (or, for OCI
/// documents that omit it, by shape). Schema 1 is refused with its own error.
/// `declared` is the media type from the descriptor or HTTP header, if any.
pub fn parse_manifest(bytes: &[u8], declared: Option<&str>) -> Result<ManifestKind> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
        fs_layers: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| ImageError::json("manifest", e))?;
    let media = probe
        .media_type
        .clone()
        .or_else(|| declared.map(str::to_string));
    if let Some(mt) = media.as_deref() {
        if mt == media_type::DOCKER_SCHEMA1 || mt == media_type::DOCKER_SCHEMA1_SIGNED {
            return Err(ImageError::Schema1Manifest {
                media_type: mt.to_string(),
            });
        }
    }
    if probe.schema_version == Some(1) || probe.fs_layers.is_some() {
        return Err(ImageError::Schema1Manifest {
            media_type: media.unwrap_or_else(|| media_type::DOCKER_SCHEMA1.to_string()),
        });
    }
    let is_index = match media.as_deref() {
        Some(media_type::DOCKER_MANIFEST_LIST | media_type::OCI_INDEX) => true,
        Some(media_type::DOCKER_MANIFEST | media_type::OCI_MANIFEST) => false,
        Some(other) => {
            return Err(ImageError::UnsupportedMediaType {
                media_type: other.to_string(),
                what: "a manifest",
            })
        }
        None if probe.manifests.is_some() => true,
        None if probe.config.is_some() => false,
        None => {
            return Err(ImageError::UnsupportedMediaType {
                media_type: "(none)".to_string(),
                what: "a manifest",
            })
        }
    };
    if is_index {
        let index: Index =
            serde_json::from_slice(bytes).map_err(|e| ImageError::json("image index", e))?;
        Ok(ManifestKind::Index(index))
    } else {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ImageError::json("image manifest", e))?;
        if !media_type::is_config(&manifest.config.media_type) {
            return Err(ImageError::UnsupportedMediaType {
                media_type: manifest.config.media_type.clone(),
                what: "an image config",
            });
        }
        for layer in &manifest.layers {
            if !media_type::is_layer(&layer.media_type) {
                return Err(ImageError::UnsupportedMediaType {
                    media_type: layer.media_type.clone(),
                    what: "a layer",
                });
            }
        }
        Ok(ManifestKind::Manifest(Box::new(manifest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(platform: Option<(&str, &str, Option<&str>)>, n: u8) -> Descriptor {
        let mut d = Descriptor::new(media_type::OCI_MANIFEST, Digest::sha256_of(&[n]), 1);
        d.platform = platform.map(|(os, arch, v)| Platform::new(os, arch, v));
        d
    }

    fn pick(list: &[Descriptor], host: Platform) -> Option<u8> {
        let chosen = choose_platform(list, &host).ok()?;
        (0u8..=255).find(|n| Digest::sha256_of(&[*n]) == chosen.digest)
    }

    #[test]
    fn chooses_the_hosts_platform() {
        let list = vec![
            desc(Some(("linux", "arm", Some("v6"))), 0),
            desc(Some(("linux", "arm", Some("v7"))), 1),
            desc(Some(("linux", "arm64", Some("v8"))), 2),
            desc(Some(("linux", "amd64", None)), 3),
            desc(Some(("windows", "amd64", None)), 4),
            desc(Some(("unknown", "unknown", None)), 5),
        ];
        assert_eq!(pick(&list, Platform::new("linux", "amd64", None)), Some(3));
        assert_eq!(pick(&list, Platform::new("linux", "x86_64", None)), Some(3));
        assert_eq!(pick(&list, Platform::new("linux", "arm64", None)), Some(2));
        assert_eq!(
            pick(&list, Platform::new("linux", "aarch64", Some("v8"))),
            Some(2)
        );
        assert_eq!(
            pick(&list, Platform::new("linux", "arm", Some("v7"))),
            Some(1)
        );
        assert_eq!(pick(&list, Platform::new("linux", "arm", None)), Some(1));
        assert_eq!(
            pick(&list, Platform::new("linux", "arm", Some("v6"))),
            Some(0)
        );
        assert_eq!(
            pick(&list, Platform::new("windows", "amd64", None)),
            Some(4)
        );
        assert_eq!(pick(&list, Platform::new("linux", "s390x", None)), None);
    }

    #[test]
    fn arm_falls_back_to_older_variants() {
        let list = vec![
            desc(Some(("linux", "arm", Some("v5"))), 0),
            desc(Some(("linux", "arm", Some("v6"))), 1),
        ];
        assert_eq!(
            pick(&list, Platform::new("linux", "arm", Some("v7"))),
            Some(1)
        );
        assert_eq!(pick(&list, Platform::new("linux", "arm64", None)), Some(1));
        assert_eq!(
            pick(&list, Platform::new("linux", "arm", Some("v5"))),
            Some(0)
        );
        // An older CPU never gets a newer variant.
        let v7_only = vec![desc(Some(("linux", "arm", Some("v7"))), 0)];
        assert_eq!(
            pick(&v7_only, Platform::new("linux", "arm", Some("v6"))),
            None
        );
        // arm64 prefers its own over 32-bit arm, whatever the order.
        let both = vec![
            desc(Some(("linux", "arm", Some("v7"))), 0),
            desc(Some(("linux", "arm64", None)), 1),
        ];
        assert_eq!(
            pick(&both, Platform::new("linux", "arm64", Some("v8"))),
            Some(1)
        );
    }

    #[test]
    fn amd64_variants_and_untagged_entries() {
        let list = vec![
            desc(Some(("linux", "amd64", Some("v3"))), 0),
            desc(Some(("linux", "amd64", None)), 1),
        ];
        assert_eq!(pick(&list, Platform::new("linux", "amd64", None)), Some(1));
        assert_eq!(
            pick(&list, Platform::new("linux", "amd64", Some("v3"))),
            Some(0)
        );
        let untagged = vec![desc(None, 7)];
        assert_eq!(
            pick(&untagged, Platform::new("linux", "amd64", None)),
            Some(7)
        );
    }

    #[test]
    fn no_match_names_what_is_available() {
        let list = vec![desc(Some(("linux", "ppc64le", None)), 0)];
        let err =
            choose_platform(&list, &Platform::new("linux", "amd64", None)).expect_err("no match");
        assert_eq!(
            err.to_string(),
            "no image in the index matches platform linux/amd64; available: linux/ppc64le"
        );
    }

    #[test]
    fn host_platform_is_normalized() {
        let host = Platform::host().normalized();
        assert_eq!(host.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.architecture, "amd64");
            assert_eq!(host.variant, None);
        }
    }

    const CFG: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_docker_and_oci_manifests() {
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{CFG}","size":2}},
            "layers":[{{"mediaType":"{}","digest":"{CFG}","size":3}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER_GZIP
        );
        match parse_manifest(docker.as_bytes(), None).expect("docker manifest") {
            ManifestKind::Manifest(m) => assert_eq!(m.layers.len(), 1),
            other => panic!("{other:?}"),
        }
        let oci = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{CFG}","size":2}},"layers":[],"x-extra":1}}"#,
            media_type::OCI_CONFIG
        );
        match parse_manifest(oci.as_bytes(), None).expect("oci manifest") {
            ManifestKind::Manifest(m) => {
                assert_eq!(m.other.get("x-extra"), Some(&serde_json::json!(1)))
            }
            other => panic!("{other:?}"),
        }
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{CFG}","size":2,
            "platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            media_type::OCI_MANIFEST
        );
        assert!(matches!(
            parse_manifest(index.as_bytes(), None),
            Ok(ManifestKind::Index(_))
        ));
        let list = index.replace(
            r#""schemaVersion":2,"#,
            &format!(
                r#""schemaVersion":2,"mediaType":"{}","#,
                media_type::DOCKER_MANIFEST_LIST
            ),
        );
        assert!(matches!(
            parse_manifest(list.as_bytes(), None),
            Ok(ManifestKind::Index(_))
        ));
    }

    #[test]
    fn refuses_schema1_and_unknown_media_types() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[{"blobSum":"sha256:00"}]}"#;
        let err = parse_manifest(s1.as_bytes(), None).expect_err("schema1");
        assert!(matches!(err, ImageError::Schema1Manifest { .. }));
        assert!(err.to_string().contains("schema 1"), "{err}");
        let s1_typed = parse_manifest(b"{}", Some(media_type::DOCKER_SCHEMA1_SIGNED));
        assert!(matches!(s1_typed, Err(ImageError::Schema1Manifest { .. })));

        let odd = r#"{"schemaVersion":2,"mediaType":"application/x-odd","config":{}}"#;
        assert!(matches!(
            parse_manifest(odd.as_bytes(), None),
            Err(ImageError::UnsupportedMediaType { .. })
        ));
        let odd_layer = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{CFG}","size":2}},
            "layers":[{{"mediaType":"application/x-helm","digest":"{CFG}","size":3}}]}}"#,
            media_type::OCI_CONFIG
        );
        let err = parse_manifest(odd_layer.as_bytes(), None).expect_err("odd layer");
        assert_eq!(
            err.to_string(),
            "unsupported media type \"application/x-helm\" for a layer"
        );
        assert!(matches!(
            parse_manifest(b"{not json", None),
            Err(ImageError::InvalidJson { .. })
        ));
    }
}
