#![forbid(unsafe_code)]
//! `berth`: docker's command line for Berth. It speaks the Docker Engine API
//! (through bollard), so it drives berthd and dockerd alike, with docker's
//! commands, flags, tables, `--format` templates and exit codes.

mod attach;
mod client;
mod containers;
mod create_options;
mod credentials;
mod format;
mod images;
mod inspect;
mod login;
mod progress;
mod registry;
mod run;
mod system;
mod tabwriter;
mod template;
mod terminal;
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

    /// Location of client config files [default: $DOCKER_CONFIG, else ~/.docker]
    #[arg(long = "config", value_name = "DIR")]
    config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(run::RunArgs),
    /// Execute a command in a running container
    Exec(run::ExecArgs),
    /// List containers
    Ps(containers::ListArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(run::CreateArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Remove one or more containers
    Rm(containers::RemoveArgs),
    /// Pause all processes within one or more containers
    Pause(containers::ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::ContainersArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::ContainersArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Display the running processes of a container
    Top(containers::TopArgs),
    /// List port mappings or a specific mapping for the container
    Port(containers::PortArgs),
    /// Update configuration of one or more containers
    Update(containers::UpdateArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Show the Berth version information
    Version(system::VersionArgs),
    /// Run a registry server
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Download an image from a registry
    Pull(images::PullArgs),
    /// Upload an image to a registry
    Push(images::PushArgs),
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
    /// Return low-level information on Berth objects
    Inspect(ObjectInspectArgs),
    /// Manage Berth
    #[command(subcommand)]
    System(SystemCommand),
    /// Get real time events from the server
    Events(system::EventsArgs),
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(run::CreateArgs),
    /// Execute a command in a running container
    Exec(run::ExecArgs),
    /// Display detailed information on one or more containers
    Inspect(containers::InspectArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(containers::ListArgs),
    /// Pause all processes within one or more containers
    Pause(containers::ContainersArgs),
    /// List port mappings or a specific mapping for the container
    Port(containers::PortArgs),
    /// Remove all stopped containers
    Prune(containers::PruneArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(containers::RemoveArgs),
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(run::RunArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Display the running processes of a container
    Top(containers::TopArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::ContainersArgs),
    /// Update configuration of one or more containers
    Update(containers::UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::ContainersArgs),
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
    /// Download an image from a registry
    Pull(images::PullArgs),
    /// Upload an image to a registry
    Push(images::PushArgs),
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
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long = "size")]
    size: bool,
    /// Only inspect objects of this type: container, image, network or volume
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    #[arg(value_name = "NAME|ID", required = true)]
    names: Vec<String>,
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
    if let Some(dir) = cli.config {
        credentials::set_config_dir(dir);
    }
    let host = cli
        .host
        .or_else(|| std::env::var("BERTH_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    // The registry server serves many connections at once: a thread per core.
    let runtime = if matches!(command, Command::Registry(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&host, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let message = failure.to_string();
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn run(host: &str, command: Command) -> Result<(), Failure> {
    let command = match command {
        Command::Registry(command) => return registry::run(command).await,
        Command::Logout(args) => return login::logout(&args).await,
        command => command,
    };
    if let Command::Version(args) = &command {
        return system::version(host, args).await;
    }
    let client = Client::connect(host).await?;
    match command {
        Command::Version(_) | Command::Registry(_) | Command::Logout(_) => Ok(()),
        Command::Login(args) => login::login(&client, &args).await,
        Command::Pull(args) | Command::Image(ImageCommand::Pull(args)) => {
            images::pull(&client, &args).await
        }
        Command::Push(args) | Command::Image(ImageCommand::Push(args)) => {
            images::push(&client, &args).await
        }
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
        Command::Inspect(args) => {
            let kinds = match args.kind.as_deref() {
                None | Some("") => inspect::Kind::ALL.to_vec(),
                Some(name) => match inspect::Kind::named(name) {
                    Some(kind) => vec![kind],
                    None => {
                        return Err(Failure::Message(format!(
                            "{name:?} is not a valid value for --type"
                        )))
                    }
                },
            };
            inspect::inspect(
                &client,
                &args.names,
                args.format.as_deref(),
                &kinds,
                args.size,
            )
            .await
        }
        Command::Run(args) | Command::Container(ContainerCommand::Run(args)) => {
            run::run(&client, &args).await
        }
        Command::Create(args) | Command::Container(ContainerCommand::Create(args)) => {
            run::create(&client, &args).await
        }
        Command::Start(args) | Command::Container(ContainerCommand::Start(args)) => {
            run::start(&client, &args).await
        }
        Command::Attach(args) | Command::Container(ContainerCommand::Attach(args)) => {
            run::attach(&client, &args).await
        }
        Command::Exec(args) | Command::Container(ContainerCommand::Exec(args)) => {
            run::exec(&client, &args).await
        }
        Command::Ps(args) | Command::Container(ContainerCommand::Ls(args)) => {
            containers::list(&client, &args).await
        }
        Command::Stop(args) | Command::Container(ContainerCommand::Stop(args)) => {
            containers::stop(&client, &args, "stop").await
        }
        Command::Restart(args) | Command::Container(ContainerCommand::Restart(args)) => {
            containers::stop(&client, &args, "restart").await
        }
        Command::Kill(args) | Command::Container(ContainerCommand::Kill(args)) => {
            containers::kill(&client, &args).await
        }
        Command::Rm(args) | Command::Container(ContainerCommand::Rm(args)) => {
            containers::remove(&client, &args).await
        }
        Command::Pause(args) | Command::Container(ContainerCommand::Pause(args)) => {
            containers::pause(&client, &args, "pause").await
        }
        Command::Unpause(args) | Command::Container(ContainerCommand::Unpause(args)) => {
            containers::pause(&client, &args, "unpause").await
        }
        Command::Wait(args) | Command::Container(ContainerCommand::Wait(args)) => {
            containers::wait(&client, &args).await
        }
        Command::Rename(args) | Command::Container(ContainerCommand::Rename(args)) => {
            containers::rename(&client, &args).await
        }
        Command::Logs(args) | Command::Container(ContainerCommand::Logs(args)) => {
            containers::logs(&client, &args).await
        }
        Command::Top(args) | Command::Container(ContainerCommand::Top(args)) => {
            containers::top(&client, &args).await
        }
        Command::Port(args) | Command::Container(ContainerCommand::Port(args)) => {
            containers::port(&client, &args).await
        }
        Command::Update(args) | Command::Container(ContainerCommand::Update(args)) => {
            containers::update(&client, &args).await
        }
        Command::Container(ContainerCommand::Prune(args)) => {
            containers::prune(&client, &args).await
        }
        Command::Container(ContainerCommand::Inspect(args)) => {
            containers::inspect(&client, &args).await
        }
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
        assert_eq!(code(&["berth", "run"]), 1);
        assert_eq!(code(&["berth", "run", "--bogus", "bb"]), 125);
        assert_eq!(
            code(&["berth", "run", "-it", "--rm", "-h", "host", "bb", "sh", "-c", "exit 3"]),
            0
        );
        assert_eq!(code(&["berth", "exec", "only-container"]), 1);
        assert_eq!(code(&["berth", "container", "ls", "-aq"]), 0);
        assert_eq!(code(&["berth", "run", "--sig-proxy=false", "bb"]), 0);
        assert_eq!(code(&["berth", "exec", "--bogus", "c", "true"]), 125);
        assert_eq!(code(&["berth", "top", "c", "-o", "pid"]), 0);
        assert_eq!(code(&["berth", "exec", "c", "sh", "-c", "exit 3"]), 0);
    }
}
