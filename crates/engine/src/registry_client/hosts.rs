//! How berthd reaches each registry: which ones may use plain HTTP and
//! unverified TLS (`insecure-registries`), which mirrors serve its pulls
//! (`registry-mirrors`), and the CAs and client certificates of its
//! `certs.d` directory. Validated once, when the daemon starts.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// Where berthd finds `<host:port>/{*.crt,*.cert,*.key}` unless told otherwise.
pub const DEFAULT_CERTS_DIR: &str = "/etc/berth/certs.d";
/// Docker Hub's name in references, and the host that serves its API.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// dockerd's default insecure CIDRs. Berth lets them use plain HTTP only: a
/// TLS registry on loopback is still verified unless listed explicitly.
const LOOPBACK_CIDRS: [&str; 2] = ["::1/128", "127.0.0.0/8"];

/// An IP network, `address/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(value: &str) -> Option<Cidr> {
        let (ip, prefix) = value.split_once('/')?;
        let network: IpAddr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Cidr { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, bits) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            (IpAddr::V6(n), IpAddr::V4(i)) => (u128::from(n), u128::from(i.to_ipv6_mapped()), 128),
            (IpAddr::V4(_), IpAddr::V6(i)) => match i.to_ipv4_mapped() {
                Some(v4) => return self.contains(IpAddr::V4(v4)),
                None => return false,
            },
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (net >> shift) == (ip >> shift)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// One pull mirror of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// As shown by `docker info`: `scheme://host[:port]/`.
    pub url: String,
    /// `host[:port]`.
    pub host: String,
    pub tls: bool,
}

impl Mirror {
    /// `http(s)://host[:port][/]`: a mirror serves `/v2/` at its root, and
    /// credentials in the URL are refused (they would show in `docker info`).
    fn parse(value: &str) -> Result<Mirror> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid mirror {value:?}: {why}"));
        let (tls, rest) = if let Some(rest) = value.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = value.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("expected an http:// or https:// URL"));
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host.contains('@') {
            return Err(bad("a user name or password is not allowed in the URL"));
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(bad("a query or fragment is not allowed"));
        }
        if !path.is_empty() && path != "/" {
            return Err(bad("a mirror serves /v2/ at its root; remove the path"));
        }
        validate_host(host).map_err(|why| bad(&why))?;
        Ok(Mirror {
            url: format!("{}://{host}/", if tls { "https" } else { "http" }),
            host: host.to_string(),
            tls,
        })
    }
}

/// Checks `host[:port]` (an IPv6 address in brackets).
fn validate_host(host: &str) -> std::result::Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{host:?}: unclosed '['"))?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?}: {ip:?} is not an IPv6 address"));
        }
        match after {
            "" => (ip, None),
            p => (
                ip,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{host:?}: expected :port after ']'"))?,
                ),
            ),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return Err(format!("{host:?}: no host name"));
    }
    if !host.starts_with('[')
        && !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!("{host:?}: not a host name or address"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!(
                "{host:?}: port {port:?} is not a number from 1 to 65535"
            ));
        }
    }
    Ok(())
}

/// The name a registry goes by: Docker Hub's aliases become `docker.io`.
pub fn registry_name(host: &str) -> &str {
    match host {
        "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB,
        other => other,
    }
}

/// The host that serves a registry's API (`docker.io` is served elsewhere).
pub(crate) fn api_host(registry: &str) -> &str {
    match registry_name(registry) {
        DOCKER_HUB => DOCKER_HUB_API,
        other => other,
    }
}

/// The registry settings of the daemon (see the module documentation).
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    insecure_cidrs: Vec<Cidr>,
    insecure_hosts: Vec<String>,
    mirrors: BTreeMap<String, Vec<Mirror>>,
    certs_dir: PathBuf,
}

impl Default for RegistrySettings {
    fn default() -> RegistrySettings {
        RegistrySettings {
            insecure_cidrs: Vec::new(),
            insecure_hosts: Vec::new(),
            mirrors: BTreeMap::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
        }
    }
}

impl RegistrySettings {
    /// `insecure`: CIDRs or `host[:port]`s; `mirrors`: (registry, mirror URL)
    /// pairs, tried in order. Every value is checked; the first bad one is
    /// the error.
    pub fn new(
        insecure: &[String],
        mirrors: &[(String, String)],
        certs_dir: PathBuf,
    ) -> Result<RegistrySettings> {
        let mut settings = RegistrySettings {
            certs_dir,
            ..RegistrySettings::default()
        };
        for entry in insecure {
            let entry = entry.trim();
            if entry.contains("://") {
                return Err(Error::InvalidArgument(format!(
                    "insecure registry {entry:?} should not contain '://': give host[:port] or a CIDR"
                )));
            }
            if entry.contains('/') {
                let cidr = Cidr::parse(entry).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "insecure registry {entry:?} is not a valid CIDR (expected address/prefix, e.g. 10.0.0.0/8)"
                    ))
                })?;
                if !settings.insecure_cidrs.contains(&cidr) {
                    settings.insecure_cidrs.push(cidr);
                }
                continue;
            }
            validate_host(entry)
                .map_err(|why| Error::InvalidArgument(format!("insecure registry {why}")))?;
            let name = registry_name(entry).to_string();
            if !settings.insecure_hosts.contains(&name) {
                settings.insecure_hosts.push(name);
            }
        }
        for (registry, url) in mirrors {
            validate_host(registry).map_err(|why| {
                Error::InvalidArgument(format!("registry-mirrors: registry {why}"))
            })?;
            let mirror = Mirror::parse(url.trim())?;
            let list = settings
                .mirrors
                .entry(registry_name(registry).to_string())
                .or_default();
            if !list.contains(&mirror) {
                list.push(mirror);
            }
        }
        Ok(settings)
    }

    /// The insecure CIDRs as `docker info` lists them: loopback first.
    pub fn insecure_cidrs(&self) -> Vec<String> {
        let mut out: Vec<String> = LOOPBACK_CIDRS.iter().map(|c| c.to_string()).collect();
        for cidr in &self.insecure_cidrs {
            let shown = cidr.to_string();
            if !out.contains(&shown) {
                out.push(shown);
            }
        }
        out
    }

    /// The registries listed as insecure by name.
    pub fn insecure_hosts(&self) -> &[String] {
        &self.insecure_hosts
    }

    /// Mirrors per registry name.
    pub fn mirrors(&self) -> &BTreeMap<String, Vec<Mirror>> {
        &self.mirrors
    }

    pub fn mirrors_of(&self, registry: &str) -> &[Mirror] {
        self.mirrors
            .get(registry_name(registry))
            .map_or(&[], Vec::as_slice)
    }

    pub fn certs_dir(&self) -> &Path {
        &self.certs_dir
    }

    /// Whether `host` was listed in `insecure-registries`, by name or by
    /// an address in a listed CIDR: plain HTTP and unverified TLS then.
    pub(crate) fn is_insecure(&self, host: &str) -> bool {
        if self.insecure_hosts.iter().any(|h| h == registry_name(host)) {
            return true;
        }
        !self.insecure_cidrs.is_empty()
            && addresses(host)
                .iter()
                .any(|ip| self.insecure_cidrs.iter().any(|c| c.contains(*ip)))
    }

    /// Whether plain HTTP may be used with `host`: a loopback address
    /// (dockerd's default) or an insecure registry.
    pub(crate) fn allows_plain_http(&self, host: &str) -> bool {
        let ips = addresses(host);
        (!ips.is_empty() && ips.iter().all(IpAddr::is_loopback)) || self.is_insecure(host)
    }

    /// TLS settings for `host`: the system CAs and `<certs dir>/<host>/*.crt`,
    /// the client certificate `*.cert` with its `*.key` from there, and no
    /// verification of the server for an insecure registry.
    pub(crate) fn tls_config(&self, host: &str) -> Result<Arc<rustls::ClientConfig>> {
        let dir = self.certs_dir.join(host);
        let mut roots = rustls::RootCertStore::empty();
        let mut files = vec![PathBuf::from(SYSTEM_CAS)];
        let mut client_certs = Vec::new();
        let mut keys = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths {
                match path.extension().and_then(|x| x.to_str()) {
                    Some("crt") => files.push(path),
                    Some("cert") => client_certs.push(path),
                    Some("key") => keys.push(path),
                    _ => {}
                }
            }
        }
        for file in files {
            let Ok(certs) = CertificateDer::pem_file_iter(&file) else {
                continue;
            };
            for cert in certs.flatten() {
                // A bundle may hold certificates rustls cannot use; the rest count.
                let _ = roots.add(cert);
            }
        }
        // docker's rule: every `x.cert` needs `x.key` and the other way round.
        for key in &keys {
            if !client_certs.contains(&key.with_extension("cert")) {
                return Err(Error::InvalidArgument(format!(
                    "missing client certificate {} for key {}",
                    key.with_extension("cert").display(),
                    key.display()
                )));
            }
        }
        let client = match client_certs.first() {
            None => None,
            Some(cert) => {
                let key = cert.with_extension("key");
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|e| {
                        Error::InvalidArgument(format!(
                            "client certificate {}: {e}",
                            cert.display()
                        ))
                    })?;
                if !key.exists() {
                    return Err(Error::InvalidArgument(format!(
                        "missing key {} for client certificate {}",
                        key.display(),
                        cert.display()
                    )));
                }
                let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
                    Error::InvalidArgument(format!("client key {}: {e}", key.display()))
                })?;
                Some((chain, private))
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS protocol versions: {e}")))?;
        let builder = if self.is_insecure(host) {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
        } else {
            builder.with_root_certificates(roots)
        };
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::InvalidArgument(format!("client certificate in {}: {e}", dir.display()))
            })?,
        };
        Ok(Arc::new(config))
    }
}

/// The addresses `host[:port]` resolves to (none when it does not).
fn addresses(host: &str) -> Vec<IpAddr> {
    let name = super::hostname(host);
    if let Ok(ip) = name.parse::<IpAddr>() {
        return vec![ip];
    }
    (name, 0)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

/// dockerd's `InsecureSkipVerify` for an insecure registry: any server
/// certificate is accepted, handshake signatures are still checked.
#[derive(Debug)]
struct AnyServerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(insecure: &[&str], mirrors: &[(&str, &str)]) -> Result<RegistrySettings> {
        RegistrySettings::new(
            &insecure.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &mirrors
                .iter()
                .map(|(r, m)| (r.to_string(), m.to_string()))
                .collect::<Vec<_>>(),
            PathBuf::from("/nonexistent"),
        )
    }

    #[test]
    fn insecure_entries_are_cidrs_or_hosts() {
        let s = settings(&["10.1.0.0/16", "reg.example:5000", "[::2]:80"], &[]).expect("valid");
        assert_eq!(
            s.insecure_cidrs(),
            vec!["::1/128", "127.0.0.0/8", "10.1.0.0/16"]
        );
        assert_eq!(s.insecure_hosts(), ["reg.example:5000", "[::2]:80"]);
        assert!(s.is_insecure("10.1.200.3:5000"));
        assert!(!s.is_insecure("10.2.0.1:5000"));
        assert!(s.is_insecure("reg.example:5000"));
        // Without CIDRs a name is matched as listed, with no DNS lookup.
        let by_name = settings(&["reg.example:5000"], &[]).expect("valid");
        assert!(!by_name.is_insecure("reg.example:5001"));
        assert!(!by_name.is_insecure("reg.example"));
        // Loopback may use plain HTTP, but is not insecure unless listed.
        assert!(!s.is_insecure("127.0.0.1:5000"));
        assert!(s.allows_plain_http("127.0.0.1:5000"));
        assert!(!s.allows_plain_http("192.0.2.1:5000"));
        for (bad, says) in [
            ("10.0.0.0/33", "not a valid CIDR"),
            ("10.0.0/8", "not a valid CIDR"),
            ("http://reg:5000", "should not contain '://'"),
            ("reg:http", "is not a number"),
            ("re g", "not a host name"),
        ] {
            let err = settings(&[bad], &[]).expect_err(bad).to_string();
            assert!(err.contains(says) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn cidrs_match_their_addresses() {
        let c = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(c.contains("10.255.0.1".parse().expect("ip")));
        assert!(!c.contains("11.0.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.0.0.1".parse().expect("ip")));
        let all = Cidr::parse("0.0.0.0/0").expect("cidr");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        let v6 = Cidr::parse("fd00::/8").expect("cidr");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("fe80::1".parse().expect("ip")));
    }

    #[test]
    fn mirrors_are_urls_per_registry() {
        let s = settings(
            &[],
            &[
                ("docker.io", "https://m1.example"),
                ("index.docker.io", "https://m1.example/"),
                ("127.0.0.1:5000", "http://127.0.0.1:5001"),
            ],
        )
        .expect("valid");
        assert_eq!(
            s.mirrors_of("docker.io")
                .iter()
                .map(|m| m.url.as_str())
                .collect::<Vec<_>>(),
            ["https://m1.example/"]
        );
        let local = &s.mirrors_of("127.0.0.1:5000")[0];
        assert_eq!((local.host.as_str(), local.tls), ("127.0.0.1:5001", false));
        for (bad, says) in [
            ("ftp://m", "http:// or https://"),
            ("m.example", "http:// or https://"),
            ("https://u:p@m", "password"),
            ("https://m/path", "remove the path"),
            ("https://m?x=1", "query"),
            ("https://m:0", "port"),
        ] {
            let err = settings(&[], &[("docker.io", bad)])
                .expect_err(bad)
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn client_certificates_need_their_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = dir.path().join("reg:5000");
        std::fs::create_dir_all(&host).expect("mkdir");
        std::fs::write(host.join("client.key"), "x").expect("write");
        let s = RegistrySettings::new(&[], &[], dir.path().to_path_buf()).expect("valid");
        let err = s.tls_config("reg:5000").expect_err("key alone");
        assert!(
            err.to_string().contains("missing client certificate"),
            "{err}"
        );
        std::fs::remove_file(host.join("client.key")).expect("rm");
        std::fs::write(host.join("client.cert"), "x").expect("write");
        let err = s.tls_config("reg:5000").expect_err("cert alone");
        assert!(err.to_string().contains("client certificate"), "{err}");
    }
}
