#![forbid(unsafe_code)]
//! berthd's images against the real peers: archives saved by Debian's
//! dockerd, by skopeo and by berthd load into each other with the same image
//! IDs, umoci unpacks berthd's OCI layout; broken archives and names get a
//! clear error through the docker CLI and change nothing; `kill -9` of berthd
//! in the middle of a load leaves a store that is whole after a restart.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use berth_tests::berthd::Berthd;
use berth_tests::dockerd::Dockerd;
use berth_tests::host::{
    assert_success, describe, mounts_under, private_dir, remove_private_dir, text, DockerApi,
    CLI_TIMEOUT,
};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout, unique_name};

#[track_caller]
fn run(command: &mut Command) -> Output {
    output_with_timeout(command, CLI_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Image queries on either daemon.
trait Images: DockerApi {
    #[track_caller]
    fn id_of(&self, image: &str) -> String {
        let out = self.docker(&["image", "inspect", "--format", "{{.Id}}", image]);
        assert_success(&out, &format!("{}: inspect {image}", self.name()))
            .trim()
            .to_owned()
    }

    /// `docker images -a`, one line per image and name, sorted.
    #[track_caller]
    fn images(&self) -> Vec<String> {
        let out = self.docker(&[
            "images",
            "--all",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ]);
        let mut lines: Vec<String> =
            assert_success(&out, &format!("{}: docker images", self.name()))
                .lines()
                .map(str::to_owned)
                .collect();
        lines.sort();
        lines
    }

    /// An HTTP request to the Engine API: status code and body.
    fn api(&self, method: &str, path: &str) -> (u16, String) {
        let out = run(Command::new("curl")
            .args(["-s", "-X", method, "-w", "\n%{http_code}", "--unix-socket"])
            .arg(self.socket())
            .arg(format!("http://berthd{path}")));
        let body = text(&out.stdout);
        let (body, code) = body.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Imports the busybox rootfs as `name`.
    #[track_caller]
    fn import_busybox(&self, rootfs_tar: &Path, name: &str) -> String {
        let out = self.docker(&[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            rootfs_tar.to_str().expect("UTF-8 path"),
            name,
        ]);
        assert_success(&out, &format!("{}: docker import", self.name()));
        self.id_of(name)
    }
}

impl<T: DockerApi> Images for T {}

fn store_state(berthd: &Berthd) -> StoreState {
    StoreState::read(&berthd.data_root())
}

/// What is on disk under a data-root, for before/after comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoreState {
    /// Directories under `snapshots/<driver>/` but `l` and `empty`.
    snapshots: BTreeSet<String>,
    /// `content/blobs/sha256/*`.
    blobs: BTreeSet<String>,
    /// Leftovers of loads and ingests: `tmp/*` and `content/ingest/*`.
    spool: BTreeSet<String>,
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl StoreState {
    fn read(data_root: &Path) -> StoreState {
        let mut snapshots = BTreeSet::new();
        for driver in names_in(&data_root.join("snapshots")) {
            for name in names_in(&data_root.join("snapshots").join(&driver)) {
                if name != "l" && name != "empty" {
                    snapshots.insert(format!("{driver}/{name}"));
                }
            }
        }
        let mut spool: BTreeSet<String> = names_in(&data_root.join("tmp"))
            .into_iter()
            .map(|n| format!("tmp/{n}"))
            .collect();
        spool.extend(
            names_in(&data_root.join("content/ingest"))
                .into_iter()
                .map(|n| format!("content/ingest/{n}")),
        );
        StoreState {
            snapshots,
            blobs: names_in(&data_root.join("content/blobs/sha256")),
            spool,
        }
    }

    /// Reads until `settled` holds (a failed request may finish its clean-up
    /// just after the client saw the error), or [`SETTLE_TIMEOUT`] passes;
    /// the last state read.
    fn settled(data_root: &Path, settled: impl Fn(&StoreState) -> bool) -> StoreState {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let state = StoreState::read(data_root);
            if settled(&state) || Instant::now() > deadline {
                return state;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The longest the store may take to settle after a request ended: its
/// clean-up runs on the daemon's time, which a loaded machine stretches.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// `chain_id[0] = diff_id[0]`, `chain_id[n] = sha256(chain_id[n-1] + " " + diff_id[n])`.
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!(
                "sha256:{}",
                sha256_hex(format!("{parent} {diff_id}").as_bytes())
            ),
        };
        chain.push(next);
    }
    chain
}

// ---------------------------------------------------------------------------
// Archives made by hand

/// One entry of a layer tar, written with exactly the name given (no
/// normalisation), so hostile names reach the daemon as they are.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        let (name, kind, data, link): (&str, tar::EntryType, &[u8], Option<&str>) = match entry {
            Entry::Dir(name) => (name, tar::EntryType::Directory, &[], None),
            Entry::File(name, data) => (name, tar::EntryType::Regular, data, None),
            Entry::Symlink(name, target) => (name, tar::EntryType::Symlink, &[], Some(target)),
            Entry::Hardlink(name, target) => (name, tar::EntryType::Link, &[], Some(target)),
        };
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        let raw = &mut header.as_old_mut().name;
        assert!(name.len() < raw.len(), "entry name too long: {name}");
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(target) = link {
            let raw = &mut header.as_old_mut().linkname;
            raw[..target.len()].copy_from_slice(target.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, data).expect("append to layer tar");
    }
    builder.into_inner().expect("finish layer tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

fn tar_of_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, data.as_slice())
            .expect("append to archive");
    }
    builder.into_inner().expect("finish archive")
}

/// A docker-archive (`docker save` format) made from layer tars; fields can
/// be spoiled one at a time before `to_tar`.
struct DockerArchive {
    config: Value,
    manifest: Value,
    /// File name in the archive and contents.
    files: Vec<(String, Vec<u8>)>,
    /// Replaces manifest.json's bytes when set.
    manifest_raw: Option<Vec<u8>>,
}

impl DockerArchive {
    fn new(layers: &[Vec<u8>], repo_tags: &[&str]) -> DockerArchive {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| format!("sha256:{}", sha256_hex(l)))
            .collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "berth test"})).collect::<Vec<_>>(),
        });
        let files: Vec<(String, Vec<u8>)> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("layer{i}/layer.tar"), l.clone()))
            .collect();
        let manifest = json!([{
            "Config": "config.json",
            "RepoTags": repo_tags,
            "Layers": files.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>(),
        }]);
        DockerArchive {
            config,
            manifest,
            files,
            manifest_raw: None,
        }
    }

    fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).expect("config JSON")
    }

    /// The image ID the archive describes: the digest of its config.
    fn image_id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.config_bytes()))
    }

    fn to_tar(&self) -> Vec<u8> {
        let mut files = self.files.clone();
        files.push(("config.json".to_owned(), self.config_bytes()));
        let manifest = self
            .manifest_raw
            .clone()
            .unwrap_or_else(|| serde_json::to_vec(&self.manifest).expect("manifest JSON"));
        files.push(("manifest.json".to_owned(), manifest));
        tar_of_files(&files)
    }
}

/// An OCI image layout tarball with one image; `index_media_type` is what
/// index.json says the manifest is.
fn oci_layout_tar(layer: &[u8], index_media_type: &str) -> Vec<u8> {
    let diff_id = format!("sha256:{}", sha256_hex(layer));
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .expect("config JSON");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&config)),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": diff_id,
            "size": layer.len(),
        }],
    }))
    .expect("manifest JSON");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": index_media_type,
            "digest": format!("sha256:{}", sha256_hex(&manifest)),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "bad/unknown:1"},
        }],
    }))
    .expect("index JSON");
    let mut files = vec![(
        "oci-layout".to_owned(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    for blob in [layer.to_vec(), config, manifest] {
        files.push((format!("blobs/sha256/{}", sha256_hex(&blob)), blob));
    }
    files.push(("index.json".to_owned(), index));
    tar_of_files(&files)
}

/// skopeo with its temp files in `dir` and no system signature policy.
#[track_caller]
fn skopeo_copy(dir: &Path, from: &str, to: &str) {
    let out = run(Command::new("skopeo").env("TMPDIR", dir).args([
        "--insecure-policy",
        "copy",
        "--quiet",
        from,
        to,
    ]));
    assert_success(&out, &format!("skopeo copy {from} {to}"));
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Loads `archive` into a berthd that does not have the image, checks the
/// ID of `name`, and removes it again.
#[track_caller]
fn assert_loads_with_id(berthd: &Berthd, archive: &Path, name: &str, want_id: &str) {
    let out = berthd.docker(&["load", "--input", path_str(archive)]);
    let printed = assert_success(&out, &format!("berthd: docker load {}", archive.display()));
    assert!(
        printed.contains(name) || printed.contains(want_id),
        "load output names neither {name} nor {want_id}: {printed}"
    );
    assert_eq!(
        berthd.id_of(name),
        want_id,
        "{name} loaded from {}",
        archive.display()
    );
    let out = berthd.docker(&["rmi", "--force", want_id]);
    assert_success(&out, "berthd: rmi");
}

/// One member of a tar file.
fn tar_member(archive: &Path, name: &str) -> Vec<u8> {
    let file = std::fs::File::open(archive).expect("open archive");
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().expect("read archive") {
        let mut entry = entry.expect("archive entry");
        let path = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        if path.trim_start_matches("./") == name {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).expect("read entry");
            return data;
        }
    }
    panic!("{name} is not in {}", archive.display());
}

/// The config digest (the image ID) of the one image in an OCI archive.
fn oci_archive_config_digest(archive: &Path) -> String {
    let index: Value =
        serde_json::from_slice(&tar_member(archive, "index.json")).expect("index.json");
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .expect("manifest digest")
        .replacen(':', "/", 1);
    let manifest: Value =
        serde_json::from_slice(&tar_member(archive, &format!("blobs/{manifest}")))
            .expect("manifest");
    manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned()
}

// ---------------------------------------------------------------------------
// Interop

#[test]
fn dockerd_skopeo_and_berthd_archives_load_into_each_other_with_the_same_ids() {
    let dockerd = Dockerd::start();
    let berthd = Berthd::start();
    let work = private_dir("berth-interop-work-");
    let _work_guard = RemoveOnDrop(work.clone());
    let rootfs_tar = make_busybox_rootfs_tar(&work);

    // A three-layer image with two tags, built by dockerd (a whiteout included).
    let out = dockerd.docker(&[
        "import",
        "--change",
        r#"CMD ["/bin/sh"]"#,
        path_str(&rootfs_tar),
        "interop/base:1",
    ]);
    assert_success(&out, "dockerd: import");
    let context = work.join("context");
    std::fs::create_dir(&context).expect("mkdir context");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM interop/base:1\n\
         RUN echo one > /one.txt\n\
         RUN mkdir -p /data && echo two > /data/two.txt && rm /etc/group\n",
    )
    .expect("write Dockerfile");
    let out = run(dockerd.docker_command().env("DOCKER_BUILDKIT", "0").args([
        "build",
        "--network",
        "none",
        "-t",
        "interop/multi:1",
        "-t",
        "interop/multi:2",
        path_str(&context),
    ]));
    assert_success(&out, "dockerd: build");
    let multi_id = dockerd.id_of("interop/multi:1");
    let layers = dockerd.docker(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        "interop/multi:1",
    ]);
    assert_eq!(assert_success(&layers, "dockerd: inspect").trim(), "3");

    // dockerd's save loads into berthd with the same ID and both tags.
    let dockerd_tar = work.join("dockerd-save.tar");
    let out = dockerd.docker(&[
        "save",
        "-o",
        path_str(&dockerd_tar),
        "interop/multi:1",
        "interop/multi:2",
    ]);
    assert_success(&out, "dockerd: save");
    let out = berthd.docker(&["load", "--input", path_str(&dockerd_tar)]);
    let printed = assert_success(&out, "berthd: load of dockerd's save");
    assert!(
        printed.contains("Loaded image: interop/multi:1")
            && printed.contains("Loaded image: interop/multi:2"),
        "{printed}"
    );
    assert_eq!(berthd.id_of("interop/multi:1"), multi_id);
    assert_eq!(berthd.id_of("interop/multi:2"), multi_id);

    // berthd's save of it loads back into dockerd, which runs it.
    let berthd_tar = work.join("berthd-save.tar");
    let out = berthd.docker(&[
        "save",
        "-o",
        path_str(&berthd_tar),
        "interop/multi:1",
        "interop/multi:2",
    ]);
    assert_success(&out, "berthd: save");
    let out = dockerd.docker(&["rmi", "interop/multi:1", "interop/multi:2"]);
    assert_success(&out, "dockerd: rmi");
    let out = dockerd.docker(&["load", "--input", path_str(&berthd_tar)]);
    assert_success(&out, "dockerd: load of berthd's save");
    assert_eq!(dockerd.id_of("interop/multi:1"), multi_id);
    assert_eq!(dockerd.id_of("interop/multi:2"), multi_id);
    let out = dockerd.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "interop/multi:2",
        "sh",
        "-c",
        "cat /one.txt /data/two.txt; test -e /etc/group || echo whiteout-kept",
    ]);
    assert_eq!(
        assert_success(&out, "dockerd: run berthd's image"),
        "one\ntwo\nwhiteout-kept\n"
    );

    // An image berthd made itself (import) runs on dockerd.
    let own_id = berthd.import_busybox(&rootfs_tar, "interop/berthd-made:1");
    let own_tar = work.join("berthd-made.tar");
    let out = berthd.docker(&["save", "-o", path_str(&own_tar), "interop/berthd-made:1"]);
    assert_success(&out, "berthd: save");
    let out = dockerd.docker(&["load", "--input", path_str(&own_tar)]);
    assert_success(&out, "dockerd: load of berthd's import");
    assert_eq!(dockerd.id_of("interop/berthd-made:1"), own_id);
    let out = dockerd.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "interop/berthd-made:1",
        "echo",
        "ok",
    ]);
    assert_eq!(assert_success(&out, "dockerd: run berthd's import"), "ok\n");

    // skopeo between the two formats of berthd's save, loaded by a berthd
    // that does not have the image.
    let single_tar = work.join("berthd-single.tar");
    let out = berthd.docker(&["save", "-o", path_str(&single_tar), "interop/multi:1"]);
    assert_success(&out, "berthd: save");
    let fresh = Berthd::start();
    let to_docker = work.join("skopeo-docker.tar");
    skopeo_copy(
        &work,
        &format!("oci-archive:{}", single_tar.display()),
        &format!(
            "docker-archive:{}:interop/skopeo:docker",
            to_docker.display()
        ),
    );
    assert_loads_with_id(&fresh, &to_docker, "interop/skopeo:docker", &multi_id);
    // Towards OCI skopeo rewrites the config in OCI's shape (docker's extra
    // fields go), so the ID is the digest of the config it wrote; the layers
    // stay the same.
    let layers_of = |daemon_output: Output| -> Vec<String> {
        let layers = assert_success(&daemon_output, "inspect RootFS.Layers");
        serde_json::from_str(layers.trim()).expect("layers JSON")
    };
    let rootfs_format = ["image", "inspect", "--format", "{{json .RootFS.Layers}}"];
    let multi_layers =
        layers_of(dockerd.docker(&[&rootfs_format[..], &["interop/multi:1"]].concat()));
    let to_oci = work.join("skopeo-oci.tar");
    skopeo_copy(
        &work,
        &format!("docker-archive:{}", single_tar.display()),
        &format!("oci-archive:{}:interop/skopeo:oci", to_oci.display()),
    );
    let oci_id = oci_archive_config_digest(&to_oci);
    let out = fresh.docker(&["load", "--input", path_str(&to_oci)]);
    assert_success(&out, "berthd: load of skopeo's oci-archive");
    assert_eq!(fresh.id_of("interop/skopeo:oci"), oci_id);
    assert_eq!(
        layers_of(fresh.docker(&[&rootfs_format[..], &["interop/skopeo:oci"]].concat())),
        multi_layers
    );
    // ... and berthd's save of that OCI-shaped image is the same image to dockerd.
    let oci_resaved = work.join("berthd-oci-resaved.tar");
    let out = fresh.docker(&["save", "-o", path_str(&oci_resaved), "interop/skopeo:oci"]);
    assert_success(&out, "berthd: save");
    let out = dockerd.docker(&["load", "--input", path_str(&oci_resaved)]);
    assert_success(&out, "dockerd: load");
    assert_eq!(dockerd.id_of("interop/skopeo:oci"), oci_id);
    assert_success(&fresh.docker(&["rmi", "--force", &oci_id]), "berthd: rmi");

    let from_dockerd = work.join("skopeo-from-dockerd.tar");
    skopeo_copy(
        &work,
        &format!("docker-archive:{}:interop/multi:1", dockerd_tar.display()),
        &format!(
            "oci-archive:{}:interop/skopeo:dockerd",
            from_dockerd.display()
        ),
    );
    let from_dockerd_id = oci_archive_config_digest(&from_dockerd);
    assert_loads_with_id(
        &fresh,
        &from_dockerd,
        "interop/skopeo:dockerd",
        &from_dockerd_id,
    );
    assert_eq!(fresh.images(), Vec::<String>::new());

    // umoci unpacks the OCI layout inside berthd's save.
    let layout = work.join("layout");
    std::fs::create_dir(&layout).expect("mkdir layout");
    let out = run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-xf")
        .arg(&own_tar));
    assert_success(&out, "extract berthd's save");
    let bundle = work.join("bundle");
    let out = run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle));
    assert_success(&out, "umoci unpack");
    let unpacked = std::fs::read(bundle.join("rootfs/bin/busybox")).expect("bin/busybox unpacked");
    let original = std::fs::read(berth_tests::BUSYBOX).expect("read busybox");
    assert!(
        unpacked == original,
        "umoci's bin/busybox differs from the image's"
    );
    let sh = std::fs::read_link(bundle.join("rootfs/bin/sh")).expect("bin/sh is a symlink");
    assert_eq!(sh, Path::new("busybox"));
    assert!(bundle.join("rootfs/etc/passwd").is_file());
}

/// Removes a directory (after unmounting what is under it) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        remove_private_dir(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Bad input

/// A berthd with busybox imported, and a scratch directory for archives.
struct BadInput {
    berthd: Berthd,
    base_id: String,
}

impl BadInput {
    fn start() -> BadInput {
        let berthd = Berthd::start();
        let rootfs_tar = make_busybox_rootfs_tar(berthd.dir());
        let base_id = berthd.import_busybox(&rootfs_tar, "bad/base:1");
        BadInput { berthd, base_id }
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.berthd.dir().join(name);
        std::fs::write(&path, data).expect("write archive");
        path
    }

    /// Runs the docker CLI with `args` and checks the request failed with an
    /// error naming one of `problem`, the daemon still answers, and neither
    /// the image list nor the store changed.
    #[track_caller]
    fn assert_rejected(&self, args: &[&str], problem: &[&str]) -> String {
        self.rejected(args, problem, Store::Unchanged)
    }

    #[track_caller]
    fn rejected(&self, args: &[&str], problem: &[&str], store_check: Store) -> String {
        let images = self.berthd.images();
        let store = StoreState::settled(&self.berthd.data_root(), |s| s.spool.is_empty());
        assert!(store.spool.is_empty(), "spool files before: {store:?}");
        let out = self.berthd.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} succeeded: {}",
            describe(&out)
        );
        let error = text(&out.stderr);
        let lower = error.to_lowercase();
        assert!(
            problem.iter().any(|p| lower.contains(&p.to_lowercase())),
            "docker {args:?}: the error names none of {problem:?}: {}",
            describe(&out)
        );
        let version = self
            .berthd
            .docker(&["version", "--format", "{{.Server.Version}}"]);
        assert_success(&version, "docker version after bad input");
        assert_eq!(self.berthd.images(), images, "docker images changed");
        eprintln!("docker {args:?}: {}", error.trim());
        let after = StoreState::settled(&self.berthd.data_root(), |s| {
            s.spool.is_empty() && (store_check != Store::Unchanged || *s == store)
        });
        assert!(
            after.spool.is_empty(),
            "spool files left: {:?}",
            after.spool
        );
        if store_check == Store::Unchanged {
            assert_eq!(after, store, "the store changed");
        }
        assert!(
            mounts_under(self.berthd.dir()).is_empty(),
            "mounts left: {:?}",
            mounts_under(self.berthd.dir())
        );
        error
    }

    #[track_caller]
    fn assert_load_rejected(&self, archive: &[u8], problem: &[&str]) -> String {
        self.load_rejected(archive, problem, Store::Unchanged)
    }

    #[track_caller]
    fn load_rejected(&self, archive: &[u8], problem: &[&str], store_check: Store) -> String {
        let path = self.write(&format!("{}.tar", unique_name()), archive);
        self.rejected(&["load", "--input", path_str(&path)], problem, store_check)
    }
}

/// How much of the store a rejected request must leave as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// Snapshots and blobs too.
    Unchanged,
    /// Images, spool and mounts only: the layers a failed load stored
    /// before the bad one are left behind (see
    /// `a_failed_load_removes_the_layers_it_stored`).
    ImagesUnchanged,
}

fn small_layers() -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[Entry::Dir("etc/"), Entry::File("etc/motd", b"hello\n")]),
        layer_tar(&[Entry::Dir("srv/"), Entry::File("srv/data", &[7u8; 4096])]),
    ]
}

#[test]
fn a_good_hand_made_archive_loads() {
    // The baseline the spoiled archives below differ from in one point.
    let bad = BadInput::start();
    let archive = DockerArchive::new(&small_layers(), &["bad/good:1"]);
    let path = bad.write("good.tar", &archive.to_tar());
    let out = bad.berthd.docker(&["load", "--input", path_str(&path)]);
    assert_success(&out, "load of a good archive");
    assert_eq!(bad.berthd.id_of("bad/good:1"), archive.image_id());
    assert_ne!(bad.base_id, archive.image_id());
}

#[test]
fn truncated_archive_is_rejected() {
    let bad = BadInput::start();
    let whole = DockerArchive::new(&small_layers(), &["bad/truncated:1"]).to_tar();
    // Cut inside the second layer's data: the reader runs out mid-file.
    let cut = whole.len() / 2;
    bad.assert_load_rejected(
        &whole[..cut],
        &["unexpected eof", "truncated", "unexpected end"],
    );
}

#[test]
fn corrupt_gzip_layer_is_rejected() {
    let bad = BadInput::start();
    let layers = small_layers();
    let mut archive = DockerArchive::new(&layers, &["bad/gzip:1"]);
    let mut gz = gzip(&layers[1]);
    let middle = gz.len() / 2;
    for byte in &mut gz[middle..middle + 16] {
        *byte ^= 0x5a;
    }
    archive.files[1].1 = gz;
    bad.assert_load_rejected(&archive.to_tar(), &["layer1/layer.tar"]);
}

#[test]
fn gzip_layer_with_a_bad_checksum_is_rejected() {
    // The tar inside is whole; only the gzip trailer's CRC is wrong, which a
    // reader that stops at the end of the tar never sees.
    let bad = BadInput::start();
    let layers = small_layers();
    let mut archive = DockerArchive::new(&layers, &["bad/crc:1"]);
    let mut gz = gzip(&layers[1]);
    let crc = gz.len() - 8;
    gz[crc] ^= 0xff;
    archive.files[1].1 = gz;
    bad.assert_load_rejected(&archive.to_tar(), &["layer1/layer.tar"]);
}

#[test]
fn layer_not_matching_its_diff_id_is_rejected() {
    let bad = BadInput::start();
    let layers = small_layers();
    let mut archive = DockerArchive::new(&layers, &["bad/mismatch:1"]);
    archive.files[1].1 = layer_tar(&[Entry::File("srv/other", b"not what diff_id says")]);
    bad.assert_load_rejected(&archive.to_tar(), &["diff_id", "digest", "mismatch"]);
}

#[test]
fn manifest_naming_a_missing_layer_is_rejected() {
    let bad = BadInput::start();
    let mut archive = DockerArchive::new(&small_layers(), &["bad/missing:1"]);
    archive.files.remove(1);
    bad.assert_load_rejected(&archive.to_tar(), &["layer1/layer.tar"]);
}

#[test]
fn config_with_fewer_diff_ids_than_layers_is_rejected() {
    let bad = BadInput::start();
    let mut archive = DockerArchive::new(&small_layers(), &["bad/count:1"]);
    archive.config["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("diff_ids")
        .pop();
    bad.assert_load_rejected(&archive.to_tar(), &["diff_id", "layers"]);
}

#[test]
fn invalid_json_in_config_is_rejected() {
    let bad = BadInput::start();
    let mut archive = DockerArchive::new(&small_layers(), &["bad/config:1"]);
    archive
        .files
        .push(("broken.json".to_owned(), b"{\"os\": ".to_vec()));
    archive.manifest[0]["Config"] = json!("broken.json");
    bad.assert_load_rejected(&archive.to_tar(), &["broken.json", "config"]);
}

#[test]
fn invalid_json_in_manifest_is_rejected() {
    let bad = BadInput::start();
    let mut archive = DockerArchive::new(&small_layers(), &["bad/json:1"]);
    archive.manifest_raw = Some(br#"[{"Config": "config.json", "RepoTags": ["#.to_vec());
    bad.assert_load_rejected(&archive.to_tar(), &["manifest.json"]);
}

#[test]
fn oci_index_with_an_unknown_media_type_is_rejected() {
    let bad = BadInput::start();
    let layer = &small_layers()[0];
    let unknown = "application/vnd.example.unknown.v1+json";
    bad.assert_load_rejected(&oci_layout_tar(layer, unknown), &[unknown]);
}

/// A path outside the layer that a traversal would reach: under /tmp, unique.
fn escape_target() -> String {
    format!("tmp/{}-escaped", unique_name())
}

/// Loads an archive whose second layer has `entries`; checks it is refused
/// and nothing was written at `/<target>`.
#[track_caller]
fn assert_traversal_rejected(entries: &[Entry], target: &str, problem: &[&str]) {
    let bad = BadInput::start();
    let layers = vec![small_layers().remove(0), layer_tar(entries)];
    let archive = DockerArchive::new(&layers, &["bad/traversal:1"]);
    bad.load_rejected(&archive.to_tar(), problem, Store::ImagesUnchanged);
    let host = Path::new("/").join(target);
    let exists = host.symlink_metadata().is_ok();
    let _ = std::fs::remove_file(&host);
    assert!(!exists, "the layer wrote {} on the host", host.display());
}

#[test]
fn layer_with_dot_dot_path_is_rejected() {
    let target = escape_target();
    let name = format!("../../../../../../../../../../../../{target}");
    assert_traversal_rejected(
        &[Entry::File(&name, b"escaped\n")],
        &target,
        &["..", "outside", "breakout", "escape"],
    );
}

#[test]
fn layer_with_etc_dot_dot_path_is_rejected() {
    let bad = BadInput::start();
    let layers = vec![layer_tar(&[Entry::File("../../etc/x", b"escaped\n")])];
    let archive = DockerArchive::new(&layers, &["bad/traversal:1"]);
    bad.load_rejected(&archive.to_tar(), &["../../etc/x"], Store::ImagesUnchanged);
}

#[test]
fn a_failed_load_removes_the_layers_it_stored() {
    let bad = BadInput::start();
    let layers = vec![
        small_layers().remove(0),
        layer_tar(&[Entry::File("../../etc/x", b"escaped\n")]),
    ];
    let archive = DockerArchive::new(&layers, &["bad/traversal:1"]);
    bad.assert_load_rejected(&archive.to_tar(), &["../../etc/x"]);
}

#[test]
fn layer_with_absolute_path_is_rejected() {
    let target = escape_target();
    let name = format!("/{target}");
    assert_traversal_rejected(
        &[Entry::File(&name, b"escaped\n")],
        &target,
        &[name.as_str(), "absolute"],
    );
}

#[test]
fn layer_writing_through_a_symlink_is_rejected() {
    let target = escape_target();
    let (dir, file) = target.split_once('/').expect("tmp/<name>");
    let through = format!("escape/{file}");
    assert_traversal_rejected(
        &[
            Entry::Symlink("escape", &format!("/{dir}")),
            Entry::File(&through, b"escaped\n"),
        ],
        &target,
        &["symlink", "outside", "escape", "breakout"],
    );
}

#[test]
fn layer_writing_through_a_relative_symlink_is_rejected() {
    let target = escape_target();
    let (_, file) = target.split_once('/').expect("tmp/<name>");
    let through = format!("escape/{file}");
    assert_traversal_rejected(
        &[
            Entry::Symlink("escape", "../../../../../../../../../../../../tmp"),
            Entry::File(&through, b"escaped\n"),
        ],
        &target,
        &["symlink", "outside", "escape", "breakout"],
    );
}

#[test]
fn layer_with_a_hardlink_to_outside_is_rejected() {
    // A hard link to a host file would make the layer's copy the host's file.
    let bad = BadInput::start();
    let layers = vec![
        small_layers().remove(0),
        layer_tar(&[Entry::Hardlink(
            "passwd",
            "../../../../../../../../../../../../etc/passwd",
        )]),
    ];
    let archive = DockerArchive::new(&layers, &["bad/hardlink:1"]);
    bad.load_rejected(
        &archive.to_tar(),
        &["../../../../etc/passwd", "outside", "escape"],
        Store::ImagesUnchanged,
    );
}

#[test]
fn manifest_naming_a_file_outside_the_archive_is_rejected() {
    let bad = BadInput::start();
    let mut archive = DockerArchive::new(&small_layers(), &["bad/outside:1"]);
    archive.manifest[0]["Layers"][1] = json!("../../../../../../etc/passwd");
    bad.assert_load_rejected(&archive.to_tar(), &["../../../../../../etc/passwd"]);
}

#[test]
fn client_gone_mid_upload_changes_nothing() {
    let bad = BadInput::start();
    let images = bad.berthd.images();
    let store = store_state(&bad.berthd);
    let archive = bad.berthd.dir().join("medium.tar");
    write_big_archive(&archive, 8 << 20);
    let mut client = bad
        .berthd
        .docker_command()
        .args(["load", "--input", path_str(&archive)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker load");
    // Gone while the daemon reads the upload: once its spool exists (the
    // load spools the archive before it stores anything).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut uploading = false;
    while !uploading && Instant::now() < deadline {
        uploading = !store_state(&bad.berthd).spool.is_empty();
        if !uploading {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = client.kill();
    let _ = client.wait();
    assert!(uploading, "the load never started: {}", bad.berthd.log());
    // The daemon notices the closed connection on its own time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = store_state(&bad.berthd);
    while after != store && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = store_state(&bad.berthd);
    }
    assert_eq!(after, store, "the store changed after the client went away");
    assert_eq!(bad.berthd.images(), images);
}

#[test]
fn invalid_references_are_rejected() {
    let bad = BadInput::start();
    // The CLI checks the name itself...
    bad.assert_rejected(
        &["tag", "bad/base:1", "BAD:Ref"],
        &["invalid reference format"],
    );
    // ... so the daemon's own check is asked directly too.
    let images = bad.berthd.images();
    let (status, body) = bad
        .berthd
        .api("POST", "/v1.50/images/bad%2Fbase:1/tag?repo=BAD&tag=Ref");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid reference format"), "{body}");
    let (status, body) = bad.berthd.api(
        "POST",
        "/v1.50/images/bad%2Fbase:1/tag?repo=good&tag=bad%20tag",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid"), "{body}");
    assert_eq!(bad.berthd.images(), images);

    let archive = DockerArchive::new(&small_layers(), &["bad/fine:1", "BAD:Ref"]);
    bad.assert_load_rejected(&archive.to_tar(), &["BAD:Ref", "invalid reference format"]);
}

#[test]
fn import_with_a_bad_change_is_rejected() {
    let bad = BadInput::start();
    let rootfs = bad.write(
        "small-rootfs.tar",
        &layer_tar(&[Entry::Dir("etc/"), Entry::File("etc/motd", b"hi\n")]),
    );
    let error = bad.assert_rejected(
        &[
            "import",
            "--change",
            "BOGUS something",
            path_str(&rootfs),
            "bad/import:1",
        ],
        &["bogus"],
    );
    assert!(error.contains("change"), "{error}");
    bad.assert_rejected(
        &[
            "import",
            "--change",
            "EXPOSE notaport",
            path_str(&rootfs),
            "bad/import:1",
        ],
        &["notaport"],
    );
}

// ---------------------------------------------------------------------------
// Crash safety

/// A docker-archive with three layers of `layer_bytes` random bytes each.
fn write_big_archive(path: &Path, layer_bytes: usize) -> String {
    let mut random = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let mut data = vec![0u8; layer_bytes];
            std::io::Read::read_exact(&mut random, &mut data).expect("read /dev/urandom");
            layer_tar(&[
                Entry::Dir("big/"),
                Entry::File(&format!("big/layer{i}.bin"), &data),
            ])
        })
        .collect();
    let archive = DockerArchive::new(&layers, &["crash/big:1"]);
    std::fs::write(path, archive.to_tar()).expect("write big archive");
    archive.image_id()
}

/// The store after a restart is whole: the image is listed completely or
/// not at all, no snapshot belongs to nothing, nothing is mounted, no spool
/// file is left. Returns whether the image is there.
#[track_caller]
fn assert_store_whole(berthd: &Berthd, image_id: &str, moment: &str) -> bool {
    let images = berthd.images();
    let listed = images.iter().any(|line| line.starts_with(image_id));
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    // Every layer here is an uncompressed tar, so its blob is its diff_id.
    let mut wanted_blobs: BTreeSet<String> = BTreeSet::new();
    for line in &images {
        let id = line.split(' ').next().expect("id column");
        let out = berthd.docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            id,
        ]);
        let layers = assert_success(&out, &format!("{moment}: inspect {id}"));
        let diff_ids: Vec<String> = serde_json::from_str(layers.trim()).expect("layers JSON");
        if id == image_id {
            assert_eq!(diff_ids.len(), 3, "{moment}: a half image is listed");
        }
        wanted.extend(chain_ids(&diff_ids));
        wanted_blobs.insert(id.trim_start_matches("sha256:").to_owned());
        wanted_blobs.extend(
            diff_ids
                .iter()
                .map(|d| d.trim_start_matches("sha256:").to_owned()),
        );
    }
    let state = store_state(berthd);
    assert!(
        state.spool.is_empty(),
        "{moment}: spool left after restart: {:?}",
        state.spool
    );
    let snapshot_dirs: BTreeSet<String> = state
        .snapshots
        .iter()
        .map(|s| {
            s.split_once('/')
                .map_or(s.as_str(), |(_, n)| n)
                .replacen('-', ":", 1)
        })
        .collect();
    assert_eq!(
        snapshot_dirs, wanted,
        "{moment}: snapshot directories are not exactly the listed images' layers"
    );
    assert_eq!(
        state.blobs, wanted_blobs,
        "{moment}: blobs are not exactly the listed images' configs and layers"
    );
    let mounts = mounts_under(berthd.dir());
    assert!(mounts.is_empty(), "{moment}: mounts left: {mounts:?}");
    listed
}

/// When to kill berthd during a load.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// This long after the client started.
    After(Duration),
    /// While a layer is being unpacked (a `.tmp` snapshot exists).
    Unpacking,
    /// Once this many more snapshot directories are committed than there
    /// were before the load.
    LayersStored(usize),
}

fn committed_snapshots(berthd: &Berthd) -> usize {
    let snapshots = store_state(berthd).snapshots;
    snapshots.iter().filter(|s| !s.ends_with(".tmp")).count()
}

impl Moment {
    /// Waits for the moment of a load started when `before` snapshots were
    /// committed; false if `limit` passed first.
    fn wait(self, berthd: &Berthd, before: usize, limit: Duration) -> bool {
        let started = Instant::now();
        if let Moment::After(delay) = self {
            std::thread::sleep(delay);
            return true;
        }
        while started.elapsed() < limit {
            let reached = match self {
                Moment::After(_) => true,
                Moment::Unpacking => store_state(berthd)
                    .snapshots
                    .iter()
                    .any(|s| s.ends_with(".tmp")),
                Moment::LayersStored(n) => committed_snapshots(berthd) >= before + n,
            };
            if reached {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

/// Loads a big archive once to the end and then once per moment, killing
/// berthd with SIGKILL at that point and restarting it on the same
/// data-root; the store must be whole each time, and the archive must load
/// and round-trip through `save` afterwards.
fn assert_kill_9_leaves_a_whole_store(moments: &[Moment]) {
    let mut berthd = Berthd::start();
    let rootfs_tar = make_busybox_rootfs_tar(berthd.dir());
    berthd.import_busybox(&rootfs_tar, "crash/base:1");
    let archive = berthd.dir().join("big.tar");
    let image_id = write_big_archive(&archive, 16 << 20);

    // Once through to learn how long a load takes, killed right after it ends.
    let started = Instant::now();
    let out = berthd.docker(&["load", "--input", path_str(&archive)]);
    assert_success(&out, "a whole load");
    let whole = started.elapsed();
    eprintln!("a whole load took {whole:?}");
    berthd.kill9();
    berthd.spawn();
    assert!(
        assert_store_whole(&berthd, &image_id, "killed after the load"),
        "a load that completed is gone after kill -9"
    );
    assert_success(&berthd.docker(&["rmi", "crash/big:1"]), "rmi");

    for &moment in moments {
        let what = format!("killed at {moment:?} (a whole load takes {whole:?})");
        let mut load = berthd.docker_command();
        load.args(["load", "--input", path_str(&archive)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Counted before the load starts: a layer may be committed before
        // this thread looks again.
        let before = committed_snapshots(&berthd);
        let mut client = load.spawn().expect("start docker load");
        // Generous: only a load that never gets there waits this long.
        let reached = moment.wait(&berthd, before, whole * 3 + Duration::from_secs(60));
        berthd.kill9();
        let _ = client.wait();
        assert!(reached, "{what}: the load never got there");
        berthd.spawn();
        if assert_store_whole(&berthd, &image_id, &what) {
            assert_success(&berthd.docker(&["rmi", "crash/big:1"]), "rmi");
        }
        assert!(
            !store_state(&berthd).blobs.is_empty(),
            "{what}: the base image's blobs are gone"
        );
    }

    // The same archive loads afterwards, and saves back with the same ID.
    let out = berthd.docker(&["load", "--input", path_str(&archive)]);
    assert_success(&out, "load after the crashes");
    assert_eq!(berthd.id_of("crash/big:1"), image_id);
    assert_store_whole(&berthd, &image_id, "after the last load");
    let saved = berthd.dir().join("saved.tar");
    let out = berthd.docker(&["save", "-o", path_str(&saved), "crash/big:1"]);
    assert_success(&out, "save");
    assert_success(&berthd.docker(&["rmi", "crash/big:1"]), "rmi");
    let out = berthd.docker(&["load", "--input", path_str(&saved)]);
    assert_success(&out, "load of the save");
    assert_eq!(berthd.id_of("crash/big:1"), image_id);
}

#[test]
fn kill_9_during_load_leaves_a_whole_store() {
    assert_kill_9_leaves_a_whole_store(&[
        Moment::After(Duration::from_millis(50)),
        Moment::After(Duration::from_millis(200)),
        Moment::After(Duration::from_millis(500)),
        Moment::Unpacking,
    ]);
}

#[test]
fn kill_9_between_layers_leaves_no_orphan_snapshot() {
    assert_kill_9_leaves_a_whole_store(&[Moment::LayersStored(1), Moment::LayersStored(3)]);
}
