//! The lab's own PostgreSQL: one cluster under `<lab>/postgres/`, on 127.0.0.1 and a port
//! chosen the first time it starts (kept in `lab.json`), for the databases a spec declares
//! with the host [`LAB_POSTGRES_HOST`].
//!
//! ```text
//! <lab>/postgres/                 ours (0700; 0711 when PostgreSQL runs as `nobody`)
//!   <admin>.password              the engine's first password (0600), read once by apply,
//!                                 stale as soon as apply rotates it (`rotate-root`)
//!   server/                       the PostgreSQL user's (0700)
//!     data/  sock/  postgres.log
//! ```
//!
//! **No superuser password exists.** `initdb` runs with peer authentication for local
//! sockets and no host access; the lab then writes `pg_hba.conf` so that the superuser
//! `postgres` is reachable only over the cluster's own Unix socket (in `server/sock`, 0700),
//! by peer authentication of the OS user PostgreSQL runs as (`pg_ident.conf` maps it), and
//! everyone else only over loopback TCP with a SCRAM password. The engine's admin role gets
//! its password as a SCRAM verifier ([`super::scram`]), so the clear text never reaches the
//! server; the file apply reads it from is owner-only.
//!
//! **What the lab does as the database's owner** (in production a DBA's job, see
//! docs/secrets.md): for each lab database of the spec, the admin role the engine logs in as
//! (`LOGIN CREATEROLE`, a member of each group `WITH ADMIN OPTION` so it can put the dynamic
//! users in it), and for each app using it the group `<app>_role` (the spec's `db_group`), a
//! schema named after the app with a sample table `<app>.records` that the group may read, and
//! a schema `internal` (table `internal.payroll`) that no group is granted, so a test can see
//! a dynamic user refused. Every statement is idempotent: `lab up` runs them each time.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_spec::Spec;
use zeroize::Zeroizing;

use super::{PgError, PgServer, quote_ident, scram};
use crate::process;

/// The host a spec writes in a database's `connection_url` to mean "the lab's own PostgreSQL":
/// `postgresql://{{username}}:{{password}}@lab-postgres/postgres?sslmode=disable`. The lab
/// replaces it by `127.0.0.1:<port>` and the database's `password_file` by the file it wrote
/// ([`LabPostgres::bind`]).
pub const LAB_POSTGRES_HOST: &str = "lab-postgres";
/// The superuser `initdb` creates; reachable only by peer authentication on the lab's socket.
const SUPERUSER: &str = "postgres";
/// The database the lab's schemas live in.
const DATABASE: &str = "postgres";
/// The schema no group is granted.
const NOT_GRANTED_SCHEMA: &str = "internal";

/// The lab's PostgreSQL in `lab.json`: the port chosen when it first started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

/// What [`LabPostgres::up`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PostgresUpReport {
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// `initdb` ran in this call.
    pub initialised: bool,
    /// The server was started by this call (it was not running).
    pub started: bool,
    /// The postmaster's PID.
    pub pid: u32,
    /// The admin roles the engines log in as.
    pub admins: Vec<String>,
    /// The group roles (`<app>_role`) the lab keeps, with the schema each may read.
    pub groups: Vec<String>,
}

/// `lab status`'s view of the lab's PostgreSQL.
#[derive(Debug, Clone, Serialize)]
pub struct PostgresStatus {
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// Its postmaster is alive and owns the port.
    pub running: bool,
    /// The postmaster's PID, when running.
    pub pid: Option<u32>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The server log.
    pub log: PathBuf,
}

/// A lab database of the spec: its admin and the apps using it.
struct LabDatabase {
    admin: String,
    apps: Vec<(String, String)>,
}

/// The lab's PostgreSQL cluster.
#[derive(Debug, Clone)]
pub struct LabPostgres {
    server: PgServer,
    root: PathBuf,
    lab_root: PathBuf,
    port: u16,
}

impl LabPostgres {
    /// The cluster of the lab in `lab_root` (`<lab>/postgres`), on `port`. Finds the binaries;
    /// touches nothing.
    pub fn new(lab_root: &Path, port: u16) -> Result<Self, PgError> {
        let root = lab_root.join("postgres");
        Ok(Self {
            server: PgServer::locate(root.join("server"))?,
            root,
            lab_root: lab_root.to_path_buf(),
            port,
        })
    }

    /// Checks, before anything is started, what would stop the lab's PostgreSQL later: the
    /// server binaries are installed, and when PostgreSQL must run as `nobody` (we are root)
    /// every existing directory above `lab_root` lets it through.
    pub fn preflight(lab_root: &Path) -> Result<(), PgError> {
        let lab_root = std::path::absolute(lab_root).unwrap_or_else(|_| lab_root.to_path_buf());
        if PgServer::locate(lab_root.join("postgres/server"))?.needs_traversal() {
            searchable_above(&lab_root)?;
        }
        Ok(())
    }

    /// Whether `spec` declares a database on the lab's PostgreSQL.
    pub fn wanted_by(spec: &Spec) -> bool {
        spec.databases.iter().any(is_lab_database)
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file holding the first password of `admin` (the engine's login).
    pub fn password_file(&self, admin: &str) -> PathBuf {
        password_file(&self.lab_root, admin)
    }

    /// Points every lab database of `spec` at this server ([`bind`]).
    pub fn bind(&self, spec: &mut Spec) {
        bind(spec, &self.lab_root, self.port);
    }

    /// Initialises the cluster if needed, starts it if it is not running, and (with a spec)
    /// creates what the spec's lab databases need: admin roles, groups, schemas, grants.
    pub async fn up(&self, spec: Option<&Spec>) -> Result<PostgresUpReport, PgError> {
        let databases = spec.map(lab_databases).transpose()?.unwrap_or_default();
        self.prepare_dirs()?;
        let initialised = !self.server.initialised();
        if initialised {
            self.initdb().await?;
        }
        self.write_settings()?;
        let (pid, started) = match self.running_pid() {
            Some(pid) => (pid, false),
            None => (self.server.start(self.port).await?, true),
        };
        let mut admins = Vec::new();
        let mut groups = Vec::new();
        for db in &databases {
            self.ensure_admin(&db.admin).await?;
            admins.push(db.admin.clone());
            for (app, group) in &db.apps {
                groups.push(format!("{group} (reads {app}.records)"));
            }
        }
        if !databases.is_empty() {
            self.server
                .psql(self.port, SUPERUSER, DATABASE, &grants_sql(&databases))
                .await?;
        }
        Ok(PostgresUpReport {
            address: self.address(),
            initialised,
            started,
            pid,
            admins,
            groups,
        })
    }

    /// The postmaster's PID when it runs and owns the port.
    fn running_pid(&self) -> Option<u32> {
        self.server
            .pid()
            .filter(|&pid| process::pid_listens_on(pid, self.port).unwrap_or(false))
    }

    /// Stops the server (`pg_ctl stop -m fast`, `SIGKILL` as a last resort). Returns whether
    /// one was running.
    pub fn stop(&self) -> Result<bool, PgError> {
        if !self.server.initialised() {
            return Ok(false);
        }
        // `pg_ctl` runs as the PostgreSQL user and needs to reach the data directory; a later
        // `lab up` may have made the lab directory 0700 again.
        self.allow_traversal()?;
        Ok(self.server.stop_blocking(self.server.pid(), "fast"))
    }

    /// What `lab status` shows.
    pub fn status(&self) -> PostgresStatus {
        let pid = self.running_pid();
        PostgresStatus {
            address: self.address(),
            running: pid.is_some(),
            pid,
            data_dir: self.server.data_dir(),
            log: self.server.log(),
        }
    }

    fn prepare_dirs(&self) -> Result<(), PgError> {
        warden_files::ensure_private_dir(&self.root)?;
        self.allow_traversal()?;
        self.server.prepare_dirs()
    }

    /// When PostgreSQL runs as `nobody` (we are root), it must traverse the lab directory and
    /// `<lab>/postgres`: they become 0711 (search, no listing). Every directory above the lab
    /// must already allow it; when one does not, say which.
    fn allow_traversal(&self) -> Result<(), PgError> {
        if !self.server.needs_traversal() {
            return Ok(());
        }
        for d in [&self.lab_root, &self.root] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711))
                .map_err(PgError::io("chmod 0711", d))?;
        }
        searchable_above(&self.lab_root)
    }

    /// `initdb` with peer authentication for local sockets and no host access at all: no
    /// password is ever set for the superuser. Then the lab's own `pg_hba.conf`, `pg_ident.conf`
    /// and an include of the settings file [`write_settings`](Self::write_settings) rewrites.
    async fn initdb(&self) -> Result<(), PgError> {
        let args: Vec<OsString> = [
            "-U",
            SUPERUSER,
            "--auth-local=peer",
            "--auth-host=reject",
            // The lab's data is throwaway until initdb has finished; skipping its fsyncs is
            // most of its time. The server itself runs with fsync on.
            "--no-sync",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        self.server.initdb(&args).await?;
        self.server.write_config(
            "pg_hba.conf",
            "# Written by `warden lab up`.\n\
             # The superuser: only over the lab's own Unix socket (0700), as the OS user\n\
             # PostgreSQL runs as (pg_ident.conf). It has no password.\n\
             local  all  postgres  peer  map=warden-lab\n\
             # Everyone else (the engine's admin, the dynamic users): loopback TCP, SCRAM.\n\
             host   all  all  127.0.0.1/32  scram-sha-256\n",
        )?;
        self.server.write_config(
            "pg_ident.conf",
            &format!(
                "# Written by `warden lab up`: the OS user PostgreSQL runs as is the superuser.\n\
                 warden-lab  {}  {SUPERUSER}\n",
                self.server.os_user()
            ),
        )?;
        self.server
            .append_settings("\n# warden lab\ninclude_if_exists = 'warden-lab.conf'\n")
    }

    /// The settings the lab owns, rewritten at every `up` (later settings win over
    /// `postgresql.conf`'s): loopback only, the port from `lab.json`, the socket in the lab,
    /// and no statement text in the log (a failing statement could carry a verifier).
    fn write_settings(&self) -> Result<(), PgError> {
        self.server.write_config(
            "warden-lab.conf",
            &format!(
                "# Written by `warden lab up` at every start.\n\
                 listen_addresses = '127.0.0.1'\n\
                 port = {port}\n\
                 unix_socket_directories = '{sock}'\n\
                 unix_socket_permissions = 0700\n\
                 password_encryption = 'scram-sha-256'\n\
                 log_statement = 'none'\n\
                 log_min_error_statement = 'panic'\n\
                 max_connections = 50\n",
                port = self.port,
                sock = self.server.sock_dir().display(),
            ),
        )
    }

    /// Creates `admin` (LOGIN CREATEROLE) with a fresh random password unless it exists. The
    /// password goes to `<admin>.password` (0600) first, then to the server as a SCRAM
    /// verifier; an existing admin is left alone (the engine has rotated its password).
    async fn ensure_admin(&self, admin: &str) -> Result<(), PgError> {
        let exists = self
            .server
            .psql(
                self.port,
                SUPERUSER,
                DATABASE,
                &format!(
                    "SELECT count(*) FROM pg_roles WHERE rolname = {};",
                    quote_literal(admin)
                ),
            )
            .await?;
        if exists.trim() != "0" {
            return Ok(());
        }
        let password = random_password()?;
        let file = self.password_file(admin);
        warden_files::write_atomic(
            &file,
            format!("{}\n", password.as_str()).as_bytes(),
            warden_files::Mode::OwnerOnly,
        )?;
        let verifier = scram::verifier(&password).map_err(|_| PgError::Io {
            what: "draw random bytes for",
            path: file.clone(),
            source: std::io::Error::other("the system random generator failed"),
        })?;
        self.server
            .psql(
                self.port,
                SUPERUSER,
                DATABASE,
                &format!(
                    "CREATE ROLE {} WITH LOGIN CREATEROLE PASSWORD {};",
                    quote_ident(admin),
                    quote_literal(&verifier)
                ),
            )
            .await
            .map(drop)
    }
}

/// Points every lab database of `spec` at the PostgreSQL of the lab in `lab_root`, listening
/// on `port`: `lab-postgres` in the connection URL becomes `127.0.0.1:<port>`, and
/// `password_file` the file the lab wrote for its admin. Other databases are left alone. Needs
/// no PostgreSQL binaries (`plan --lab` binds too).
pub fn bind(spec: &mut Spec, lab_root: &Path, port: u16) {
    for db in spec.databases.iter_mut().filter(|d| is_lab_database(d)) {
        db.connection_url = db.connection_url.replacen(
            &format!("@{LAB_POSTGRES_HOST}/"),
            &format!("@127.0.0.1:{port}/"),
            1,
        );
        db.password_file = password_file(lab_root, &db.username);
    }
}

/// Removes the lab databases (host `lab-postgres`) from `spec`, and their names from the apps
/// that list them: what a lab that runs no PostgreSQL has (a lab brought up without a spec
/// asking for one, the test harness's labs). Nothing of them is planned, applied or enrolled.
pub fn without_lab_databases(spec: &mut Spec) {
    let lab: Vec<String> = spec
        .databases
        .iter()
        .filter(|d| is_lab_database(d))
        .map(|d| d.name.to_string())
        .collect();
    spec.databases.retain(|d| !is_lab_database(d));
    for id in &mut spec.identities {
        id.databases.retain(|d| !lab.contains(d));
    }
}

fn password_file(lab_root: &Path, admin: &str) -> PathBuf {
    lab_root.join("postgres").join(format!("{admin}.password"))
}

/// Every existing directory above `lab_root` must be searchable by others (PostgreSQL runs as
/// `nobody`); the first that is not is named.
fn searchable_above(lab_root: &Path) -> Result<(), PgError> {
    for d in lab_root.ancestors().skip(1).filter(|d| d.exists()) {
        let meta = std::fs::metadata(d).map_err(PgError::io("inspect", d))?;
        if meta.mode() & 0o001 == 0 {
            return Err(PgError::Io {
                what: "PostgreSQL runs as `nobody` (warden runs as root) and cannot traverse",
                path: d.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the directory is not searchable by others; put the lab under a directory \
                     with mode 0711 or 0755, or run warden as a normal user",
                ),
            });
        }
    }
    Ok(())
}

fn is_lab_database(db: &warden_spec::Database) -> bool {
    db.connection_url
        .contains(&format!("@{LAB_POSTGRES_HOST}/"))
}

/// The spec's lab databases, their admins checked (plain lower-case names, not the
/// superuser) since the lab creates them.
fn lab_databases(spec: &Spec) -> Result<Vec<LabDatabase>, PgError> {
    let mut out = Vec::new();
    for db in spec.databases.iter().filter(|d| is_lab_database(d)) {
        let plain = !db.username.is_empty()
            && db
                .username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain || db.username == SUPERUSER {
            return Err(PgError::Io {
                what: "create the admin role of the lab database",
                path: PathBuf::from(format!("databases.{}.username", db.name)),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "`{}` must be lower-case letters, digits and `_`, and not `{SUPERUSER}`",
                        db.username
                    ),
                ),
            });
        }
        let apps = spec
            .identities
            .iter()
            .filter(|i| i.databases.iter().any(|d| d == db.name.as_str()))
            .map(|i| (i.name.to_string(), spec.naming.db_group.render(&i.name)))
            .collect();
        out.push(LabDatabase {
            admin: db.username.clone(),
            apps,
        });
    }
    Ok(out)
}

/// The owner's part, idempotent: groups, their schemas and grants, the admin's membership,
/// and the schema nobody is granted.
fn grants_sql(databases: &[LabDatabase]) -> String {
    let mut sql = String::new();
    let internal = quote_ident(NOT_GRANTED_SCHEMA);
    sql.push_str(&format!(
        "CREATE SCHEMA IF NOT EXISTS {internal};\n\
         REVOKE ALL ON SCHEMA {internal} FROM PUBLIC;\n\
         CREATE TABLE IF NOT EXISTS {internal}.payroll (id integer PRIMARY KEY, employee text NOT NULL, salary_cents bigint NOT NULL);\n\
         INSERT INTO {internal}.payroll VALUES (1, 'lab employee', 100000) ON CONFLICT DO NOTHING;\n"
    ));
    for db in databases {
        let admin = quote_ident(&db.admin);
        for (app, group) in &db.apps {
            let (schema, group_id) = (quote_ident(app), quote_ident(group));
            sql.push_str(&format!(
                "DO $$ BEGIN\n\
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {group_lit}) THEN\n\
                     CREATE ROLE {group_id} NOLOGIN;\n\
                   END IF;\n\
                 END $$;\n\
                 CREATE SCHEMA IF NOT EXISTS {schema};\n\
                 CREATE TABLE IF NOT EXISTS {schema}.records (id integer PRIMARY KEY, note text NOT NULL);\n\
                 INSERT INTO {schema}.records VALUES (1, {note}) ON CONFLICT DO NOTHING;\n\
                 GRANT USAGE ON SCHEMA {schema} TO {group_id};\n\
                 GRANT SELECT ON {schema}.records TO {group_id};\n\
                 GRANT {group_id} TO {admin} WITH ADMIN OPTION;\n",
                group_lit = quote_literal(group),
                note = quote_literal(&format!("readable by {group}")),
            ));
        }
    }
    sql
}

/// A SQL string literal (`'…'`, inner quotes doubled).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// 32 random bytes as hex: needs no escaping in a URL, a password file or SQL.
fn random_password() -> Result<Zeroizing<String>, PgError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| PgError::Io {
            what: "draw random bytes from",
            path: PathBuf::from("/dev/urandom"),
            source: std::io::Error::other("the system random generator failed"),
        })?;
    Ok(Zeroizing::new(hex::encode(&bytes[..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"version = 1
[environments.test]
domain = "test.warden.internal"
runtime_owner = "warden-test"
app_root = "/srv/warden/test"

[apps.billing]
environments = ["test"]
databases = ["main"]

[apps.ledger]
environments = ["test"]
databases = ["elsewhere"]

[databases.main]
environments = ["test"]
connection_url = "postgresql://{{username}}:{{password}}@lab-postgres/postgres?sslmode=disable"
username = "warden_admin"
password_file = "unused"

[databases.elsewhere]
environments = ["test"]
connection_url = "postgresql://{{username}}:{{password}}@db.example:5432/app"
username = "admin"
password_file = "admin.password"

[purposes.p]
description = "x"
owner = "platform"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "1h", grace = "20m" }
evidence = "EV"
covers = ["*/database/*", "*/identity-cert"]
"#;

    #[test]
    fn bind_points_only_lab_databases_at_the_lab() {
        let mut spec = warden_spec::parse(SPEC, "t.toml").expect("spec");
        assert!(LabPostgres::wanted_by(&spec));
        bind(&mut spec, Path::new("/lab"), 54321);
        let main = spec.database("main").unwrap();
        assert_eq!(
            main.connection_url,
            "postgresql://{{username}}:{{password}}@127.0.0.1:54321/postgres?sslmode=disable"
        );
        assert_eq!(
            main.password_file,
            Path::new("/lab/postgres/warden_admin.password")
        );
        let other = spec.database("elsewhere").unwrap();
        assert_eq!(
            other.connection_url,
            "postgresql://{{username}}:{{password}}@db.example:5432/app"
        );
        assert_eq!(other.password_file, Path::new("admin.password"));
    }

    #[test]
    fn a_lab_without_postgres_drops_only_its_databases() {
        let mut spec = warden_spec::parse(SPEC, "t.toml").expect("spec");
        without_lab_databases(&mut spec);
        let names: Vec<&str> = spec.databases.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["elsewhere"]);
        assert!(spec.identity("billing").unwrap().databases.is_empty());
        assert_eq!(spec.identity("ledger").unwrap().databases, ["elsewhere"]);
        assert!(!LabPostgres::wanted_by(&spec));
    }

    #[test]
    fn grants_are_per_app_and_leave_internal_ungranted() {
        let spec = warden_spec::parse(SPEC, "t.toml").expect("spec");
        let dbs = lab_databases(&spec).unwrap();
        assert_eq!(dbs.len(), 1);
        let sql = grants_sql(&dbs);
        assert!(
            sql.contains("GRANT SELECT ON \"billing\".records TO \"billing_role\";"),
            "{sql}"
        );
        assert!(sql.contains("GRANT \"billing_role\" TO \"warden_admin\" WITH ADMIN OPTION;"));
        assert!(!sql.contains("ON SCHEMA \"internal\" TO"), "{sql}");
    }

    #[test]
    fn an_admin_the_lab_cannot_create_is_refused_by_name() {
        let spec = SPEC.replace("username = \"warden_admin\"", "username = \"postgres\"");
        let spec = warden_spec::parse(&spec, "t.toml").expect("spec");
        let err = lab_databases(&spec).err().expect("refused").to_string();
        assert!(err.contains("databases.main.username"), "{err}");
    }
}
