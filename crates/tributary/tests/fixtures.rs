//! Every fixture under `tests/fixtures/<template>/` through `tributary normalize`, compared
//! line by line with its `.expected` file (exact text: key order and number lexemes count).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The clock for every fixture (items without a parseable time get it as ingestion time).
const NOW: &str = "now=1719826300";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn run(template: &str, body: &Path) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.args(["normalize", "--template", template, "--set", NOW]);
    let args = body.with_extension("args");
    if args.exists() {
        for line in std::fs::read_to_string(&args).unwrap().lines().filter(|l| !l.is_empty()) {
            cmd.arg(line);
        }
    }
    cmd.arg(body);
    let out = cmd.output().expect("run tributary normalize");
    assert!(out.status.success(), "{}: {}", body.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_fixture_normalizes_as_expected() {
    let mut count = 0;
    let mut failures = Vec::new();
    for template in ["segment", "rudderstack", "hightouch", "census", "http"] {
        let dir = fixtures_dir().join(template);
        let mut bodies: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        bodies.sort();
        assert!(!bodies.is_empty(), "no fixtures for {template}");
        for body in bodies {
            let expected = std::fs::read_to_string(body.with_extension("expected"))
                .unwrap_or_else(|_| panic!("{} has no .expected file", body.display()));
            let got = run(template, &body);
            count += 1;
            if got.trim_end() != expected.trim_end() {
                failures.push(format!("{}\n--- expected\n{}\n--- got\n{}", body.display(), expected.trim_end(), got.trim_end()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {count} fixtures differ:\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(count >= 25, "only {count} fixtures ran");
}

#[test]
fn every_segment_call_type_has_a_fixture() {
    let all: String = ["segment", "rudderstack"]
        .iter()
        .flat_map(|t| std::fs::read_dir(fixtures_dir().join(t)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "expected"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for t in ["track", "identify", "page", "screen", "group", "alias"] {
        assert!(all.contains(&format!("\"type\":\"{t}\"")), "no fixture normalizes to type {t}");
    }
}

#[test]
fn usage_errors_are_reported_not_panics() {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["normalize", "--template", "nope", "x.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown template"));
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["normalize", "--template", "http", "--set", "verification.scheme=bearer", "x.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("verification.secret"));
}

/// The status is the one the gateway answers, per-template rule included
/// (tributary_sources::answer): a verified body that cannot be used is a 4xx for the CDPs,
/// which drop it, and 200 with the refusal for senders that would retry a 4xx forever.
#[test]
fn unusable_content_answers_as_the_gateway_does_per_template() {
    let dir = std::env::temp_dir().join(format!("tributary-normalize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("not-json.json", b"{not json", "invalid_json"),
        ("not-an-envelope.json", br#""a string""#, "invalid_envelope"),
        ("one-refused-event.json", br#"{"type":"track","event":"E","userId":{"an":"object"}}"#, ""),
    ];
    for (name, body, code) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        for template in ["segment", "rudderstack", "hightouch", "census", "http"] {
            let out = run(template, &path);
            let last = out.trim_end().lines().last().unwrap().to_string();
            let cdp = matches!(template, "segment" | "rudderstack");
            if code.is_empty() {
                // a single event refused: only the CDPs get a 400; the others' status is 2xx
                let refused = out.contains("\"rejected\"");
                match (cdp, refused) {
                    (true, _) => assert_eq!(last, r#"{"status":400}"#, "{template} {name}: {out}"),
                    (false, true) => assert_eq!(last, r#"{"status":200}"#, "{template} {name}: {out}"),
                    (false, false) => assert!(last.starts_with(r#"{"status":20"#), "{template} {name}: {out}"),
                }
                continue;
            }
            let want = if cdp { r#"{"status":400}"# } else { r#"{"status":200}"# };
            assert_eq!(last, want, "{template} {name}: {out}");
            assert!(out.contains(&format!("\"code\":\"{code}\"")), "{template} {name}: the refusal is shown: {out}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
