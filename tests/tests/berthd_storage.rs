//! berthd's storage choices as a user sees them: the vfs driver does what
//! overlay2 does, and shared layers are counted as shared.

use berth_tests::berthd::Berthd;
use berth_tests::host::DockerApi;
use berth_tests::make_busybox_rootfs_tar;

#[test]
fn vfs_driver_stores_loads_saves_and_removes_images() {
    let d = Berthd::builder().args(["--storage-driver", "vfs"]).start();
    assert_eq!(
        d.docker_ok(&["info", "--format", "{{.Driver}}"]).trim(),
        "vfs"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(dir.path());
    let tar = tar.to_str().expect("utf-8 path");
    let id = d.docker_ok(&["import", tar, "vfs-test/busybox:1"]);
    let id = id.trim();
    // The layer is a full copy under the vfs directory.
    let vfs = d.data_root().join("snapshots/vfs");
    let layers: Vec<_> = std::fs::read_dir(&vfs)
        .expect("vfs dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sha256-"))
        .collect();
    assert_eq!(layers.len(), 1, "one layer directory in {}", vfs.display());
    assert!(layers[0].path().join("rootfs/bin/busybox").is_file());

    let saved = dir.path().join("saved.tar");
    d.docker_ok(&[
        "save",
        "-o",
        saved.to_str().expect("utf-8"),
        "vfs-test/busybox:1",
    ]);
    d.docker_ok(&["rmi", "vfs-test/busybox:1"]);
    assert!(
        std::fs::read_dir(&vfs)
            .expect("vfs dir")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("sha256-")),
        "layer removed with its image"
    );
    let loaded = d.docker_ok(&["load", "-i", saved.to_str().expect("utf-8")]);
    assert_eq!(loaded.trim(), "Loaded image: vfs-test/busybox:1");
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "--format",
            "{{.Id}} {{.GraphDriver.Name}}",
            "vfs-test/busybox:1"
        ])
        .trim(),
        format!("{id} vfs")
    );
}

#[test]
fn shared_size_counts_layers_other_images_use() {
    let d = Berthd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(dir.path());
    let tar = tar.to_str().expect("utf-8 path");
    // Two imports of the same tarball share their one layer.
    d.docker_ok(&["import", "-m", "first", tar, "shared/a:1"]);
    d.docker_ok(&["import", "-m", "second", tar, "shared/b:1"]);
    d.docker_ok(&["import", "--change", "ENV X=1", tar, "shared/c:1"]);
    let sizes = |query: &str| -> Vec<(i64, i64)> {
        let body = d.curl(&format!("/images/json{query}"));
        let list: serde_json::Value = serde_json::from_str(&body).expect("JSON list");
        list.as_array()
            .expect("array")
            .iter()
            .map(|i| {
                (
                    i["SharedSize"].as_i64().expect("SharedSize"),
                    i["Size"].as_i64().expect("Size"),
                )
            })
            .collect()
    };
    for (shared, size) in sizes("?shared-size=1") {
        assert!(size > 0);
        assert_eq!(shared, size, "the only layer is shared by all three");
    }
    assert!(
        sizes("").iter().all(|(shared, _)| *shared == -1),
        "not computed unless asked"
    );
    d.docker_ok(&["rmi", "shared/a:1", "shared/b:1"]);
    assert_eq!(sizes("?shared-size=1").len(), 1);
    assert!(sizes("?shared-size=1")
        .iter()
        .all(|(shared, _)| *shared == 0));
}
