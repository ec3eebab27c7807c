//! The `gatehouse` binary, driven as a user would.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("GATEHOUSE_CONFIG").output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_accepts_the_shipped_configuration_and_examples() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["routes.yaml", "examples/multi-target.yaml"] {
        let o = run(&["check", "--config", &format!("{root}/{file}")]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains(": OK ("));
    }
    // The TLS example, with the certificates `make-certs` would write.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(format!("{root}/examples/tls-sni.yaml"), dir.path().join("tls-sni.yaml")).unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ca = TestCa::new("example");
    ca.leaf(&["api.example.test"]).write(&certs, "api.example.test");
    ca.leaf(&["*.shop.example.test"]).write(&certs, "wildcard.shop.example.test");
    let o = run(&["check", "-c", dir.path().join("tls-sni.yaml").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn check_prints_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "listen:\n  gateway: { bind: \"localhost\" }\nupstreams:\n  svc: { targets: [\"http://127.0.0.1:9\"], timeout: 10 }\nroutes:\n  - { name: a, path: /a, upstream: scv, methds: [GET] }\n",
    )
    .unwrap();
    let o = run(&["check", "-c", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    let err = stderr(&o);
    let f = file.display();
    for want in [
        format!("{f}:2:20: listen.gateway.bind: expected an address such as `127.0.0.1:8080` or `[::]:8080`, found `localhost`"),
        format!("{f}:4:52: upstreams.svc.timeout: `10` has no unit: write e.g. `10s` or `10ms`"),
        format!("{f}:6:36: routes[0].upstream: unknown upstream `scv` (did you mean `svc`?)"),
        format!("{f}:6:41: routes[0].methds: unknown key `methds` (did you mean `methods`?)"),
        format!("4 problems in {f}"),
    ] {
        assert!(err.contains(&want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn a_missing_file_is_reported_plainly() {
    let o = run(&["check", "-c", "/nonexistent/routes.yaml"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("/nonexistent/routes.yaml: cannot read the file"), "{}", stderr(&o));
}

#[test]
fn serve_refuses_a_bad_config_with_64_and_a_busy_port_with_69() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "routes: [ { name: x } ]\n").unwrap();
    let o = run(&["serve", "-c", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("routes[0]: missing required key `path`"), "{}", stderr(&o));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let file = dir.path().join("busy.yaml");
    std::fs::write(
        &file,
        format!("listen: {{ gateway: {{ bind: \"127.0.0.1:{port}\" }}, admin: off, aws: off }}\n"),
    )
    .unwrap();
    let o = run(&["serve", "-c", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(69));
    assert!(
        stderr(&o).contains(&format!("listen.gateway.bind: cannot listen on 127.0.0.1:{port}")),
        "{}",
        stderr(&o)
    );
}

fn write_config(path: &Path, body: &str) {
    std::fs::write(path, format!("listen: {{ gateway: {{ bind: \"127.0.0.1:0\" }}, admin: off, aws: off }}\nlog: {{ format: json }}\nroutes:\n{body}")).unwrap();
}

/// `gatehouse serve -c FILE` with JSON logs on its stdout, read line by line.
struct Serving {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Serving {
    fn start(file: &Path) -> Self {
        let mut child = tokio::process::Command::new(BIN)
            .args(["serve", "-c", file.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next JSON log line.
    async fn next_log(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
    }

    /// The next access-log line.
    async fn next_access(&mut self) -> serde_json::Value {
        loop {
            let log = self.next_log().await;
            if log["target"] == "access" {
                return log;
            }
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_on_sighup_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    write_config(&file, "  - { name: v, path: /v, respond: { body: one } }\n");
    let mut serving = Serving::start(&file);
    let pid = serving.child.id().unwrap();

    // JSON log lines; the first names the bound address.
    let started = serving.next_log().await;
    let addr = started["addr"].as_str().expect("listening line with addr").to_owned();
    let http = client();
    let get = |path: &'static str| http.get(format!("http://{addr}{path}")).send();
    let r = http.get(format!("http://{addr}/v")).header("x-request-id", "cli-test-1").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "one");

    // One JSON access-log line per request, written when the response ends.
    let access = serving.next_access().await;
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/v");
    assert_eq!(access["status"], 200);
    assert_eq!(access["route"], "v");
    assert_eq!(access["bytes"], 3);
    assert_eq!(access["request_id"], "cli-test-1");
    assert_eq!(access["client"], "127.0.0.1");
    assert!(access["latency_ms"].as_f64().is_some());

    // A broken file is refused and the old routes keep serving.
    std::fs::write(&file, "routes: [ { name: v, path: nope } ]\n").unwrap();
    signal(pid, "-HUP");
    loop {
        let log = serving.next_log().await;
        if log["message"] == "reload refused; the previous configuration stays in force" {
            break;
        }
    }
    assert_eq!(get("/v").await.unwrap().text().await.unwrap(), "one");

    write_config(&file, "  - { name: v, path: /v, respond: { body: two } }\n");
    signal(pid, "-HUP");
    loop {
        if serving.next_log().await["message"] == "configuration reloaded" {
            break;
        }
    }
    assert_eq!(get("/v").await.unwrap().text().await.unwrap(), "two");

    signal(pid, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), serving.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
}

#[test]
fn help_describes_both_commands() {
    let o = run(&["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("serve") && out.contains("check") && out.contains("SIGHUP"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_upstream_target_that_answered() {
    let upstream = named("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(
        &file,
        format!(
            "listen: {{ gateway: {{ bind: \"127.0.0.1:0\" }}, admin: off, aws: off }}\nlog: {{ format: json }}\n\
             upstreams:\n  u: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: p, path: /p, upstream: u }}\n",
            upstream.url
        ),
    )
    .unwrap();
    let mut serving = Serving::start(&file);
    let addr = serving.next_log().await["addr"].as_str().expect("listening line with addr").to_owned();
    let r = client().get(format!("http://{addr}/p")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "b");
    let access = serving.next_access().await;
    assert_eq!(access["route"], "p");
    assert_eq!(access["status"], 200);
    assert_eq!(access["upstream"], upstream.url.as_str());
}

/// A port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_store_or_port_refuses_to_start_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, aws) = (free_port(), free_port());
    let yaml = |storage: &str| {
        format!(
            "listen: {{ gateway: {{ bind: \"127.0.0.1:{gateway}\" }}, admin: off, aws: {{ bind: \"127.0.0.1:{aws}\" }} }}\n\
             log: {{ format: json }}\nstorage: {{ path: {storage} }}\nqueues: {{ jobs: {{}} }}\n\
             routes:\n  - {{ name: v, path: /v, respond: {{ body: first }} }}\n"
        )
    };
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, yaml("./data")).unwrap();
    let mut first = Serving::start(&file);
    let started = first.next_log().await;
    assert_eq!(started["addr"], format!("127.0.0.1:{gateway}"), "{started}");

    // The same config: the store is locked.
    let o = run(&["serve", "-c", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    assert!(stderr(&o).contains("another gatehouse process is using the queue store"), "{}", stderr(&o));
    assert!(stderr(&o).contains("gatehouse.lock"), "{}", stderr(&o));

    // Another store, the same ports: the address is in use.
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, yaml("./other-data")).unwrap();
    let o = run(&["serve", "-c", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("cannot listen on 127.0.0.1:{gateway}: the address is already in use")),
        "{}",
        stderr(&o)
    );

    // The first one still has every connection.
    let http = client();
    for _ in 0..8 {
        let r = http.get(format!("http://127.0.0.1:{gateway}/v")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "first");
    }
    signal(first.child.id().unwrap(), "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), first.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "graceful exit: {status:?}");

    // Once it is gone, the store and the ports are free again.
    let mut again = Serving::start(&file);
    assert_eq!(again.next_log().await["addr"], format!("127.0.0.1:{gateway}"));
    signal(again.child.id().unwrap(), "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), again.child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}
