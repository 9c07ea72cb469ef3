//! `berth login` and `berth logout`: the daemon checks the credentials
//! (`POST /auth`), the CLI keeps them (see `credentials`).

use std::io::{IsTerminal, Read};

use clap::Args;
use serde_json::json;

use crate::client::{Client, Failure};
use crate::credentials::{hostname, server_for_registry, CliConfig, Login, INDEX_SERVER};

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long = "username")]
    username: Option<String>,
    /// Password
    #[arg(short = 'p', long = "password")]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// Registry server [default: Docker Hub]
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Registry server [default: Docker Hub]
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

/// The key a server's credentials go under: Docker Hub's index URL, or
/// `host[:port]` of anything else.
fn server_key(server: Option<&str>) -> String {
    match server {
        None | Some("") => INDEX_SERVER.to_owned(),
        Some(s) if s == INDEX_SERVER => INDEX_SERVER.to_owned(),
        Some(s) => server_for_registry(hostname(s)),
    }
}

pub async fn login(client: &Client, args: &LoginArgs) -> Result<(), Failure> {
    let server = server_key(args.server.as_deref());
    let mut config = CliConfig::load()?;
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => {
            return Err(Failure::Message(
                "--password and --password-stdin are mutually exclusive".to_owned(),
            ))
        }
        (Some(p), false) => Some(p.clone()),
        (None, true) => {
            if args.username.is_none() {
                return Err(Failure::Message(
                    "Must provide --username with --password-stdin".to_owned(),
                ));
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Message(format!("read the password from stdin: {e}")))?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        (None, false) => None,
    };
    let login = match (&args.username, password) {
        (Some(username), Some(password)) => Login {
            username: username.clone(),
            password,
            identity_token: None,
        },
        (username, None) => match config.get(&server)? {
            Some(stored) if username.as_ref().is_none_or(|u| *u == stored.username) => {
                println!("Authenticating with existing credentials...");
                stored
            }
            _ => {
                let why = if std::io::stdin().is_terminal() {
                    "berth login does not prompt: give -u USER and --password-stdin (or -p)"
                } else {
                    "Must provide --username and --password-stdin (or --password)"
                };
                return Err(Failure::Message(why.to_owned()));
            }
        },
        (None, Some(_)) => {
            return Err(Failure::Message(
                "Must provide --username with --password".to_owned(),
            ))
        }
    };
    let body = json!({
        "username": login.username,
        "password": login.password,
        "identitytoken": login.identity_token,
        "serveraddress": server,
    });
    let answer = client.post_json("/auth", Some(&body)).await?;
    // The registry's refresh token is kept instead of the password, as the
    // docker CLI does.
    let login = match answer.get("IdentityToken").and_then(|t| t.as_str()) {
        Some(token) if !token.is_empty() => Login {
            password: String::new(),
            identity_token: Some(token.to_owned()),
            ..login
        },
        _ => login,
    };
    config.store(&server, &login)?;
    if !config.uses_helper(&server) {
        eprintln!(
            "WARNING! Your credentials are stored unencrypted in '{}'.\nConfigure a credential helper (credsStore or credHelpers) to remove this warning.",
            config.path().display()
        );
    }
    if let Some(status) = answer.get("Status").and_then(|s| s.as_str()) {
        println!("{status}");
    }
    Ok(())
}

pub async fn logout(args: &LogoutArgs) -> Result<(), Failure> {
    let server = server_key(args.server.as_deref());
    let mut config = CliConfig::load()?;
    if !config.is_logged_in(&server) {
        println!("Not logged in to {server}");
        return Ok(());
    }
    println!("Removing login credentials for {server}");
    config.erase(&server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_become_keys_like_docker() {
        assert_eq!(server_key(None), INDEX_SERVER);
        assert_eq!(server_key(Some("docker.io")), INDEX_SERVER);
        assert_eq!(
            server_key(Some("https://index.docker.io/v1/")),
            INDEX_SERVER
        );
        assert_eq!(server_key(Some("http://127.0.0.1:5000/")), "127.0.0.1:5000");
    }
}
