//! `pooltune sim run --scenario` and scenario files in `pooltune check`:
//! exit codes (a failed assertion exits 1 and names itself), the topology
//! section of summary.json adds up, the per-server and per-service CSVs
//! agree with it, and a seed gives the same bytes every time.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
}

/// The shipped scenarios.
const SHIPPED: &[&str] = &[
    "single-service",
    "fleet-pgbouncer",
    "primary-replicas",
    "cold-start",
    "rolling-restart",
];

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("pooltune")
        .unwrap()
        .args(["sim", "run"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs a scenario into `dir`; returns the exit code, stdout and the
/// parsed summary.json.
fn run_into(name: &str, dir: &Path, extra: &[&str]) -> (i32, String, Value) {
    let path = scenario(name);
    let mut args = vec![
        "--scenario",
        path.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--no-report",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run(&args);
    let text = std::fs::read_to_string(dir.join("summary.json"))
        .unwrap_or_else(|e| panic!("{name}: no summary.json ({e}); exit {code}: {stderr}"));
    (code, stdout, serde_json::from_str(&text).unwrap())
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

#[test]
fn rolling_restart_passes_staggered_and_fails_all_at_once_naming_the_assertion() {
    let dir = TempDir::new().unwrap();
    let (code, stdout, s) = run_into("rolling-restart", &dir.path().join("staggered"), &[]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(s["topology"]["assertions_passed"], true);
    assert!(
        stdout.contains("PASS max_connects_per_s primary"),
        "{stdout}"
    );

    // Replacing all 8 instances at once: 200 connects in one second
    // against a limit of 100.
    let herd = dir.path().join("herd");
    let (code, stdout, s) = run_into("rolling-restart", &herd, &["--set", "events.0.pause=0s"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL max_connects_per_s primary"),
        "{stdout}"
    );
    assert_eq!(s["topology"]["assertions_passed"], false);
    let failed: Vec<&Value> = s["topology"]["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["passed"] == false)
        .collect();
    assert!(failed
        .iter()
        .any(|a| a["kind"] == "max_connects_per_s" && a["subject"] == "primary"));
    for a in &failed {
        // What the run showed is beyond the bound it failed.
        assert!(
            a["observed"].as_f64().unwrap() > a["limit"].as_f64().unwrap(),
            "{a}"
        );
    }
    // The outputs are written although the run failed its assertions.
    for f in [
        "timeseries.csv",
        "servers.csv",
        "services.csv",
        "summary.md",
    ] {
        assert!(herd.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn every_shipped_scenario_accounts_for_every_request_and_connect() {
    for name in SHIPPED {
        let dir = TempDir::new().unwrap();
        let (code, stdout, s) = run_into(name, dir.path(), &[]);
        assert!(code == 0 || code == 1, "{name}: exit {code}");
        let t = &s["topology"];
        let services = t["services"].as_array().unwrap();
        assert!(!services.is_empty(), "{name}");
        let mut arrived_all = 0;
        for sv in services {
            let r = &sv["requests"];
            let done = u(&r["completed"])
                + u(&r["timed_out"])
                + u(&r["failed"])
                + u(&r["rejected"])
                + u(&r["unrouted"]);
            assert_eq!(
                u(&r["arrived"]),
                done + u(&r["in_flight_at_end"]),
                "{name} {}",
                sv["name"]
            );
            // The run drains: nothing is left in flight.
            assert_eq!(u(&r["in_flight_at_end"]), 0, "{name} {}", sv["name"]);
            assert_eq!(u(&r["reads"]) + u(&r["writes"]), u(&r["arrived"]), "{name}");
            assert!(u(&r["reads_on_primary"]) <= u(&r["reads"]), "{name}");
            let by: u64 = ["high", "normal", "low"]
                .iter()
                .map(|p| u(&sv["by_priority"][p]["requests"]["arrived"]))
                .sum();
            assert_eq!(by, u(&r["arrived"]), "{name}");
            arrived_all += u(&r["arrived"]);
        }
        // runs[0] is the whole fleet.
        let run = &s["runs"][0];
        assert_eq!(u(&run["requests"]["arrived"]), arrived_all, "{name}");
        let rq = &run["requests"];
        assert_eq!(
            u(&rq["arrived"]),
            u(&rq["completed"])
                + u(&rq["timed_out"])
                + u(&rq["failed"])
                + u(&rq["rejected"])
                + u(&rq["in_flight_at_end"]),
            "{name}"
        );
        // Every connect attempt was accepted, refused or failed, and the
        // per-second CSV adds up to the totals.
        let csv = std::fs::read_to_string(dir.path().join("servers.csv")).unwrap();
        for sv in t["servers"].as_array().unwrap() {
            assert_eq!(
                u(&sv["connects"]),
                u(&sv["accepted"]) + u(&sv["refused"]) + u(&sv["connect_errors"]),
                "{name} {}",
                sv["name"]
            );
            assert!(u(&sv["refused_rate"]) <= u(&sv["refused"]), "{name}");
            let server = sv["name"].as_str().unwrap();
            let from_csv: u64 = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|c| c[1] == server)
                .map(|c| c[2].parse::<u64>().unwrap())
                .sum();
            assert_eq!(from_csv, u(&sv["connects"]), "{name} {server}");
        }
        // Each assertion appears in the printed verdicts.
        for a in t["assertions"].as_array().unwrap() {
            let line = format!(
                "{} {} {}",
                if a["passed"] == true { "PASS" } else { "FAIL" },
                a["kind"].as_str().unwrap(),
                a["subject"].as_str().unwrap()
            );
            assert!(stdout.contains(&line), "{name}: no `{line}` in\n{stdout}");
        }
        let passed = t["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["passed"] == true);
        assert_eq!(t["assertions_passed"], passed, "{name}");
        assert_eq!(code, if passed { 0 } else { 1 }, "{name}");
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let dir = TempDir::new().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    run_into("primary-replicas", &a, &["--seed", "7"]);
    run_into("primary-replicas", &b, &["--seed", "7"]);
    run_into("primary-replicas", &c, &["--seed", "8"]);
    for f in [
        "summary.json",
        "servers.csv",
        "services.csv",
        "timeseries.csv",
    ] {
        let x = std::fs::read(a.join(f)).unwrap();
        assert_eq!(x, std::fs::read(b.join(f)).unwrap(), "{f} differs");
    }
    assert_ne!(
        std::fs::read(a.join("summary.json")).unwrap(),
        std::fs::read(c.join("summary.json")).unwrap(),
        "another seed, the same summary"
    );
}

#[test]
fn scenario_excludes_policy_and_trace_and_bad_files_exit_3() {
    let path = scenario("single-service");
    let (code, _, stderr) = run(&[
        "--scenario",
        path.to_str().unwrap(),
        "--policy",
        "fixed-10",
        "--no-write",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--policy"), "{stderr}");

    let dir = TempDir::new().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\nsurprise = 1\n").unwrap();
    let (code, _, stderr) = run(&["--scenario", bad.to_str().unwrap(), "--no-write"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
}

#[test]
fn a_check_file_gates_on_a_scenario_files_assertions() {
    let dir = TempDir::new().unwrap();
    let path = scenario("rolling-restart");
    let gate = format!(
        r#"
[[scenario]]
scenario = {path:?}
seeds = [1]

[[scenario]]
name = "herd"
scenario = {path:?}
seeds = [1]
set = ["events.0.pause=0s"]

[[metric]]
name = "acquire_wait_ms.p99"
better = "lower"
"#,
        path = path.to_str().unwrap()
    );
    let check = |gate: &str, extra: &[&str]| {
        std::fs::write(dir.path().join("gate.toml"), gate).unwrap();
        let out = Command::cargo_bin("pooltune")
            .unwrap()
            .current_dir(dir.path())
            .args(["check", "gate.toml"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
        )
    };
    let (code, _) = check(&gate, &["--update"]);
    assert_eq!(code, 0);
    // The baseline is the scenario's whole summary.json.
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("gate/herd/rolling-restart/seed-1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(base["topology"]["assertions_passed"], false);

    // Metrics unchanged, but the herd's assertions fail: exit 1, named.
    let (code, stdout) = check(&gate, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("herd/rolling-restart assertion max_connects_per_s primary"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL herd/rolling-restart seed 1"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL rolling-restart seed 1"), "{stdout}");

    // Without the herd, the gate passes.
    let calm = gate
        .split("[[scenario]]\nname = \"herd\"")
        .next()
        .unwrap()
        .to_string()
        + "[[metric]]\nname = \"acquire_wait_ms.p99\"\nbetter = \"lower\"\n";
    let (code, stdout) = check(&calm, &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("assertions: 3 passed, 0 failed"),
        "{stdout}"
    );

    // A scenario file does not also take a policy.
    let both = calm.replacen("seeds = [1]", "seeds = [1]\npolicy = \"fixed-10\"", 1);
    let (code, _) = check(&both, &[]);
    assert_eq!(code, 2);
}

/// Element counts and texts of an SVG: what a chart shows, without
/// coordinates (as tests/integration/plots.rs does).
fn outline(svg: &str) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut texts = Vec::new();
    let mut lines = svg.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix('<') {
            let tag: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if !tag.is_empty() {
                *counts.entry(tag.clone()).or_default() += 1;
            }
            if tag == "text" {
                texts.push(lines.next().unwrap_or_default().trim().to_string());
            }
        }
    }
    let mut out = String::new();
    for (tag, n) in counts {
        out.push_str(&format!("<{tag}> x {n}\n"));
    }
    out.push_str("texts:\n");
    for t in texts {
        out.push_str(&format!("  {t}\n"));
    }
    out
}

#[test]
fn per_service_and_per_server_panels() {
    use pooltune::report::plot::{svg, FleetPanels, FleetSeries, Panels};
    let servers = "second,server,connects,accepted,refused,closes,backends\n\
        0,primary,25,25,0,0,25\n1,primary,200,100,100,0,125\n2,primary,0,0,0,200,0\n\
        0,replica-1,10,10,0,0,10\n1,replica-1,0,0,0,0,10\n";
    let services = "second,service,size,target,active,waiting,instances_up,completed,timed_out\n\
        0,api,25,25,3,0,1,100,0\n1,api,125,200,40,12,8,900,2\n";
    let servers = FleetSeries::from_reader(servers.as_bytes(), "servers.csv").unwrap();
    let services = FleetSeries::from_reader(services.as_bytes(), "services.csv").unwrap();
    let a = svg(&FleetPanels::new(&servers, Panels::Servers, "herd", 1)).unwrap();
    insta::assert_snapshot!("fleet_servers_outline", outline(&a));
    let b = svg(&FleetPanels::new(&services, Panels::Services, "herd", 1)).unwrap();
    insta::assert_snapshot!("fleet_services_outline", outline(&b));
}

/// `sim run --scenario` and `pooltune report DIR` on its directory draw
/// the same page, with the per-service and per-server panels.
#[test]
fn report_of_a_scenario_directory_has_the_fleet_panels() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("run");
    let path = scenario("primary-replicas");
    let (code, _, stderr) = run(&[
        "--scenario",
        path.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let from_run = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(from_run.contains("## Services and servers"), "{from_run}");
    let again = tmp.path().join("again");
    let out = Command::cargo_bin("pooltune")
        .unwrap()
        .args([
            "report",
            dir.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ])
        .args(["--print", "none"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(again.join("report.html")).unwrap();
    assert!(html.contains("<h2>Services and servers</h2>"));
    // Same input, same page (labels aside: the directory is named in it).
    let md = std::fs::read_to_string(again.join("report.md")).unwrap();
    assert_eq!(
        md.matches("## Services and servers").count(),
        from_run.matches("## Services and servers").count()
    );
    assert_eq!(md.lines().count(), from_run.lines().count());
}
