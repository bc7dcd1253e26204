//! The tools beside the CRIU plugin, kept out of the library CRIU loads:
//! [`decode`] reads our image files back for people (`epcmig-decode`), and
//! [`samples`] makes images shaped like the plugin's for the decoder tests
//! and the fuzz seeds. `epcmig-criu-action`, CRIU's action script for gtp
//! devices, is a binary of this crate over the plugin's own code.

pub mod decode;
#[doc(hidden)]
pub mod samples;
