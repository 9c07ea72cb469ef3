#![forbid(unsafe_code)]
//! Bearer tokens through berthd, against the tests' own registry in token
//! mode (tests/src/fake_registry.rs), which counts token requests and makes
//! tokens expire or revokes them: one token per scope serves every request
//! of a pull and its parallel layer downloads, and later pulls while it
//! lasts; a token that expires or is revoked in the middle of a pull or a
//! push is renewed and the request sent again (a resumed download keeps
//! its offset).

use std::time::Duration;

use berth_tests::berthd::Berthd;
use berth_tests::fake_registry::{
    incompressible, layer, layer_from_tar, FakeRegistry, Layer, LayerCompression, Misbehavior,
    TokenPolicy,
};
use berth_tests::host::{describe, DockerApi};
use berth_tests::make_busybox_rootfs_tar;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn busybox_layer() -> Layer {
    let scratch = tempfile::tempdir().expect("tempdir");
    let tar = std::fs::read(make_busybox_rootfs_tar(scratch.path())).expect("read busybox tar");
    layer_from_tar(tar, LayerCompression::Gzip)
}

/// Busybox and four data layers of 600 KiB.
fn five_layers(seed: u64) -> Vec<Layer> {
    let mut layers = vec![busybox_layer()];
    for i in 0..4u64 {
        let data = incompressible(600 << 10, seed + i);
        let name = format!("data/t{i}");
        layers.push(layer(&[(name.as_str(), &data)], LayerCompression::Gzip));
    }
    layers
}

#[test]
fn one_token_serves_a_pull_and_the_next_while_it_lasts() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    registry.require_tokens(TokenPolicy {
        expires_in: Some(300),
        ..TokenPolicy::default()
    });
    let layers = five_layers(40);
    registry.add_image("t/tok", "1", host_arch(), &layers);
    registry.add_image("t/tok", "2", host_arch(), &layers[..3]);
    let berthd = Berthd::start();
    let image = format!("{}/t/tok:1", registry.host());
    let out = berthd.docker(&["pull", &image]);
    assert!(out.status.success(), "pull: {}", describe(&out));
    let blob_gets = registry
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .count();
    assert_eq!(blob_gets, 6, "config and five layers");
    assert_eq!(
        registry.token_requests(),
        vec!["repository:t/tok:pull".to_string()],
        "one token for the manifest, the config and five parallel layer downloads"
    );

    // Another pull of the repository while the token lasts asks for none.
    berthd.docker_ok(&["rmi", &image]);
    let out = berthd.docker(&["pull", &format!("{}/t/tok:2", registry.host())]);
    assert!(out.status.success(), "second pull: {}", describe(&out));
    assert_eq!(registry.token_requests().len(), 1);
    assert_eq!(registry.refused_tokens(), 0);

    // Another repository is another scope: a token of its own.
    registry.add_image("t/tok2", "1", host_arch(), &layers[..1]);
    let out = berthd.docker(&["pull", &format!("{}/t/tok2:1", registry.host())]);
    assert!(out.status.success(), "pull: {}", describe(&out));
    assert_eq!(
        registry.token_requests(),
        vec![
            "repository:t/tok:pull".to_string(),
            "repository:t/tok2:pull".to_string()
        ]
    );
}

#[test]
fn tokens_that_expire_midway_are_renewed_and_the_pull_completes() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    // The registry stops taking a token after three requests, earlier
    // than the lifetime it announced (as a revocation would).
    let registry = FakeRegistry::start();
    registry.require_tokens(TokenPolicy {
        uses: Some(3),
        ..TokenPolicy::default()
    });
    let layers = five_layers(50);
    let pushed = registry.add_image("t/short", "1", host_arch(), &layers);
    let berthd = Berthd::start();
    let image = format!("{}/t/short:1", registry.host());
    let out = berthd.docker(&["pull", &image]);
    assert!(out.status.success(), "pull: {}", describe(&out));
    assert!(registry.refused_tokens() >= 1, "no token ran out");
    let tokens = registry.token_requests().len();
    assert!(
        (2..=1 + registry.refused_tokens()).contains(&tokens),
        "{tokens} token requests for {} refusals",
        registry.refused_tokens()
    );
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(id.trim(), pushed.config_digest);
    let out = berthd.docker_ok(&["run", "--rm", &image, "sh", "-c", "wc -c < /data/t3"]);
    assert_eq!(out.trim(), (600 << 10).to_string());

    // A token good for one request: a download dropped halfway resumes
    // with a new token, from where it stopped.
    let registry = FakeRegistry::start();
    registry.require_tokens(TokenPolicy {
        uses: Some(1),
        ..TokenPolicy::default()
    });
    let big = layer(
        &[("blob", &incompressible(2 << 20, 60))],
        LayerCompression::Gzip,
    );
    let path = format!("/v2/t/resume/blobs/{}", big.digest);
    registry.misbehave(&path, Misbehavior::DropOnce(1 << 20));
    registry.add_image("t/resume", "1", host_arch(), std::slice::from_ref(&big));
    let out = berthd.docker(&["pull", &format!("{}/t/resume:1", registry.host())]);
    assert!(out.status.success(), "pull: {}", describe(&out));
    let gets = registry.gets_of(&path);
    assert_eq!(gets.len(), 2, "{gets:?}");
    let from: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the renewed request is no open Range: {:?}", gets[1]));
    assert!(from > 0 && from <= 1 << 20, "resumed from byte {from}");
    assert!(
        registry.refused_tokens() >= 3,
        "manifest, config, blob, resume"
    );

    // A token announced to last one second is renewed before the registry
    // refuses it, while slow layers download.
    let registry = FakeRegistry::start();
    registry.require_tokens(TokenPolicy {
        expires_in: Some(1),
        valid_for: Some(Duration::from_secs(1)),
        ..TokenPolicy::default()
    });
    let layers = five_layers(70);
    for l in &layers[1..] {
        registry.misbehave(
            &format!("/v2/t/slow/blobs/{}", l.digest),
            Misbehavior::Throttle(512 << 10),
        );
    }
    registry.add_image("t/slow", "1", host_arch(), &layers);
    let out = berthd.docker(&["pull", &format!("{}/t/slow:1", registry.host())]);
    assert!(out.status.success(), "pull: {}", describe(&out));
    assert!(
        registry.token_requests().len() >= 2,
        "a pull of over a second used one token of a second"
    );
}

#[test]
fn a_token_revoked_mid_push_is_renewed_and_the_push_completes() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let source = FakeRegistry::start();
    let layers = five_layers(80);
    source.add_image("t/src", "1", host_arch(), &layers);
    let berthd = Berthd::start();
    let from = format!("{}/t/src:1", source.host());
    berthd.docker_ok(&["pull", &from]);

    let target = FakeRegistry::start();
    target.require_tokens(TokenPolicy::default());
    target.throttle_uploads(1 << 20);
    let dst = format!("{}/t/dst:1", target.host());
    berthd.docker_ok(&["tag", &from, &dst]);
    let revoked = std::thread::scope(|scope| {
        let revoker = scope.spawn(|| {
            for _ in 0..1000 {
                let uploading = target
                    .requests()
                    .iter()
                    .any(|r| matches!(r.method.as_str(), "PUT" | "PATCH"));
                if uploading {
                    target.revoke_tokens();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        });
        let out = berthd.docker(&["push", &dst]);
        assert!(out.status.success(), "push: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1: digest: sha256:"),
            "{}",
            describe(&out)
        );
        revoker.join().expect("revoker")
    });
    assert!(revoked, "the push uploaded nothing");
    assert!(
        target.refused_tokens() >= 1,
        "the revoked token was not refused"
    );
    assert_eq!(
        target.token_requests()[..2],
        [
            "repository:t/dst:pull,push".to_string(),
            "repository:t/dst:pull,push".to_string()
        ]
    );

    // What was pushed pulls back as the same image.
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &from]);
    berthd.docker_ok(&["rmi", &from, &dst]);
    berthd.docker_ok(&["pull", &dst]);
    let again = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &dst]);
    assert_eq!(again, id);
}
