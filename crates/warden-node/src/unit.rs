//! A hardened systemd unit that runs one OpenBao node as the environment's `runtime_owner`.
//!
//! The unit gives the server only what it needs: its own user, no new privileges, a read-only
//! view of the system with write access to the raft data and audit directories alone, a
//! private `/tmp`, no home directories, no capabilities (none are needed above port 1024:
//! OpenBao has no `mlock`, docs/openbao.md difference 3), and no core dumps or swap, so the
//! barrier keys held in memory never land on a disk. `systemctl reload` sends SIGHUP, which
//! makes OpenBao re-read its TLS certificates, log level and audit devices.

use std::path::PathBuf;

use crate::error::NodeError;

/// Everything a node's systemd unit is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitConfig {
    /// The Warden environment (`prod`).
    pub environment: String,
    /// The raft node id (`prod-1`).
    pub node_id: String,
    /// The Unix user the server runs as (the environment's `runtime_owner`).
    pub user: String,
    /// Its group.
    pub group: String,
    /// The `bao` binary (absolute path).
    pub bao_binary: PathBuf,
    /// The server configuration file (absolute path).
    pub config_file: PathBuf,
    /// The only paths the server may write: the raft data directory and the audit directory.
    pub read_write_paths: Vec<PathBuf>,
    /// The listeners bind a port below 1024, so the server needs `CAP_NET_BIND_SERVICE`.
    pub privileged_port: bool,
    /// Who generated the file, for its first comment line.
    pub generated_by: String,
}

impl UnitConfig {
    /// The unit's file name (`warden-openbao-prod-1.service`).
    pub fn file_name(&self) -> String {
        format!("warden-openbao-{}.service", self.node_id)
    }

    /// Refuses values systemd would misread: a newline starts a new directive, whitespace
    /// splits a path list, `%` is a specifier, and relative paths are not allowed.
    pub fn validate(&self) -> Result<(), NodeError> {
        for (field, value) in [("User", &self.user), ("Group", &self.group)] {
            let ok = !value.is_empty()
                && value.len() <= 32
                && !value.starts_with('-')
                && value.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !ok {
                return Err(NodeError::invalid(
                    field,
                    value,
                    "must be a Unix name: 1-32 of a-z, 0-9, '_' and '-', not starting with '-'",
                ));
            }
        }
        let paths = [
            ("ExecStart", &self.bao_binary),
            ("config file", &self.config_file),
        ]
        .into_iter()
        .chain(self.read_write_paths.iter().map(|p| ("ReadWritePaths", p)));
        for (field, path) in paths {
            let s = path.to_string_lossy();
            if !path.is_absolute() {
                return Err(NodeError::invalid(field, &s, "must be an absolute path"));
            }
            if s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '%' || c == '"')
            {
                return Err(NodeError::invalid(
                    field,
                    &s,
                    "must not contain whitespace, control characters, '%' or '\"'",
                ));
            }
        }
        if self.read_write_paths.is_empty() {
            return Err(NodeError::invalid(
                "ReadWritePaths",
                "",
                "needs at least the raft data directory",
            ));
        }
        crate::config::check_node_id(&self.node_id)
    }

    /// Renders the unit file.
    pub fn render(&self) -> Result<String, NodeError> {
        self.validate()?;
        let caps = if self.privileged_port {
            "CAP_NET_BIND_SERVICE"
        } else {
            ""
        };
        let rw = self
            .read_write_paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(format!(
            r#"# {by} for node {node} of environment "{env}". Generated: edits are overwritten.
[Unit]
Description=OpenBao node {node} (Warden environment {env})
Documentation=https://openbao.org/docs/
Wants=network-online.target
After=network-online.target
ConditionFileNotEmpty={config}
# Three failed starts within a minute stop the restarts: a node that cannot start (bad
# configuration, missing certificate) must not spin.
StartLimitIntervalSec=60
StartLimitBurst=3

[Service]
Type=notify
User={user}
Group={group}
ExecStart={bao} server -config={config}
# SIGHUP re-reads TLS certificates, the log level and audit devices without a restart.
ExecReload=/bin/kill --signal HUP $MAINPID
KillMode=process
KillSignal=SIGINT
TimeoutStopSec=30
Restart=on-failure
RestartSec=5
LimitNOFILE=65536
# Keys live in this process's memory: never in a core dump, never in swap.
LimitCORE=0
MemorySwapMax=0
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet={caps}
AmbientCapabilities={caps}
ProtectSystem=strict
ReadWritePaths={rw}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"#,
            by = self.generated_by,
            node = self.node_id,
            env = self.environment,
            user = self.user,
            group = self.group,
            bao = self.bao_binary.display(),
            config = self.config_file.display(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> UnitConfig {
        UnitConfig {
            environment: "prod".into(),
            node_id: "prod-1".into(),
            user: "warden-prod".into(),
            group: "warden-prod".into(),
            bao_binary: "/usr/bin/bao".into(),
            config_file: "/etc/warden/prod/openbao/prod-1.hcl".into(),
            read_write_paths: vec![
                "/var/lib/warden/prod/raft".into(),
                "/var/log/warden/prod".into(),
            ],
            privileged_port: false,
            generated_by: "warden server config".into(),
        }
    }

    fn directives(text: &str) -> Vec<(&str, &str)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('['))
            .filter_map(|l| l.split_once('='))
            .collect()
    }

    fn value<'a>(text: &'a str, key: &str) -> &'a str {
        directives(text)
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{key} missing in\n{text}"))
    }

    #[test]
    fn runs_as_the_runtime_owner_with_the_hardening_in_force() {
        let text = unit().render().unwrap();
        assert_eq!(value(&text, "User"), "warden-prod");
        assert_eq!(value(&text, "Group"), "warden-prod");
        assert_eq!(
            value(&text, "ExecStart"),
            "/usr/bin/bao server -config=/etc/warden/prod/openbao/prod-1.hcl"
        );
        for (key, want) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("LimitCORE", "0"),
            ("MemorySwapMax", "0"),
            ("Restart", "on-failure"),
            ("ExecReload", "/bin/kill --signal HUP $MAINPID"),
            ("CapabilityBoundingSet", ""),
            ("AmbientCapabilities", ""),
            (
                "ReadWritePaths",
                "/var/lib/warden/prod/raft /var/log/warden/prod",
            ),
        ] {
            assert_eq!(value(&text, key), want, "{key}");
        }
        assert_eq!(unit().file_name(), "warden-openbao-prod-1.service");
    }

    #[test]
    fn a_privileged_port_gets_exactly_the_bind_capability() {
        let text = UnitConfig {
            privileged_port: true,
            ..unit()
        }
        .render()
        .unwrap();
        assert_eq!(
            value(&text, "CapabilityBoundingSet"),
            "CAP_NET_BIND_SERVICE"
        );
        assert_eq!(value(&text, "AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    }

    #[test]
    fn every_directive_is_known_to_systemd_once() {
        let text = unit().render().unwrap();
        let keys: Vec<&str> = directives(&text).into_iter().map(|(k, _)| k).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            keys.len(),
            unique.len(),
            "a directive is repeated: {keys:?}"
        );
    }

    #[test]
    fn values_that_would_inject_directives_are_refused() {
        let bad_user = UnitConfig {
            user: "root\nExecStartPre=/bin/sh".into(),
            ..unit()
        };
        let err = bad_user.render().unwrap_err().to_string();
        assert!(err.starts_with("User = "), "{err}");
        let spaced = UnitConfig {
            read_write_paths: vec!["/var/lib/warden/prod /".into()],
            ..unit()
        };
        assert!(
            spaced
                .render()
                .unwrap_err()
                .to_string()
                .contains("whitespace")
        );
        let relative = UnitConfig {
            config_file: "server.hcl".into(),
            ..unit()
        };
        assert!(
            relative
                .render()
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
        let none = UnitConfig {
            read_write_paths: vec![],
            ..unit()
        };
        assert!(none.render().is_err());
    }
}
