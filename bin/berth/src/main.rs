#![forbid(unsafe_code)]
//! `berth`: docker's command line for Berth. It speaks the Docker Engine API
//! (through bollard), so it drives berthd and dockerd alike, with docker's
//! commands, flags, tables, `--format` templates and exit codes.

mod client;
mod format;
mod images;
mod progress;
mod system;
mod tabwriter;
mod template;
mod units;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand};

use client::{Client, Failure, DEFAULT_HOST};

/// Docker's exit status for a command line it cannot parse.
const USAGE_ERROR: u8 = 125;

#[derive(Parser)]
#[command(
    name = "berth",
    about = "A container engine speaking the Docker Engine API",
    disable_version_flag = true,
    after_help = "The daemon is the one named by -H, else by $BERTH_HOST, else unix:///run/berth.sock.\n\
                  DOCKER_HOST is ignored, so berth never talks to dockerd by accident."
)]
struct Cli {
    /// Daemon socket to connect to (unix:///path or tcp://host:port)
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    host: Option<String>,

    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    version: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the Berth version information
    Version(system::VersionArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// List images
    Images(images::ListArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    Rmi(images::RemoveArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Return low-level information on images
    Inspect(ObjectInspectArgs),
    /// Manage Berth
    #[command(subcommand)]
    System(SystemCommand),
    /// Get real time events from the server
    Events(system::EventsArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// List images
    #[command(visible_aliases = ["list", "images"])]
    Ls(images::ListArgs),
    /// Display detailed information on one or more images
    Inspect(images::InspectArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Remove one or more images
    #[command(visible_aliases = ["remove", "rmi"])]
    Rm(images::RemoveArgs),
    /// Remove unused images
    Prune(images::PruneArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Show disk usage
    Df(system::DfArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
}

#[derive(Args)]
struct ObjectInspectArgs {
    #[command(flatten)]
    inspect: images::InspectArgs,
    /// Only "image" until containers come
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
}

/// Docker's exit codes for a bad command line: 125 for an unknown or invalid
/// flag, 1 for a wrong number of arguments or an unknown command.
fn usage_exit_code(error: &clap::Error) -> u8 {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingRequiredArgument
        | ErrorKind::MissingSubcommand
        | ErrorKind::InvalidSubcommand
        | ErrorKind::WrongNumberOfValues
        | ErrorKind::TooManyValues
        | ErrorKind::TooFewValues => 1,
        ErrorKind::UnknownArgument => match error.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) if !arg.starts_with('-') => 1,
            _ => USAGE_ERROR,
        },
        _ => USAGE_ERROR,
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(usage_exit_code(&error));
        }
    };
    if cli.version {
        println!("Berth version {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    let host = cli
        .host
        .or_else(|| std::env::var("BERTH_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&host, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

async fn run(host: &str, command: Command) -> Result<(), Failure> {
    if let Command::Version(args) = &command {
        return system::version(host, args).await;
    }
    let client = Client::connect(host).await?;
    match command {
        Command::Version(_) => Ok(()),
        Command::Info(args) | Command::System(SystemCommand::Info(args)) => {
            system::info(&client, &args).await
        }
        Command::Events(args) | Command::System(SystemCommand::Events(args)) => {
            system::events(&client, &args).await
        }
        Command::System(SystemCommand::Df(args)) => system::df(&client, &args).await,
        Command::Images(args) | Command::Image(ImageCommand::Ls(args)) => {
            images::list(&client, &args).await
        }
        Command::Inspect(ObjectInspectArgs { inspect, kind }) => match kind.as_deref() {
            None | Some("image") => images::inspect(&client, &inspect).await,
            Some(other) => Err(Failure::Message(format!(
                "{other:?} is not a valid value for --type"
            ))),
        },
        Command::Image(ImageCommand::Inspect(args)) => images::inspect(&client, &args).await,
        Command::History(args) | Command::Image(ImageCommand::History(args)) => {
            images::history(&client, &args).await
        }
        Command::Tag(args) | Command::Image(ImageCommand::Tag(args)) => {
            images::tag(&client, &args).await
        }
        Command::Rmi(args) | Command::Image(ImageCommand::Rm(args)) => {
            images::remove(&client, &args).await
        }
        Command::Image(ImageCommand::Prune(args)) => images::prune(&client, &args).await,
        Command::Load(args) | Command::Image(ImageCommand::Load(args)) => {
            images::load(&client, &args).await
        }
        Command::Save(args) | Command::Image(ImageCommand::Save(args)) => {
            images::save(&client, &args).await
        }
        Command::Import(args) | Command::Image(ImageCommand::Import(args)) => {
            images::import(&client, &args).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_exit_like_docker() {
        let code = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(_) => 0,
            Err(error) => usage_exit_code(&error),
        };
        assert_eq!(code(&["berth", "images", "--bogus"]), 125);
        assert_eq!(code(&["berth", "images", "a", "b"]), 1);
        assert_eq!(code(&["berth", "rmi"]), 1);
        assert_eq!(code(&["berth", "bogus"]), 1);
        assert_eq!(code(&["berth", "history", "-H=false", "busybox"]), 0);
        assert_eq!(code(&["berth", "-H", "unix:///x.sock", "images", "-q"]), 0);
    }
}
