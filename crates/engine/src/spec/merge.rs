//! dockerd's create-time merge of the request's Config with the image's
//! config (moby `daemon/commit.go` merge, then the `--entrypoint ""` reset).

use bollard_stubs::models::{ContainerConfig, HealthConfig};

/// Fills `config` (the request's) from the image's config where the request
/// left a field unset:
/// - Env: the image's variables whose name the request does not set are appended;
/// - Labels, ExposedPorts, Volumes: the union, the request's values winning;
/// - Entrypoint/Cmd: with no Entrypoint in the request, an empty Cmd takes the
///   image's Cmd and an absent (null) Entrypoint the image's Entrypoint; a
///   request Entrypoint drops the image's Cmd unless the request has a Cmd;
///   `--entrypoint ""` (`[""]`) finally clears Entrypoint;
/// - User, WorkingDir, StopSignal: the image's when empty;
/// - Healthcheck: the image's, with each field the request sets overriding it
///   (Test `["NONE"]` from the request stays and disables the check).
///
/// StopTimeout, OnBuild and Shell are not taken from the image, as dockerd.
pub fn merge_image_config(config: &mut ContainerConfig, image: &berth_image::ContainerConfig) {
    if config.user.as_deref().unwrap_or_default().is_empty() {
        config.user = image.user.clone();
    }

    if let Some(image_ports) = &image.exposed_ports {
        let ports = config.exposed_ports.get_or_insert_with(Vec::new);
        for port in image_ports.keys() {
            if !ports.contains(port) {
                ports.push(port.clone());
            }
        }
    }

    let image_env = image.env.as_deref().unwrap_or_default();
    match config.env.as_mut().filter(|e| !e.is_empty()) {
        None => config.env = image.env.clone(),
        Some(env) => {
            let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
            let keys: Vec<String> = env.iter().map(|e| key(e)).collect();
            for var in image_env {
                if !keys.contains(&key(var)) {
                    env.push(var.clone());
                }
            }
        }
    }

    if let Some(image_labels) = &image.labels {
        let labels = config.labels.get_or_insert_with(Default::default);
        for (k, v) in image_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    if config.entrypoint.as_deref().unwrap_or_default().is_empty() {
        if config.cmd.as_deref().unwrap_or_default().is_empty() {
            config.cmd = image.cmd.clone();
        }
        if config.entrypoint.is_none() {
            config.entrypoint = image.entrypoint.clone();
        }
    }

    if let Some(ih) = &image.healthcheck {
        match &mut config.healthcheck {
            None => {
                config.healthcheck = Some(HealthConfig {
                    test: ih.test.clone(),
                    interval: ih.interval,
                    timeout: ih.timeout,
                    retries: ih.retries,
                    start_period: ih.start_period,
                    start_interval: ih.start_interval,
                })
            }
            Some(h) => {
                if h.test.as_deref().unwrap_or_default().is_empty() {
                    h.test = ih.test.clone();
                }
                let fill = |mine: &mut Option<i64>, theirs: Option<i64>| {
                    if mine.unwrap_or(0) == 0 {
                        *mine = theirs;
                    }
                };
                fill(&mut h.interval, ih.interval);
                fill(&mut h.timeout, ih.timeout);
                fill(&mut h.start_period, ih.start_period);
                fill(&mut h.start_interval, ih.start_interval);
                fill(&mut h.retries, ih.retries);
            }
        }
    }

    if config.working_dir.as_deref().unwrap_or_default().is_empty() {
        config.working_dir = image.working_dir.clone();
    }

    if let Some(image_volumes) = &image.volumes {
        let volumes = config.volumes.get_or_insert_with(Vec::new);
        for v in image_volumes.keys() {
            if !volumes.contains(v) {
                volumes.push(v.clone());
            }
        }
    }

    if config.stop_signal.as_deref().unwrap_or_default().is_empty() {
        config.stop_signal = image.stop_signal.clone();
    }

    if config.entrypoint.as_deref() == Some(&[String::new()][..]) {
        config.entrypoint = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    fn image() -> berth_image::ContainerConfig {
        berth_image::ContainerConfig {
            user: Some("app".into()),
            env: strings(&["PATH=/usr/bin", "LANG=C"]),
            cmd: strings(&["nginx", "-g", "daemon off;"]),
            entrypoint: strings(&["/docker-entrypoint.sh"]),
            working_dir: Some("/srv".into()),
            exposed_ports: Some(BTreeMap::from([(
                "80/tcp".to_string(),
                serde_json::json!({}),
            )])),
            volumes: Some(BTreeMap::from([(
                "/data".to_string(),
                serde_json::json!({}),
            )])),
            labels: Some(BTreeMap::from([
                ("a".to_string(), "image".to_string()),
                ("b".to_string(), "image".to_string()),
            ])),
            healthcheck: Some(berth_image::config::HealthConfig {
                test: strings(&["CMD", "true"]),
                interval: Some(30_000_000_000),
                retries: Some(3),
                ..Default::default()
            }),
            stop_signal: Some("SIGQUIT".into()),
            stop_timeout: Some(30),
            on_build: strings(&["RUN true"]),
            shell: strings(&["/bin/bash", "-c"]),
            ..Default::default()
        }
    }

    /// What the docker CLI 28 sends for `docker run IMAGE` without a command.
    fn request() -> ContainerConfig {
        serde_json::from_str(
            r#"{"Hostname":"","Domainname":"","User":"","Env":null,"Cmd":null,"Image":"x",
                "Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{}}"#,
        )
        .expect("request")
    }

    #[test]
    fn image_fills_what_the_request_leaves_out() {
        let mut c = request();
        merge_image_config(&mut c, &image());
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.env, strings(&["PATH=/usr/bin", "LANG=C"]));
        assert_eq!(c.entrypoint, strings(&["/docker-entrypoint.sh"]));
        assert_eq!(c.cmd, strings(&["nginx", "-g", "daemon off;"]));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.exposed_ports, strings(&["80/tcp"]));
        assert_eq!(c.volumes, strings(&["/data"]));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.healthcheck.as_ref().and_then(|h| h.retries), Some(3));
        assert_eq!(c.stop_timeout, None);
        assert_eq!(c.on_build, None);
        assert_eq!(c.shell, None);
    }

    #[test]
    fn request_values_win() {
        let mut c = request();
        c.env = strings(&["LANG=fr_FR", "X=1"]);
        c.labels = Some([("a".to_string(), "user".to_string())].into());
        c.exposed_ports = strings(&["443/tcp"]);
        c.healthcheck = Some(HealthConfig {
            test: strings(&["NONE"]),
            timeout: Some(5),
            ..Default::default()
        });
        merge_image_config(&mut c, &image());
        assert_eq!(c.env, strings(&["LANG=fr_FR", "X=1", "PATH=/usr/bin"]));
        let labels = c.labels.expect("labels");
        assert_eq!(labels["a"], "user");
        assert_eq!(labels["b"], "image");
        assert_eq!(c.exposed_ports, strings(&["443/tcp", "80/tcp"]));
        let h = c.healthcheck.expect("healthcheck");
        assert_eq!(h.test, strings(&["NONE"]));
        assert_eq!((h.timeout, h.interval), (Some(5), Some(30_000_000_000)));
    }

    #[test]
    fn entrypoint_and_cmd_rules() {
        // A command replaces the image's Cmd, the image's Entrypoint stays.
        let mut c = request();
        c.cmd = strings(&["sh"]);
        merge_image_config(&mut c, &image());
        assert_eq!(
            (c.entrypoint, c.cmd),
            (strings(&["/docker-entrypoint.sh"]), strings(&["sh"]))
        );

        // --entrypoint drops the image's Cmd.
        let mut c = request();
        c.entrypoint = strings(&["/bin/sh"]);
        merge_image_config(&mut c, &image());
        assert_eq!((c.entrypoint, c.cmd), (strings(&["/bin/sh"]), None));

        // --entrypoint X with a command keeps the command.
        let mut c = request();
        c.entrypoint = strings(&["/bin/sh"]);
        c.cmd = strings(&["-c", "true"]);
        merge_image_config(&mut c, &image());
        assert_eq!(c.cmd, strings(&["-c", "true"]));

        // --entrypoint "" clears both the image's Entrypoint and its Cmd.
        let mut c = request();
        c.entrypoint = strings(&[""]);
        merge_image_config(&mut c, &image());
        assert_eq!((c.entrypoint, c.cmd), (None, None));

        // --entrypoint "" with a command runs just the command.
        let mut c = request();
        c.entrypoint = strings(&[""]);
        c.cmd = strings(&["ls"]);
        merge_image_config(&mut c, &image());
        assert_eq!((c.entrypoint, c.cmd), (None, strings(&["ls"])));

        // An explicit empty list (not null) keeps the image's Entrypoint out.
        let mut c = request();
        c.entrypoint = Some(Vec::new());
        merge_image_config(&mut c, &image());
        assert_eq!(
            (c.entrypoint, c.cmd),
            (Some(Vec::new()), strings(&["nginx", "-g", "daemon off;"]))
        );
    }
}
