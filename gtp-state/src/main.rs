//! `gtp-state`: capture, restore and show gtp devices and their PDP tables.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gtp_state::{format, restore, Error, GtpState, Netns, RestoreOptions, SocketSource};

#[derive(Parser)]
#[command(
    name = "gtp-state",
    version,
    about = "Capture and re-create Linux gtp devices and their PDP/TEID tables"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
#[group(required = false, multiple = false)]
struct NsArgs {
    /// The network namespace: a path, or a name under /run/netns.
    #[arg(long, value_name = "PATH")]
    netns: Option<String>,
    /// The network namespace of process PID.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
}

impl NsArgs {
    fn ns(&self) -> Netns {
        match (&self.netns, self.pid) {
            (Some(p), _) => Netns::named(p),
            (None, Some(pid)) => Netns::Pid(pid),
            (None, None) => Netns::Current,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Capture a gtp device and its PDP contexts into FILE.
    Capture {
        #[command(flatten)]
        ns: NsArgs,
        /// The gtp device.
        #[arg(long, value_name = "NAME")]
        dev: String,
        /// The capture file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Re-create the device and its contexts from FILE.
    Restore {
        #[command(flatten)]
        ns: NsArgs,
        /// The capture file.
        #[arg(short, long, value_name = "FILE")]
        input: PathBuf,
        /// GTPv0 UDP socket of the restored process (an fd of this process).
        #[arg(long, value_name = "N")]
        fd0: Option<i32>,
        /// GTPv1-U UDP socket of the restored process.
        #[arg(long, value_name = "N")]
        fd1: Option<i32>,
        /// Let the kernel create the sockets, whatever the capture says.
        #[arg(long, conflicts_with_all = ["fd0", "fd1"])]
        kernel_sockets: bool,
        /// Local address for --kernel-sockets (default: as captured, or any).
        #[arg(long, value_name = "ADDR", requires = "kernel_sockets")]
        local: Option<IpAddr>,
        /// PDP contexts per netlink send().
        #[arg(long, default_value_t = gtp_state::DEFAULT_BATCH)]
        batch: usize,
        /// Send one GTP_CMD_NEWPDP request per context (in batches of
        /// --batch per send()) even where the kernel has GTP_CMD_NEWPDPS.
        #[arg(long)]
        no_bulk: bool,
        /// PDP hash size of the re-created device (default: as captured),
        /// e.g. to size it for the table when the original used the
        /// kernel's default.
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(gtp_state::MAX_HASH_SIZE)))]
        hash_size: Option<u32>,
    },
    /// Print a capture file (or a live device) as JSON.
    Show {
        /// A capture file.
        #[arg(short, long, value_name = "FILE", conflicts_with = "dev")]
        input: Option<PathBuf>,
        #[command(flatten)]
        ns: NsArgs,
        /// A live gtp device to capture and print instead.
        #[arg(long, value_name = "NAME")]
        dev: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Gtp(#[from] Error),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

fn read(path: &PathBuf) -> Result<GtpState, CliError> {
    let b = std::fs::read(path).map_err(|e| CliError::File {
        path: path.display().to_string(),
        source: e,
    })?;
    format::decode(&b).map_err(|e| CliError::Gtp(Error::Format(e)))
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Capture { ns, dev, output } => {
            let st = gtp_state::capture(&ns.ns(), &dev)?;
            let b = format::encode(&st).map_err(Error::Format)?;
            std::fs::write(&output, &b).map_err(|e| CliError::File {
                path: output.display().to_string(),
                source: e,
            })?;
            let how = match st.sockets_found.by {
                gtp_state::FoundBy::Kernel => "named by the kernel",
                gtp_state::FoundBy::Ports => "guessed from the GTP ports",
                gtp_state::FoundBy::Unknown => "not found",
            };
            eprintln!(
                "captured {} (ifindex {}): {} PDP contexts, {} addresses, {} routes, {} bytes; sockets {how}",
                st.device.name,
                st.device.ifindex,
                st.pdps.len(),
                st.addresses.len(),
                st.routes.len(),
                b.len()
            );
        }
        Cmd::Restore {
            ns,
            input,
            fd0,
            fd1,
            kernel_sockets,
            local,
            batch,
            no_bulk,
            hash_size,
        } => {
            let st = read(&input)?;
            let sockets = if fd0.is_some() || fd1.is_some() {
                SocketSource::Fds { fd0, fd1 }
            } else if kernel_sockets {
                let local = local.or(match st.sockets {
                    gtp_state::Sockets::Kernel { local } => local,
                    _ => None,
                });
                SocketSource::Kernel { local }
            } else {
                SocketSource::AsCaptured
            };
            let install = if no_bulk {
                gtp_state::Install::Batched(batch)
            } else {
                gtp_state::Install::Bulk(batch)
            };
            let opts = RestoreOptions {
                sockets,
                install,
                hash_size,
                ..Default::default()
            };
            restore(&ns.ns(), &st, &opts)?;
            eprintln!(
                "restored {} (ifindex {}): {} PDP contexts",
                st.device.name,
                st.device.ifindex,
                st.pdps.len()
            );
        }
        Cmd::Show { input, ns, dev } => {
            let st = match (input, dev) {
                (Some(i), None) => read(&i)?,
                (None, Some(d)) => gtp_state::capture(&ns.ns(), &d)?,
                _ => return Err(CliError::Usage("show needs -i FILE or --dev NAME".into())),
            };
            let j = serde_json::to_string_pretty(&st)
                .map_err(|e| CliError::Usage(format!("JSON: {e}")))?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{j}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gtp-state: error: {e}");
            ExitCode::from(1)
        }
    }
}
