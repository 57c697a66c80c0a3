//! The dashboard page in a real browser: `tributary dev --demo` saves the
//! demo's dashboard and prints its address; headless Chromium (Debian's,
//! driven by selenium from `tests/browser/dashboard.py`) opens it with the
//! printed key, and the trend's legend and points, the funnel's bars and
//! the retention grid show the numbers the API returns for that dashboard. A new insight saved
//! through the page's form is drawn, the page fits a phone's width, and
//! the console shows no error (a script or style the page's policy refused
//! would be one). Screenshots go to `target/browser/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tributary_tests::process::{Dev, Guarded, drain, lines_until};
use tributary_tests::{Stack, repo_root};

/// What the page should show for a trend line: as the page labels it.
fn label(line: &Value) -> String {
    if line["other"] == true {
        return "other".to_owned();
    }
    match &line["breakdown_value"] {
        Value::Null => format!(
            "{} ({})",
            line["event"].as_str().unwrap(),
            line["math"].as_str().unwrap()
        ),
        v => v.as_str().map_or_else(|| v.to_string(), str::to_owned),
    }
}

fn total(line: &Value) -> f64 {
    line["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum()
}

#[tokio::test]
async fn the_demo_dashboard_shows_the_apis_numbers_in_a_browser() {
    let stack = Stack::require();
    let python = stack.python.clone().expect("TRIBUTARY_PYTHON");
    let mut dev = Dev::new(Path::new(env!("CARGO_BIN_EXE_tributary")), &stack);
    dev.command
        .args(["--demo", "--demo-users", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guarded(dev.command.spawn().unwrap());
    let stderr = drain(child.0.stderr.take().unwrap());
    let lines = match lines_until(
        child.0.stdout.take().unwrap(),
        |l| l.starts_with("demo: done"),
        Duration::from_secs(150),
    ) {
        Ok(lines) => lines,
        Err(lines) => {
            child.terminate(Duration::from_secs(10));
            panic!(
                "the demo did not finish; stdout:\n{}\nstderr:\n{}",
                lines.join("\n"),
                stderr
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default()
            );
        }
    };
    // "demo: dashboard: open {page}/#dashboard={id} and paste the key {key}"
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("demo: dashboard: open "))
        .unwrap_or_else(|| panic!("the demo prints its dashboard: {lines:#?}"));
    let (address, key) = line.split_once(" and paste the key ").unwrap();
    let (base, id) = address.split_once("/#dashboard=").unwrap();
    assert_eq!(base, format!("http://127.0.0.1:{}", dev.query_port));
    let id: u64 = id.parse().unwrap();

    // What the API says the dashboard holds.
    let results: Value = reqwest::Client::new()
        .get(format!("{base}/api/dashboards/{id}/results"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tiles = results["results"].as_array().unwrap();
    let kind = |t: &Value| t["insight"]["kind"].as_str().unwrap().to_owned();
    let trend_tile = tiles.iter().position(|t| kind(t) == "trend").unwrap();
    let funnel_tile = tiles.iter().position(|t| kind(t) == "funnel").unwrap();
    let retention_tile = tiles.iter().position(|t| kind(t) == "retention").unwrap();
    // Each cohort's size and users back per period, as the grid shows them.
    let cohorts: Vec<Value> = tiles[retention_tile]["result"]["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!({"size": c["size"], "values": c["values"]}))
        .collect();
    assert!(
        cohorts.iter().any(|c| c["values"][1].as_u64() > Some(0)),
        "somebody comes back: {cohorts:?}"
    );
    let trend = &tiles[trend_tile]["result"];
    let lines_of_trend = trend["results"].as_array().unwrap();
    let totals: serde_json::Map<String, Value> = lines_of_trend
        .iter()
        .map(|l| (label(l), json!(total(l))))
        .collect();
    let points: usize = lines_of_trend
        .iter()
        .map(|l| l["data"].as_array().unwrap().len())
        .sum();
    let counts: Vec<u64> = tiles[funnel_tile]["result"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_u64().unwrap())
        .collect();
    assert!(counts[2] > 0, "a funnel worth drawing: {counts:?}");
    // The insight the page saves: the first line's event, from the demo's
    // first day on, counted as that line counts it.
    let first = &lines_of_trend[0];
    let new_from = trend["buckets"][0].as_str().unwrap()[..10].to_owned();

    let screenshots = repo_root().join("target/browser");
    std::fs::create_dir_all(&screenshots).unwrap();
    let spec = json!({
        "base": base,
        "key": key,
        "dashboard": id,
        "name": results["dashboard"]["name"],
        "tiles": tiles.len(),
        "trend": {"tile": trend_tile, "totals": totals, "points": points},
        "funnel": {"tile": funnel_tile, "counts": counts},
        "retention": {"tile": retention_tile, "cohorts": cohorts},
        "new_event": first["event"],
        "new_from": new_from,
        "new_total": total(first),
        "screenshots": screenshots,
    });
    let mut browser = Command::new(&python)
        .arg(repo_root().join("tests/browser/dashboard.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    browser
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = browser.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}");
    assert!(
        out.status.success(),
        "the page failed a check:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in ["desktop.png", "phone.png"] {
        let size = std::fs::metadata(screenshots.join(shot)).unwrap().len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }

    let status = child.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "dev exited with {status:?}"
    );
}
