//! Capture and re-create Linux `gtp` devices and their PDP/TEID tables.
//!
//! Capture reads a device over rtnetlink (link info) and its tunnels from a
//! `GTP_CMD_GETPDP` dump of the `gtp` generic-netlink family; restore
//! re-creates the device with the same name and ifindex and re-installs the
//! contexts in batches. Work in progress: see the gtp-state issue.

/// Errors from capturing or restoring gtp state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No link of that name or index in the namespace.
    #[error("no such device: {0}")]
    NoSuchDevice(String),
    /// The link exists but is not of kind "gtp".
    #[error("{0} is not a gtp device")]
    NotGtp(String),
}

/// The two roles a gtp device plays (IFLA_GTP_ROLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The network side (SPGW/UPF/GGSN).
    Ggsn,
    /// The access side (eNB/gNB/SGSN).
    Sgsn,
}

impl Role {
    /// Decodes IFLA_GTP_ROLE.
    pub fn from_raw(v: u32) -> Option<Role> {
        match v {
            0 => Some(Role::Ggsn),
            1 => Some(Role::Sgsn),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_decoding_rejects_unknown_values() {
        assert_eq!(Role::from_raw(0), Some(Role::Ggsn));
        assert_eq!(Role::from_raw(1), Some(Role::Sgsn));
        assert_eq!(Role::from_raw(2), None);
    }
}
