//! `epcmig-decode`: prints epcmig's image files as JSON, like `crit decode`
//! does for CRIU's. See `epcmig_tools::decode`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use epcmig_tools::decode::{decode_dir, decode_file, Image, ImageError};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "epcmig-decode",
    version,
    about = "Print epcmig image files (SCTP snapshots, gtp tables) as JSON",
    long_about = "Print epcmig image files (SCTP snapshots, gtp tables) as JSON.\n\n\
        A FILE prints one JSON object; a directory (CRIU's image dir) prints an \
        array with every file of ours in it (named epcmig-* or starting with our \
        magic), by name; several paths print an array. A file that cannot be \
        decoded is named on stderr with the cause, and the exit status is 1."
)]
struct Cli {
    /// One line per document instead of indented JSON.
    #[arg(long)]
    compact: bool,
    /// Image files or image directories.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn json(path: &Path, img: &Image) -> Value {
    img.to_json(Some(&path.display().to_string()))
}

fn report(e: &ImageError, path: &Path) {
    match e {
        // These name the path themselves.
        ImageError::Io { .. }
        | ImageError::TooLarge { .. }
        | ImageError::Symlink(_)
        | ImageError::NotAFile(_) => {
            eprintln!("epcmig-decode: {e}")
        }
        _ => eprintln!("epcmig-decode: {}: {e}", path.display()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut docs = Vec::new();
    let mut failed = false;
    for path in &cli.paths {
        if path.is_dir() {
            match decode_dir(path) {
                Ok(list) => {
                    for (p, r) in list {
                        match r {
                            Ok(img) => docs.push(json(&p, &img)),
                            Err(e) => {
                                report(&e, &p);
                                failed = true;
                            }
                        }
                    }
                }
                Err(e) => {
                    report(&e, path);
                    failed = true;
                }
            }
        } else {
            match decode_file(path) {
                Ok(img) => docs.push(json(path, &img)),
                Err(e) => {
                    report(&e, path);
                    failed = true;
                }
            }
        }
    }
    let single_file = cli.paths.len() == 1 && !cli.paths[0].is_dir();
    let out = match (single_file, docs.pop()) {
        (true, Some(doc)) => Some(doc),
        (true, None) => None,
        (false, last) => {
            docs.extend(last);
            Some(Value::Array(docs))
        }
    };
    if let Some(out) = out {
        let text = if cli.compact {
            serde_json::to_string(&out)
        } else {
            serde_json::to_string_pretty(&out)
        };
        // Serialising a Value cannot fail.
        let text = text.unwrap_or_default();
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{text}").is_err() {
            return ExitCode::from(1);
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
