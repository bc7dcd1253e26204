//! `tests/sources.toml`: the upstream versions we build.

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Sources {
    pub kernel: KernelSrc,
    pub criu: CriuSrc,
}

#[derive(Deserialize)]
pub struct KernelSrc {
    pub package: String,
    pub tarball: String,
    pub tested: String,
}

#[derive(Deserialize)]
pub struct CriuSrc {
    pub package: String,
    pub suite: String,
    pub upstream: String,
    pub tested: String,
}

impl Sources {
    pub fn load() -> Result<Sources> {
        let p = crate::paths::root().join("tests/sources.toml");
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }
}
