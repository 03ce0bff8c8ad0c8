//! TLS: against a server with a self-signed certificate that refuses
//! unencrypted TCP, `sslmode=require` (and the default, `prefer`) connect
//! encrypted and run; `sslmode=disable` is refused by the server, a clear
//! error with exit code 6. The password stays out of every output.

use crate::live_run::write;
use crate::pg_harness::{pooltune, PgCluster};

const WORKLOAD: &str = r#"
name = "live-tls"
duration = "2s"
[arrivals]
kind = "poisson"
rate_per_s = 20.0
[service]
kind = "constant"
value = "10ms"
"#;

#[test]
fn tls_connections_run_and_a_server_that_requires_tls_refuses_plain_ones() {
    let Some(pg) = PgCluster::start_with("tls_connections_run", true) else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(dir.path(), "w.toml", WORKLOAD);
    for (name, url) in [
        ("require", format!("{}?sslmode=require", pg.url())),
        ("prefer (default)", pg.url()),
    ] {
        let out = dir.path().join(name.split(' ').next().unwrap());
        let run = pooltune()
            .args(["live", "run", "--policy", "fixed-10", "--trace", &trace])
            .arg("--database-url")
            .arg(&url)
            .arg("--out")
            .arg(&out)
            .args(["--format", "json"])
            .assert()
            .success();
        let o = run.get_output();
        for text in [&o.stdout, &o.stderr] {
            let text = String::from_utf8_lossy(text);
            assert!(!text.contains(&pg.password), "{name}: {text}");
        }
        let summary: pooltune::summary::Summary = serde_json::from_slice(&o.stdout).unwrap();
        let r = &summary.runs[0].requests;
        assert!(
            r.completed > 10 && r.completed == r.arrived,
            "{name}: {r:?}"
        );
    }
    // Unencrypted: the server says no, and the message says why.
    let run = pooltune()
        .args(["live", "run", "--trace", &trace, "--no-write"])
        .arg("--database-url")
        .arg(format!("{}?sslmode=disable", pg.url()))
        .assert()
        .code(6);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(stderr.contains("no encryption"), "{stderr}");
    assert!(!stderr.contains(&pg.password), "{stderr}");
    // Certificate verification is refused rather than faked.
    let run = pooltune()
        .env("PGSSLMODE", "verify-full")
        .args(["live", "run", "--trace", &trace, "--no-write"])
        .arg("--database-url")
        .arg(pg.url())
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(stderr.contains("verification is not supported"), "{stderr}");
}
