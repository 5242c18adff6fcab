//! `tether`: Tether's command line.
//!
//! Calls a device and waits for its answer, manages commands, starts them on devices and
//! follows them, and reads the history, through Tether's HTTP API. Requests to a deployed API
//! are signed with SigV4 from the standard AWS credential chain; input is checked with the
//! domain's own rules before anything is sent. Exit codes: see `tether_cli::exit`.

use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tether_cli::exit::{CliError, Exit};
use tether_cli::output::{Format, Out};
use tether_cli::target::{self, Aws};
use tether_cli::{api, cmd};

const EXAMPLES: &str = "\
Examples:
  tether invoke dev-1 reboot --payload '{\"delay\": 5}' --timeout 5s
  tether device dev-1
  tether commands create unlock --payload '{\"door\": \"front\"}'
  tether run unlock --target dev-1 --target dev-2 --wait 30s
  tether executions list --device dev-1 --status SUCCEEDED --all -o json

Where the API is: --api URL, else TETHER_API, else --stack NAME (a deployed stack's ApiUrl),
else the local stack running in this repository (.local/stack.env).

Exit codes: 0 done; 1 unexpected; 2 bad input; 3 device answered FAILED or REJECTED;
4 deadline passed; 5 device not connected; 6 not found; 7 unavailable, retry later;
8 not authorized; 9 conflict (e.g. the command is deprecated).";

/// Call devices and manage commands through Tether's API.
#[derive(Debug, Parser)]
#[command(name = "tether", version, after_long_help = EXAMPLES, after_help = "See --help for examples and exit codes.")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The API's base URL.
    #[arg(long, global = true, env = "TETHER_API", value_name = "URL")]
    api: Option<String>,
    /// A deployed CloudFormation stack whose ApiUrl output is the API.
    #[arg(long, global = true, value_name = "NAME")]
    stack: Option<String>,
    /// The AWS profile for credentials and the region (else the standard chain).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// The AWS region (of the stack and of the signature).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Sign requests with SigV4 even to a local API.
    #[arg(long, global = true, env = "TETHER_SIGN")]
    sign: bool,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Print nothing on stdout; the exit code says how it went.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call a method on a device and wait for its answer.
    #[command(
        after_help = "Examples:\n  tether invoke dev-1 reboot\n  tether invoke dev-1 configure --payload @settings.json --timeout 2s\n  echo '{\"on\": true}' | tether invoke lamp-7 switch --payload - -o json"
    )]
    Invoke(cmd::InvokeArgs),
    /// Show a device's connectivity.
    #[command(after_help = "Example:\n  tether device dev-1")]
    Device {
        /// The device (its thing name and MQTT client id).
        device: String,
    },
    /// Show one direct invocation and its history.
    #[command(after_help = "Example:\n  tether invocation 1b4e28ba-2fa1-41d2-883f-0016d3cca427")]
    Invocation {
        /// The invocation's request id (from `tether invoke` or a 504's requestId).
        request_id: String,
    },
    /// Create and manage commands (AWS IoT Commands).
    #[command(subcommand)]
    Commands(cmd::CommandsCmd),
    /// Start a command on devices; with --wait, follow each to its end.
    #[command(
        after_help = "Examples:\n  tether run unlock --target dev-1\n  tether run set-level --target dev-1 --target dev-2 --param level:I=7 --wait 30s"
    )]
    Run(cmd::RunArgs),
    /// Read command executions.
    #[command(subcommand)]
    Executions(cmd::ExecutionsCmd),
    /// Persistent work for devices that may be offline (AWS IoT Jobs): create, follow, cancel.
    #[command(subcommand)]
    Jobs(cmd::JobsCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Example:\n  tether completions bash > ~/.local/share/bash-completion/completions/tether"
    )]
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version: what was asked for, on stdout.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // Bad usage: one line, as every other error (`--help` has the rest).
            let text = err.render().to_string();
            let line = text.lines().next().unwrap_or_default();
            eprintln!("tether: {}", line.strip_prefix("error: ").unwrap_or(line));
            return Exit::BadInput.into();
        }
    };
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "tether", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let out = Out {
        format: cli.global.output,
        quiet: cli.global.quiet,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tether: {err}");
            return Exit::Unexpected.into();
        }
    };
    match runtime.block_on(run(cli, out)) {
        Ok(exit) => exit.into(),
        Err(err) => {
            if let (CliError::Api { body, .. }, Format::Json, false) = (&err, out.format, out.quiet)
            {
                out.show(body, |_| String::new());
            }
            eprintln!("tether: {err}");
            err.exit().into()
        }
    }
}

async fn run(cli: Cli, out: Out) -> Result<Exit, CliError> {
    // Everything is checked before the API is even looked for: bad input sends nothing.
    let request = cli.check()?;
    let aws = Aws {
        profile: cli.global.profile.clone(),
        region: cli.global.region.clone(),
    };
    let target = target::resolve(
        cli.global.api.as_deref(),
        cli.global.stack.as_deref(),
        cli.global.sign,
        &aws,
    )
    .await?;
    let client = api::Client::new(&target, &aws).await?;
    request.run(&client, out).await
}

impl Cli {
    fn check(&self) -> Result<cmd::Request, CliError> {
        Ok(match &self.command {
            Command::Invoke(args) => cmd::Request::Invoke(args.check()?),
            Command::Device { device } => cmd::Request::Device(cmd::device_id(device)?),
            Command::Invocation { request_id } => {
                cmd::Request::Invocation(cmd::request_id(request_id)?)
            }
            Command::Commands(c) => cmd::Request::Commands(c.check()?),
            Command::Run(args) => cmd::Request::Run(args.check()?),
            Command::Executions(c) => cmd::Request::Executions(c.check()?),
            Command::Jobs(c) => cmd::Request::Jobs(c.check()?),
            Command::Completions { .. } => {
                return Err(CliError::bad_input("completions are printed, not sent"))
            }
        })
    }
}
