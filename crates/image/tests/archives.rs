//! Archives made in the test: import, save, load round trips in both formats, and
//! every kind of bad input getting its own error.

use std::io::{Cursor, Read, Write};

use berth_image::{
    import_rootfs, load_archive, write_docker_archive, write_oci_archive, Compression, Digest,
    ImageError, ImportOptions, LayerReader, LoadedImage, Platform, Reference,
};

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn options(tag: &str) -> ImportOptions {
    let mut o = ImportOptions::new(Platform::new("linux", "amd64", None));
    o.changes = vec![r#"CMD ["/bin/sh"]"#.into(), "ENV A=b".into()];
    o.repo_tag = Some(Reference::parse_normalized_tagged(tag).expect("tag"));
    o
}

fn imported(dir: &std::path::Path, tag: &str, content: &[u8]) -> LoadedImage {
    let rootfs = tar_of(&[("bin/hello", content)]);
    import_rootfs(&gzip(&rootfs)[..], dir, &options(tag)).expect("import")
}

#[test]
fn import_takes_compressed_input_and_keeps_the_uncompressed_layer() {
    let dir = tempfile::tempdir().expect("tmp");
    let rootfs = tar_of(&[("etc/hostname", b"x\n")]);
    let image = import_rootfs(&gzip(&rootfs)[..], dir.path(), &options("a:1")).expect("import");
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].diff_id, Digest::sha256_of(&rootfs));
    assert_eq!(image.config.diff_ids(), &[Digest::sha256_of(&rootfs)]);
    assert_eq!(
        std::fs::read(&image.layers[0].blob_path).expect("blob"),
        rootfs
    );
    let cfg = image.config.parsed();
    assert_eq!(cfg.architecture.as_deref(), Some("amd64"));
    assert_eq!(cfg.comment.as_deref(), Some("Imported from -"));
    assert_eq!(cfg.history[0].comment.as_deref(), Some("Imported from -"));
    let c = cfg.config.as_ref().expect("config");
    assert_eq!(c.cmd.as_deref(), Some(&["/bin/sh".to_string()][..]));
    assert_eq!(c.env.as_deref(), Some(&["A=b".to_string()][..]));
}

#[test]
fn import_refuses_a_corrupt_tarball() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut rootfs = tar_of(&[("a", &[7u8; 3000][..])]);
    rootfs.truncate(1200);
    let err = import_rootfs(&rootfs[..], dir.path(), &options("a:1")).expect_err("truncated");
    assert!(matches!(err, ImageError::CorruptLayer { .. }), "{err}");
}

#[test]
fn docker_archive_round_trip_keeps_ids_tags_and_shared_layers() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = imported(&dir.path().join("a"), "busybox:latest", b"one");
    let b = imported(&dir.path().join("b"), "localhost:5000/x/y:v2", b"two");
    let archive = write_docker_archive(&[a.clone(), b.clone()], Vec::new()).expect("save");

    let mut names = Vec::new();
    let mut t = tar::Archive::new(&archive[..]);
    for e in t.entries().expect("entries") {
        names.push(
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string(),
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "dockerd writes entries in sorted order");
    assert!(names.contains(&format!("{}.json", a.id().hex())));
    assert!(names.iter().any(|n| n.ends_with("/VERSION")));

    let loaded = load_archive(&archive[..], &dir.path().join("spool")).expect("load");
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].id(), a.id());
    assert_eq!(loaded[0].config.raw(), a.config.raw());
    assert_eq!(loaded[0].repo_tags, a.repo_tags);
    assert_eq!(loaded[1].repo_tags[0].familiar(), "localhost:5000/x/y:v2");
    assert_eq!(loaded[0].layers[0].diff_id, a.layers[0].diff_id);

    let manifest = read_entry(&archive, "manifest.json");
    let repositories = read_entry(&archive, "repositories");
    assert!(String::from_utf8_lossy(&manifest).contains(r#""RepoTags":["busybox:latest"]"#));
    assert!(String::from_utf8_lossy(&repositories).starts_with(r#"{"busybox":{"latest":""#));
}

fn read_entry(archive: &[u8], name: &str) -> Vec<u8> {
    let mut t = tar::Archive::new(archive);
    for e in t.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_str() == Some(name) {
            let mut out = Vec::new();
            e.read_to_end(&mut out).expect("read");
            return out;
        }
    }
    panic!("{name} not in archive")
}

/// Builds an archive from (name, bytes) pairs, layers first as dockerd writes them.
fn archive_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (*n, &d[..])).collect();
    tar_of(&refs)
}

fn config_for(diff_ids: &[Digest]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    )
    .into_bytes()
}

#[test]
fn loads_gzip_zstd_and_plain_layers_and_legacy_repositories() {
    let dir = tempfile::tempdir().expect("tmp");
    let l1 = tar_of(&[("a", b"1")]);
    let l2 = tar_of(&[("b", b"2")]);
    let l3 = tar_of(&[("c", b"3")]);
    let config = config_for(&[
        Digest::sha256_of(&l1),
        Digest::sha256_of(&l2),
        Digest::sha256_of(&l3),
    ]);
    let config_name = format!("{}.json", Digest::sha256_of(&config).hex());
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":null,"Layers":["l1/layer.tar","l2/layer.tar","top/layer.tar"]}}]"#
    );
    let archive = archive_of(&[
        ("l1/layer.tar", gzip(&l1)),
        ("l2/layer.tar", zstd::encode_all(&l2[..], 1).expect("zstd")),
        ("top/layer.tar", l3.clone()),
        (&config_name, config.clone()),
        ("repositories", br#"{"busybox":{"old":"top"}}"#.to_vec()),
        ("manifest.json", manifest.into_bytes()),
    ]);
    let images = load_archive(&archive[..], dir.path()).expect("load");
    let layers = &images[0].layers;
    assert_eq!(
        layers.iter().map(|l| l.compression).collect::<Vec<_>>(),
        [Compression::Gzip, Compression::Zstd, Compression::None]
    );
    assert_eq!(images[0].repo_tags[0].familiar(), "busybox:old");
    // The Layer reader yields the uncompressed stream whatever the compression.
    for (layer, want) in layers.iter().zip([&l1, &l2, &l3]) {
        let mut r = LayerReader::open(&layer.blob_path, Some(layer.diff_id.clone()), "img", 0)
            .expect("open");
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(&out, want);
    }
}

#[test]
fn layer_reader_reports_a_diff_id_mismatch_at_eof() {
    let l1 = tar_of(&[("a", b"1")]);
    let wrong = Digest::sha256_of(b"something else");
    let mut r = LayerReader::new(Cursor::new(gzip(&l1)), Some(wrong), "img", 3).expect("open");
    let err = r.read_to_end(&mut Vec::new()).expect_err("mismatch");
    let err = berth_image::layer::into_image_error(err);
    assert!(
        matches!(err, ImageError::DiffIdMismatch { index: 3, .. }),
        "{err}"
    );
}

#[test]
fn oci_round_trip_with_containerd_names() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut a = imported(&dir.path().join("a"), "busybox:latest", b"one");
    a.repo_tags
        .push(Reference::parse_normalized_tagged("busybox:other").expect("tag"));
    let archive = write_oci_archive(std::slice::from_ref(&a), Vec::new()).expect("save");
    let index = String::from_utf8(read_entry(&archive, "index.json")).expect("utf8");
    assert!(
        index.contains(r#""io.containerd.image.name":"docker.io/library/busybox:latest""#),
        "{index}"
    );
    assert!(
        index.contains(r#""org.opencontainers.image.ref.name":"latest""#),
        "{index}"
    );
    assert_eq!(
        read_entry(&archive, "oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );

    // Without manifest.json the OCI index is what is read.
    let without_docker_manifest = strip_entry(&archive, "manifest.json");
    let loaded =
        load_archive(&without_docker_manifest[..], &dir.path().join("spool")).expect("load");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id(), a.id());
    assert_eq!(loaded[0].repo_tags, a.repo_tags);
    // With it, manifest.json gives the same image.
    let loaded = load_archive(&archive[..], &dir.path().join("spool2")).expect("load");
    assert_eq!(loaded[0].id(), a.id());
}

fn strip_entry(archive: &[u8], drop: &str) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut t = tar::Archive::new(archive);
    for e in t.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_str() == Some(drop) {
            continue;
        }
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.append(&h, &data[..]).expect("append");
    }
    out.into_inner().expect("tar")
}

fn oci_archive(layer_media_type: &str, corrupt_layer: bool) -> Vec<u8> {
    oci_archive_listed_as(
        "application/vnd.oci.image.manifest.v1+json",
        layer_media_type,
        corrupt_layer,
    )
}

/// An OCI layout whose index.json lists the manifest with `index_media_type`.
fn oci_archive_listed_as(
    index_media_type: &str,
    layer_media_type: &str,
    corrupt_layer: bool,
) -> Vec<u8> {
    let l1 = tar_of(&[("a", b"1")]);
    let config = config_for(&[Digest::sha256_of(&l1)]);
    let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&l1));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},
        "layers":[{{"mediaType":"{layer_media_type}","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        l1.len()
    );
    let md = Digest::sha256_of(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{index_media_type}",
        "digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"localhost/app:v1"}}}}]}}"#,
        manifest.len()
    );
    let mut layer = l1.clone();
    if corrupt_layer {
        layer[600] ^= 0xff;
    }
    archive_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        (&format!("blobs/sha256/{}", ld.hex()), layer),
        (&format!("blobs/sha256/{}", cd.hex()), config),
        (&format!("blobs/sha256/{}", md.hex()), manifest.into_bytes()),
        ("index.json", index.into_bytes()),
    ])
}

#[test]
fn oci_layout_with_full_ref_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let images = load_archive(
        &oci_archive("application/vnd.oci.image.layer.v1.tar", false)[..],
        dir.path(),
    )
    .expect("load");
    assert_eq!(images[0].repo_tags[0].to_string(), "localhost/app:v1");
}

#[test]
fn index_entries_of_an_unknown_media_type_are_skipped() {
    let good = oci_archive("application/vnd.oci.image.layer.v1.tar", false);
    let mut index: serde_json::Value =
        serde_json::from_slice(&read_entry(&good, "index.json")).expect("index.json");
    let mut unknown = index["manifests"][0].clone();
    unknown["mediaType"] = "application/vnd.example.unknown+json".into();
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .insert(0, unknown);
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut t = tar::Archive::new(&good[..]);
    for e in t.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        if name == "index.json" {
            data = serde_json::to_vec(&index).expect("json");
        }
        entries.push((name, data));
    }
    let entries: Vec<(&str, Vec<u8>)> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect();
    let archive = archive_of(&entries);
    let dir = tempfile::tempdir().expect("tmp");
    let images = load_archive(&archive[..], dir.path()).expect("load");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].repo_tags[0].to_string(), "localhost/app:v1");
}

#[test]
fn bad_input_gets_its_own_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let spool = |n: &str| dir.path().join(n);
    let good = oci_archive("application/vnd.oci.image.layer.v1.tar", false);

    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2 + 100);
    let err = load_archive(&truncated[..], &spool("t")).expect_err("truncated");
    assert!(matches!(err, ImageError::CorruptArchive { .. }), "{err}");

    let garbage = vec![0x42u8; 2048];
    let err = load_archive(&garbage[..], &spool("g")).expect_err("garbage");
    assert!(matches!(err, ImageError::CorruptArchive { .. }), "{err}");

    let err = load_archive(
        &oci_archive("application/vnd.oci.image.layer.v1.tar", true)[..],
        &spool("d"),
    )
    .expect_err("digest");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");

    let err = load_archive(
        &oci_archive("application/x-unknown", false)[..],
        &spool("m"),
    )
    .expect_err("media");
    assert!(
        matches!(err, ImageError::UnsupportedMediaType { .. }),
        "{err}"
    );

    // The manifest itself is fine, but index.json lists it as something else.
    let err = load_archive(
        &oci_archive_listed_as(
            "application/vnd.example.unknown+json",
            "application/vnd.oci.image.layer.v1.tar",
            false,
        )[..],
        &spool("i"),
    )
    .expect_err("index media type");
    assert!(
        matches!(err, ImageError::UnsupportedMediaType { .. })
            && err
                .to_string()
                .contains("application/vnd.example.unknown+json")
            && err.to_string().contains("index.json"),
        "{err}"
    );

    let missing = archive_of(&[(
        "manifest.json",
        br#"[{"Config":"nope.json","RepoTags":null,"Layers":[]}]"#.to_vec(),
    )]);
    let err = load_archive(&missing[..], &spool("n")).expect_err("missing");
    assert!(
        matches!(err, ImageError::MissingArchiveFile { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "manifest.json names \"nope.json\", which is not in the archive"
    );

    let bad_json = archive_of(&[("manifest.json", b"[{".to_vec())]);
    let err = load_archive(&bad_json[..], &spool("j")).expect_err("json");
    assert!(matches!(err, ImageError::InvalidJson { .. }), "{err}");

    let traversal = raw_tar_with_name("../evil");
    let err = load_archive(&traversal[..], &spool("p")).expect_err("traversal");
    assert!(matches!(err, ImageError::PathTraversal { .. }), "{err}");

    let neither = archive_of(&[("hello", b"x".to_vec())]);
    assert!(matches!(
        load_archive(&neither[..], &spool("u")),
        Err(ImageError::UnknownArchiveFormat)
    ));

    // A layer whose content does not match the config's diff_id.
    let l1 = tar_of(&[("a", b"1")]);
    let config = config_for(&[Digest::sha256_of(b"other")]);
    let cname = format!("{}.json", Digest::sha256_of(&config).hex());
    let manifest =
        format!(r#"[{{"Config":"{cname}","RepoTags":["x:y"],"Layers":["l/layer.tar"]}}]"#);
    let wrong = archive_of(&[
        ("l/layer.tar", l1),
        (&cname, config),
        ("manifest.json", manifest.into_bytes()),
    ]);
    let err = load_archive(&wrong[..], &spool("w")).expect_err("diff id");
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");

    let bad_tag = archive_of(&[
        (
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["Bad:tag"],"Layers":[]}]"#.to_vec(),
        ),
        ("c.json", config_for(&[])),
    ]);
    let err = load_archive(&bad_tag[..], &spool("r")).expect_err("tag");
    assert!(
        matches!(err, ImageError::ReferenceNotLowercase { .. }),
        "{err}"
    );
}

/// The tar crate refuses to write `..` names, so the header is filled by hand.
fn raw_tar_with_name(name: &str) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(b"x");
    out.resize(512 * 2, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}
