//! Where the live driver connects: a URL or key=value string, completed from
//! the standard `PG*` environment variables and the password file, like
//! libpq. The password is kept out of every output: [`Target::describe`]
//! never shows it and [`Target::redact`] scrubs it from any text (error
//! messages included) before that text is printed or written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::LiveError;

/// The `application_name` the live driver's connections carry (so they can
/// be found in `pg_stat_activity`), unless the connection string sets one.
pub const APPLICATION_NAME: &str = "pooltune-live";

/// Default connect timeout when neither the URL nor `PGCONNECT_TIMEOUT` sets one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const REDACTED: &str = "********";

/// A resolved database target.
#[derive(Clone)]
pub struct Target {
    config: Config,
    secrets: Vec<String>,
    described: String,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: only the description.
        f.debug_tuple("Target").field(&self.described).finish()
    }
}

impl Target {
    /// Resolves `url` (optional: a `postgres://` URL or `key=value ...`
    /// string), then fills what it leaves unset from the environment
    /// (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    /// `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGSSLMODE`, `PGPASSFILE`) and
    /// finally the password file. `env` reads a variable (tests pass a map).
    pub fn resolve(
        url: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Target, LiveError> {
        let mut config = match url {
            Some(u) => u.parse::<Config>().map_err(|e| {
                // The parser names the key, never the value; redact anyway.
                let password = password_in(u);
                LiveError::Target(format!(
                    "invalid --database-url (not shown: it may hold a password): {}",
                    scrub(&e.to_string(), password.as_deref())
                ))
            })?,
            None => Config::new(),
        };
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        if config.get_hosts().is_empty() {
            match var("PGHOST") {
                Some(h) => {
                    for host in h.split(',') {
                        config.host(host);
                    }
                }
                None => {
                    // libpq's default on Debian: the local socket directory.
                    let sock = Path::new("/var/run/postgresql");
                    if sock.is_dir() {
                        config.host_path(sock);
                    } else {
                        config.host("localhost");
                    }
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(p) = var("PGPORT") {
                let port = p.parse::<u16>().map_err(|_| {
                    LiveError::Target(format!("PGPORT: expected a port number, got {p:?}"))
                })?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = var("PGUSER")
                .or_else(|| var("USER"))
                .or_else(|| var("LOGNAME"))
                .ok_or_else(|| {
                    LiveError::Target("no user: set one in --database-url or PGUSER".to_string())
                })?;
            config.user(user);
        }
        if config.get_dbname().is_none() {
            let db = var("PGDATABASE")
                .unwrap_or_else(|| config.get_user().expect("user set above").to_string());
            config.dbname(db);
        }
        if config.get_application_name().is_none() {
            config.application_name(var("PGAPPNAME").unwrap_or_else(|| APPLICATION_NAME.into()));
        }
        if config.get_connect_timeout().is_none() {
            let t = match var("PGCONNECT_TIMEOUT") {
                Some(s) => {
                    let secs = s.parse::<u64>().map_err(|_| {
                        LiveError::Target(format!(
                            "PGCONNECT_TIMEOUT: expected whole seconds, got {s:?}"
                        ))
                    })?;
                    Duration::from_secs(secs.max(1))
                }
                None => DEFAULT_CONNECT_TIMEOUT,
            };
            config.connect_timeout(t);
        }
        if url.is_none_or(|u| !u.contains("sslmode")) {
            if let Some(mode) = var("PGSSLMODE") {
                config.ssl_mode(match mode.as_str() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" | "verify-full" => {
                        return Err(LiveError::Target(format!(
                            "PGSSLMODE={mode}: certificate verification is not supported yet; \
                             sslmode=require encrypts without verifying (as libpq does)"
                        )))
                    }
                    other => {
                        return Err(LiveError::Target(format!(
                            "PGSSLMODE: unknown mode {other:?} (disable, prefer, require)"
                        )))
                    }
                });
            }
        }
        if config.get_password().is_none() {
            if let Some(pw) = var("PGPASSWORD") {
                config.password(pw);
            } else if let Some(pw) = passfile_password(&config, env) {
                config.password(pw);
            }
        }
        let mut secrets = Vec::new();
        if let Some(pw) = config.get_password() {
            if !pw.is_empty() {
                secrets.push(String::from_utf8_lossy(pw).into_owned());
            }
        }
        if let Some(pw) = url.and_then(password_in) {
            if !pw.is_empty() && !secrets.contains(&pw) {
                secrets.push(pw);
            }
        }
        let described = describe(&config);
        Ok(Target {
            config,
            secrets,
            described,
            tls: super::tls::connector(),
        })
    }

    /// From the process environment.
    pub fn from_env(url: Option<&str>) -> Result<Target, LiveError> {
        Target::resolve(url, &|k| std::env::var(k).ok())
    }

    /// The TLS connector (used as `sslmode` says: disable, prefer, require).
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// The connection configuration (holds the password: never print it).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `user@host:port/dbname`, without the password.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// The application_name the connections carry.
    pub fn application_name(&self) -> &str {
        self.config
            .get_application_name()
            .unwrap_or(APPLICATION_NAME)
    }

    /// `text` with every occurrence of the password replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), REDACTED);
        }
        out
    }
}

fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, REDACTED),
        _ => text.to_string(),
    }
}

/// The raw password segment of a `postgres://user:password@...` URL, or
/// the value of a `password=` key, if any (for redaction only).
fn password_in(url: &str) -> Option<String> {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let userinfo = authority.rsplit_once('@')?.0;
        return userinfo.split_once(':').map(|(_, p)| p.to_string());
    }
    url.split_whitespace()
        .find_map(|kv| kv.strip_prefix("password="))
        .map(|p| p.trim_matches('\'').to_string())
}

fn describe(c: &Config) -> String {
    let host = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{}:{}/{}",
        c.get_user().unwrap_or("?"),
        host,
        port,
        c.get_dbname().unwrap_or("?")
    )
}

/// The password for `config` from `PGPASSFILE` or `~/.pgpass`
/// (`hostname:port:database:username:password`, `*` matches anything,
/// `\` escapes `:` and `\`). Like libpq, a file others can read is ignored.
fn passfile_password(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let path = env("PGPASSFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        // libpq matches a socket connection against "localhost".
        Some(Host::Unix(_)) | None => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let want = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or(""),
        config.get_user().unwrap_or(""),
    ];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_passfile_line(line);
        if fields.len() != 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("non-empty").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("non-empty").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn a_url_wins_over_the_environment_and_the_password_is_never_described() {
        let env = env_of(&[
            ("PGHOST", "db.invalid"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
        ]);
        let t = Target::resolve(
            Some("postgres://alice:Se%3Acret-1@127.0.0.1:5544/shop"),
            &env,
        )
        .unwrap();
        assert_eq!(t.describe(), "alice@127.0.0.1:5544/shop");
        assert_eq!(t.config().get_password(), Some(&b"Se:cret-1"[..]));
        assert_eq!(t.application_name(), APPLICATION_NAME);
        let msg = "FATAL: nope Se:cret-1 and Se%3Acret-1";
        assert_eq!(t.redact(msg), "FATAL: nope ******** and ********");
        assert!(!format!("{t:?}").contains("cret"));
    }

    #[test]
    fn the_environment_fills_what_the_url_leaves_out() {
        let env = env_of(&[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", "6000"),
            ("PGUSER", "bob"),
            ("PGPASSWORD", "pw-from-env"),
            ("PGCONNECT_TIMEOUT", "3"),
        ]);
        let t = Target::resolve(None, &env).unwrap();
        assert_eq!(t.describe(), "bob@127.0.0.1:6000/bob");
        assert_eq!(t.config().get_password(), Some(&b"pw-from-env"[..]));
        assert_eq!(
            t.config().get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(t.redact("x pw-from-env y"), "x ******** y");
    }

    #[test]
    fn bad_values_are_named_without_echoing_secrets() {
        let env = env_of(&[("PGUSER", "u")]);
        let e = Target::resolve(Some("postgres://u:TopSecret@h:notaport/db"), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--database-url"), "{e}");
        assert!(!e.contains("TopSecret"), "{e}");
        let e = Target::resolve(None, &env_of(&[("PGUSER", "u"), ("PGPORT", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PGPORT"), "{e}");
        let e = Target::resolve(
            None,
            &env_of(&[("PGUSER", "u"), ("PGSSLMODE", "verify-full")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("verification is not supported"), "{e}");
        let t = Target::resolve(Some("host=h user=u sslmode=require"), &env).unwrap();
        assert_eq!(t.config().get_ssl_mode(), SslMode::Require);
    }

    #[test]
    fn the_password_file_is_read_like_libpq() {
        let dir = std::env::temp_dir().join(format!("pooltune-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:*:*:*:wrong\n127.0.0.1:5544:*:carol:pa\\:ss\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let f = file.display().to_string();
        let env = env_of(&[("PGPASSFILE", f.as_str())]);
        let t = Target::resolve(Some("postgres://carol@127.0.0.1:5544/x"), &env).unwrap();
        assert_eq!(t.config().get_password(), Some(&b"pa:ss"[..]));
        assert_eq!(t.redact("pa:ss"), REDACTED);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
