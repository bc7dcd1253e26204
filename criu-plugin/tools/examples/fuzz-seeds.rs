//! Writes the seed corpora of the fuzz targets (`fuzz/`) from the sample
//! images (`epcmig_tools::samples`), encoded by the crates' own writers:
//!
//! ```sh
//! cargo run -p criu-plugin --example fuzz-seeds -- fuzz/seeds
//! ```
//!
//! makes `fuzz/seeds/<target>/<name>` for the targets `sctp_snapshot`,
//! `gtp_table` and `plugin_image`. `tests/fuzz.sh` runs it before fuzzing.

use std::path::PathBuf;
use std::process::ExitCode;

use epcmig_tools::decode::Image;
use epcmig_tools::samples;

fn main() -> ExitCode {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz-seeds DIR");
        return ExitCode::from(2);
    };
    let mut n = 0;
    for (name, img) in samples::all() {
        let bytes = match img.encode() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("fuzz-seeds: encoding sample {name}: {e}");
                return ExitCode::from(1);
            }
        };
        let own = match img {
            Image::Sctp(_) => "sctp_snapshot",
            Image::Gtp(_) => "gtp_table",
        };
        for target in [own, "plugin_image"] {
            let dir = root.join(target);
            let path = dir.join(&name);
            if let Err(e) =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &bytes))
            {
                eprintln!("fuzz-seeds: {}: {e}", path.display());
                return ExitCode::from(1);
            }
            n += 1;
        }
    }
    println!("fuzz-seeds: wrote {n} seeds under {}", root.display());
    ExitCode::SUCCESS
}
