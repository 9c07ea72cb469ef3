//! Running OCI hooks: the state JSON on stdin, the hook's own args and env,
//! and a timeout after which the hook is killed.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

pub fn run_hooks(kind: &'static str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for hook in hooks.into_iter().flatten() {
        run_hook(kind, hook, state_json)?;
    }
    Ok(())
}

fn run_hook(kind: &'static str, hook: &Hook, state_json: &[u8]) -> Result<()> {
    let fail = |why: String| Error::Hook {
        hook: kind,
        path: hook.path().clone(),
        why,
    };
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some(arg0) = args.first() {
            cmd.arg0(arg0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin; that is not an error.
        let _ = stdin.write_all(state_json);
    }
    let timeout = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| fail(e.to_string()))? {
            Some(status) => break status,
            None => {
                if timeout.is_some_and(|t| started.elapsed() >= t) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "timed out after {} s",
                        timeout.map(|t| t.as_secs()).unwrap_or_default()
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        return Err(fail(format!("{status}: {}", stderr.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).expect("hook json")
    }

    #[test]
    fn hook_gets_state_on_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {}"]}}"#,
            out.display()
        ));
        run_hooks("prestart", Some(&vec![h]), br#"{"id":"x"}"#).expect("hook ran");
        assert_eq!(std::fs::read_to_string(out).expect("out"), r#"{"id":"x"}"#);
    }

    #[test]
    fn failing_hook_is_an_error_naming_it() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo nope >&2; exit 3"]}"#);
        let err = run_hooks("poststart", Some(&vec![h]), b"{}").expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("poststart") && msg.contains("nope"), "{msg}");
    }

    #[test]
    fn hook_timeout_kills_it() {
        let h = hook(r#"{"path":"/bin/sleep","args":["sleep","10"],"timeout":1}"#);
        let started = Instant::now();
        let err = run_hooks("createRuntime", Some(&vec![h]), b"{}").expect_err("timeout");
        assert!(err.to_string().contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
