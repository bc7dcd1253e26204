//! Generates Rust bindings for the C headers in `include/`.
//!
//! One bindgen pass per header so each lands in its own module of
//! `epcmig-sys`; only the items we declare there are kept, which stops the
//! system headers they pull in from leaking into the bindings.

use std::env;
use std::path::PathBuf;

const HEADERS: &[(&str, &str)] = &[
    ("sctp_repair.h", "(SCTP_REPAIR.*|sctp_repair_.*)"),
    (
        "linux_uapi.h",
        concat!(
            "SCTP_(NODELAY|AUTOCLOSE|DISABLE_FRAGMENTS|EVENTS|MAXSEG|CONTEXT",
            "|FRAGMENT_INTERLEAVE|PARTIAL_DELIVERY_POINT|HMAC_IDENT",
            "|GET_ASSOC_NUMBER|AUTO_ASCONF|RECVRCVINFO|RECVNXTINFO",
            "|DEFAULT_SNDINFO|SOCKOPT_BINDX_ADD|SOCKOPT_PEELOFF",
            "|GET_LOCAL_ADDRS|AUTH_SUPPORTED)|SIOCGSKNS|IFA_F_TENTATIVE|SK_MEMINFO_.*",
        ),
    ),
    (
        "criu_plugin.h",
        "(CR_PLUGIN.*|CRIU_PLUGIN.*|cr_plugin.*|criu_get_image_dir)",
    ),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (header, allow) in HEADERS {
        let path = format!("include/{header}");
        println!("cargo:rerun-if-changed={path}");
        let bindings = bindgen::Builder::default()
            .header(&path)
            .allowlist_item(allow)
            .default_enum_style(bindgen::EnumVariation::Consts)
            .prepend_enum_name(false)
            .layout_tests(true)
            .generate()
            .unwrap_or_else(|e| panic!("bindgen failed on {path}: {e}"));
        let rs = out.join(header.replace(".h", ".rs"));
        bindings
            .write_to_file(&rs)
            .unwrap_or_else(|e| panic!("writing {}: {e}", rs.display()));
    }
}
