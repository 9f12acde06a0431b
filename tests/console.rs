//! The web console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, through WebDriver) against the roles as separate processes on real Kafka
//! and Cassandra. A person's day: sign in, create a Segment source, copy its URL, send an event
//! to it with curl, find it in the event log, add a mapping (first with a mistake the API
//! refuses, shown at its field), send again, see the action, replay, rehearse a body, rotate the
//! token, look a user up, read the audit log, at desktop and phone width; then the session
//! cookie's flags and CSRF check, through HTTP.
//!
//! Screenshots of every page: `target/console-screenshots/`. With `UPDATE_README_SCREENSHOTS=1`
//! two of them are also copied to `docs/screenshots/` for the README.

#[path = "console/webdriver.rs"]
mod webdriver;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tributary_tests::{http, Cluster, ADMIN_TOKEN};
use webdriver::{find_browser, Browser};

const ENTER: &str = "\u{E007}";

fn target_dir() -> PathBuf {
    // target/<profile>/tributary → target/
    tributary_tests::binary().parent().and_then(|p| p.parent()).unwrap().to_path_buf()
}

/// `curl` a JSON body to an ingest URL; returns the HTTP status.
fn curl(url: &str, body: &Value) -> u16 {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url, "-H", "content-type: application/json", "--data-binary"])
        .arg(body.to_string())
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

fn cookie_named<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with(&format!("{name}=")))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no Set-Cookie {name} in {headers:?}"))
}

fn value_of(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1
}

#[test]
fn the_console_in_a_browser() {
    // First: is there a browser at all? (Fails at once, naming the install command.)
    find_browser();
    let started = Instant::now();
    let shots = target_dir().join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let mut c = Cluster::new();
    c.start_all_roles();
    let admin = format!("http://127.0.0.1:{}", c.admin_port);
    let b = Browser::start(shots.clone(), 1280, 900);
    let long = Duration::from_secs(30);

    // ---- sign in: a wrong token is refused at the field; Enter submits
    b.goto(&format!("{admin}/console/"));
    let token = b.wait("#token");
    b.screenshot("sign-in");
    b.keys(&token, &format!("not-the-token{ENTER}"));
    let err = b.wait("#token-error");
    assert!(b.text(&err).contains("not the admin token"), "{}", b.text(&err));
    assert_eq!(b.attr(&token, "aria-invalid").as_deref(), Some("true"));
    b.clear(&token);
    b.keys(&token, &format!("{ADMIN_TOKEN}{ENTER}"));
    b.wait_text("h1", "Sources", long);
    b.wait_text(".empty", "No sources yet", long);
    b.screenshot("sources-empty");

    // ---- create a Segment source from its template
    b.keys(&b.wait("#new-source-key"), "segment-web");
    b.keys(&b.wait("#new-source-name"), "Web app");
    b.choose("#new-source-template", "Segment");
    b.press("Create source");
    b.wait_text("h1", "Web app", long);
    b.wait_text(".envs a[aria-current=page]", "development", long);

    // ---- copy its URL (read from the page)
    let url_input = b.wait("#ingest-url");
    let url = b.prop(&url_input, "value").as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("http://127.0.0.1:{}/integrations/receive/tok_", c.gateway_port)), "{url}");
    b.tap("#copy-url");
    let copied = b.wait_text("[role=status]", "Copied URL", long);
    assert!(copied.contains("clipboard"), "{copied}");
    b.wait_text(".paste", "Webhooks", long);
    b.screenshot("source-setup");

    // ---- send an event to it with curl; see it in the event log (follow mode)
    b.press("Events");
    b.wait_text("h1", "Events in development", long);
    b.wait_text(".empty", "No events here", long);
    let follow = b.wait("#follow");
    b.click(&follow);
    assert_eq!(b.attr(&follow, "aria-pressed").as_deref(), Some("true"));
    let order = json!({"type": "track", "event": "Order Completed", "userId": "user-1", "messageId": "m-1", "properties": {"total": 42.5, "order": {"id": "o-1"}}});
    let status = curl(&url, &order);
    assert!((200..300).contains(&status), "the gateway answered {status}");
    b.wait_text("tr[data-id]", "Order Completed", long);
    b.wait_text("tr[data-id]", "processed", long);
    b.screenshot("events");
    // the API's filters: nothing by that name
    b.keys(&b.wait("#filter-name"), "Order Cancelled");
    b.press("Apply filters");
    b.wait_text(".empty", "Nothing matches these filters", long);
    b.press("Clear");
    b.wait_text("tr[data-id]", "Order Completed", long);

    // ---- the event: raw, normalized, no action yet
    b.tap("tr[data-id] a.event-link");
    b.wait_text("h1", "Order Completed", long);
    b.wait_text(".empty-actions", "No action ran", long);
    b.wait_text("pre.json", "\"messageId\": \"m-1\"", long);
    b.screenshot("event-before-mapping");

    // ---- a mapping: the known event as a choice, the paths it offers; first a filter the API
    //      refuses (its message at the field), then a valid one
    b.press("Sources");
    b.tap("a.source-name");
    b.press("Mappings");
    b.wait_text(".empty", "No mappings yet", long);
    b.wait_text("table", "Order Completed", long);
    b.press("Add mapping");
    b.choose("#known-event", "track · Order Completed");
    b.wait_text("#offered-paths", "data.order.id", long);
    assert!(b.find("#event-paths option[value='data.total']").is_some(), "the parameters are offered the event's paths");
    assert_eq!(b.prop(&b.wait("#mapping-event-name"), "value"), json!("Order Completed"));
    b.keys(&b.wait("#param-workflow"), "order-completed");
    let filter = b.wait("#mapping-filter");
    b.keys(&filter, "data.total >");
    b.press("Save mapping");
    let msg = b.wait("#mapping-filter-error");
    let msg_text = b.text(&msg);
    assert!(!msg_text.is_empty(), "the 422 message is shown at the filter");
    assert_eq!(b.attr(&filter, "aria-invalid").as_deref(), Some("true"));
    assert!(b.find("#mapping-filter[aria-describedby~='mapping-filter-error']").is_some(), "the message is tied to its input");
    b.screenshot("mapping-invalid");
    b.clear(&filter);
    b.keys(&filter, "data.total > 10");
    b.press("Save mapping");
    b.wait_text("#flash", "Mapping saved", long);
    b.wait_text("tr[data-mapping]", "order-completed", long);
    // and identify calls update users: type and action typed and chosen, parameters by default
    b.press("Add mapping");
    b.keys(&b.wait("#mapping-event-type"), "identify");
    b.choose("#mapping-action", "identify_user");
    b.wait("#param-properties");
    assert!(b.find("#param-workflow").is_none(), "the parameters follow the action");
    b.press("Save mapping");
    b.wait_text("tr[data-mapping]", "identify_user", long);
    b.screenshot("mappings");

    // ---- send again; the action log shows the trigger
    let again = json!({"type": "track", "event": "Order Completed", "userId": "user-1", "messageId": "m-2", "properties": {"total": 99}});
    assert!((200..300).contains(&curl(&url, &again)));
    let identify = json!({"type": "identify", "userId": "user-1", "messageId": "m-3", "traits": {"email": "kim@example.org", "name": "Kim", "plan": "pro"}});
    assert!((200..300).contains(&curl(&url, &identify)));
    b.press("Actions");
    b.wait_text("h1", "Actions in development", long);
    b.wait_text("tr[data-id]", "order-completed", long);
    b.wait_text("tr[data-id]", "success", long);
    b.screenshot("actions");

    // ---- that event's action log, and a replay of it
    b.tap_xpath("//tr[td[contains(., 'order-completed')]]//a[normalize-space()='Open event']");
    b.wait_text("tr[data-action]", "success", long);
    b.tap("#replay");
    b.tap("dialog button[value=confirm]");
    b.wait_text("#replay-status", "queued with 1 action", long);
    b.wait_for("two action logs (the original and the replay)", long, |b| (b.find_all("tr[data-action]").len() == 2).then_some(()));
    b.screenshot("event-with-actions");

    // ---- rehearse a body: verification, normalized event, the action that would run
    b.press("Sources");
    b.tap("a.source-name");
    b.press("Rehearse");
    let body = b.wait("#rehearse-body");
    b.keys(&body, r#"{"type":"track","event":"Order Completed","userId":"user-2","properties":{"total":500}}"#);
    b.tap("#rehearse-form button[type=submit]");
    b.wait_text("#rehearse-result .planned-action", "trigger_workflow", long);
    b.wait_text("#rehearse-result .planned-action", "would run", long);
    let answer = b.text(&b.wait("#rehearse-status"));
    assert!(answer.starts_with('2'), "the gateway would accept it: {answer}");
    b.screenshot("rehearse");

    // ---- settings: a path the API refuses (shown at the field, in its folded section), then saved
    b.press("Setup");
    let retention = b.wait("#retention-days");
    b.clear(&retention);
    b.keys(&retention, "60");
    b.tap_xpath("//summary[starts-with(normalize-space(), 'Paths')]");
    b.keys(&b.wait("#path-array"), "records");
    b.press("Save settings");
    b.wait_text("#path-array-error", "body.", long);
    let array = b.wait("#path-array");
    b.clear(&array);
    b.press("Save settings");
    b.wait_text("#flash", "Settings saved", long);
    assert_eq!(b.prop(&b.wait("#retention-days"), "value"), json!("60"), "saved, and shown as saved");

    // ---- a verification secret: shown once, then only its hint; removed
    b.press("Add secret");
    let secret = b.wait_for("the new secret", long, |b| {
        b.find("#new-secret").and_then(|e| b.try_prop(&e, "value")).and_then(|v| v.as_str().map(str::to_string)).filter(|s| s.len() >= 32)
    });
    b.press("Mappings");
    b.press("Setup");
    b.wait_text("ul.secrets", &format!("{}…", &secret[..4]), long);
    assert!(b.find("#new-secret").is_none(), "shown once");
    let page = b.exec("return document.body.innerText", json!([]));
    assert!(!page.as_str().unwrap().contains(&secret), "the secret is never shown again");
    b.press("Remove");
    b.tap("dialog button[value=confirm]");
    b.wait_text("#flash", "Removed the secret", long);

    // ---- rotate the token: a new URL, the old one works for the grace period
    b.wait("#ingest-url");
    b.choose("#grace-seconds", "1 hour");
    b.press("Rotate token");
    b.tap("dialog button[value=confirm]");
    b.wait_text("#flash", "New ingest URL issued", long);
    let new_url = b.wait_for("a new ingest URL", long, |b| {
        b.find("#ingest-url").and_then(|e| b.try_prop(&e, "value")).and_then(|v| v.as_str().map(str::to_string)).filter(|u| *u != url && u.contains("/integrations/receive/tok_"))
    });
    b.wait_text("#previous-token", "keeps working until", long);
    assert!((200..300).contains(&curl(&url, &json!({"type": "track", "event": "Late", "userId": "user-1", "messageId": "m-4"}))), "the old URL works during the grace period");
    assert!((200..300).contains(&curl(&new_url, &json!({"type": "track", "event": "Fresh", "userId": "user-1", "messageId": "m-5"}))));
    b.screenshot("rotated");

    // ---- paging with the API's cursor (two a page), newest first
    // (once the event sent to the new URL is logged: it is the newest)
    b.wait_for("a first page of two events, newest first", long, |b| {
        b.goto(&format!("{admin}/console/#/audit"));
        b.goto(&format!("{admin}/console/#/events?limit=2"));
        std::thread::sleep(Duration::from_millis(300));
        let rows = b.find_all("tr[data-id] a.event-link");
        (rows.len() == 2 && b.text(&rows[0]) == "Fresh").then_some(())
    });
    b.press("Load more");
    b.wait_for("a second page", long, |b| (b.find_all("tr[data-id]").len() == 4).then_some(()));

    // ---- a user: fields and custom properties
    b.press("Users");
    let who = b.wait("#user-id");
    b.keys(&who, &format!("user-1{ENTER}"));
    b.wait_for("user-1's properties (identify processed)", long, |b| {
        if b.find("#user-properties").is_some() {
            return Some(());
        }
        // not there yet: look again
        if let Some(btn) = b.find("form[role=search] button[type=submit]") {
            b.click(&btn);
        }
        std::thread::sleep(Duration::from_millis(400));
        None
    });
    b.wait_text("#user-fields", "kim@example.org", long);
    b.wait_text("#user-properties", "pro", long);
    b.screenshot("user");

    // ---- the audit log: every change the console made
    b.press("Audit log");
    let audit = b.wait_text("table", "/v1/sources/segment-web/environments/development/rotate-token", long);
    assert!(audit.contains("/v1/sources") && audit.contains("/mappings"), "{audit}");
    b.screenshot("audit");

    // ---- phone width: nothing wider than the screen
    b.set_size(390, 844);
    b.press("Sources");
    b.wait("tr[data-source]");
    b.wait_text("tr[data-source]", "mappings active", long);
    let overflow = b.exec("return document.documentElement.scrollWidth - window.innerWidth", json!([]));
    assert!(overflow.as_i64().unwrap_or(99) <= 0, "the sources page is wider than a phone: {overflow}");
    b.screenshot("sources-phone");
    b.tap("a.source-name");
    b.wait("#ingest-url");
    let overflow = b.exec("return document.documentElement.scrollWidth - window.innerWidth", json!([]));
    assert!(overflow.as_i64().unwrap_or(99) <= 0, "the source page is wider than a phone: {overflow}");
    b.screenshot("source-phone");
    b.set_size(1280, 900);

    // ---- rename, then delete with a confirmation
    b.press("Sources");
    b.press("Rename");
    let name = b.wait("tr[data-source] input[data-field=name]");
    b.clear(&name);
    b.keys(&name, "Website");
    b.press("Save name");
    b.wait_text("#flash", "Renamed segment-web", long);
    b.wait_text("a.source-name", "Website", long);
    b.press("Delete");
    b.wait_text("dialog", "Delete “Website”?", long);
    b.tap("dialog button[value=cancel]");
    b.wait_for("the dialog to close", long, |b| b.find("dialog").is_none().then_some(()));
    assert!(b.find("tr[data-source]").is_some(), "cancel keeps the source");
    b.press("Delete");
    b.tap("dialog button[value=confirm]");
    b.wait_text("#flash", "Deleted the source segment-web", long);
    b.wait_text(".empty", "No sources yet", long);

    // ---- no script error, no refused load, in the whole session
    // (Answers the API gave on purpose, a 401 to a wrong token, a 422, a 404 for a user not
    // there yet, show up as failed loads of /v1/ or /console/session: not errors of the page.)
    let severe: Vec<Value> = b
        .console_log()
        .into_iter()
        .filter(|m| m["level"] == "SEVERE")
        .filter(|m| {
            let text = m["message"].as_str().unwrap_or_default();
            m["source"] != "network" || !(text.contains("/v1/") || text.contains("/console/session"))
        })
        .collect();
    assert!(severe.is_empty(), "the browser console has errors: {severe:#?}");

    // ---- sign out
    b.press("Sign out");
    b.wait_text("h1", "Sign in to Tributary", long);
    b.wait_text(".notice", "signed out", long);
    let after = b.exec("return fetch('/v1/sources').then(r => r.status)", json!([]));
    assert_eq!(after, json!(401), "signed out, the API refuses the browser");

    // ---- the session cookie, over HTTP: flags, CSRF on changes, TLS behind a proxy
    let port = c.admin_port;
    assert_eq!(http::request(port, "GET", "/console/session", &[], None).1["signed_in"], json!(false));
    let body = json!({"token": ADMIN_TOKEN}).to_string();
    let (s, v, headers) = http::try_request(port, "POST", "/console/session", &[], Some(body.as_bytes())).unwrap();
    assert_eq!(s, 200, "{v}");
    let session = cookie_named(&headers, "tributary_session");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict") && !session.contains("Secure"), "{session}");
    let csrf = cookie_named(&headers, "tributary_csrf");
    assert!(!csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"), "{csrf}");
    assert_eq!(value_of(csrf), v["csrf_token"].as_str().unwrap());
    let cookie = format!("tributary_session={}; tributary_csrf={}", value_of(session), value_of(csrf));
    assert_eq!(http::request(port, "GET", "/v1/sources", &[("cookie", &cookie)], None).0, 200, "a session reads");
    let new_source = json!({"key": "via-cookie", "template": "http"}).to_string();
    let (s, v) = http::request(port, "POST", "/v1/sources", &[("cookie", &cookie)], Some(new_source.as_bytes()));
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("csrf_failed")), "a change without the CSRF header is refused");
    let (s, _) = http::request(port, "POST", "/v1/sources", &[("cookie", &cookie), ("x-csrf-token", "forged")], Some(new_source.as_bytes()));
    assert_eq!(s, 403, "a forged CSRF token is refused");
    let (s, v) = http::request(port, "POST", "/v1/sources", &[("cookie", &cookie), ("x-csrf-token", value_of(csrf))], Some(new_source.as_bytes()));
    assert_eq!(s, 201, "with its CSRF token the session changes things: {v}");
    let (s, v) = http::request(port, "GET", "/v1/sources", &[("cookie", "tributary_session=v1.99999999999.bm9uY2U.c2ln")], None);
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("session_expired")), "a forged session is refused");
    let (_, _, headers) = http::try_request(port, "POST", "/console/session", &[("x-forwarded-proto", "https")], Some(body.as_bytes())).unwrap();
    assert!(cookie_named(&headers, "tributary_session").contains("; Secure"), "Secure behind a TLS proxy");
    let (s, _, headers) = http::try_request(port, "DELETE", "/console/session", &[("cookie", &cookie), ("x-csrf-token", value_of(csrf))], None).unwrap();
    assert_eq!(s, 204);
    assert!(cookie_named(&headers, "tributary_session").contains("Max-Age=0"), "sign-out clears the cookie");

    // ---- artifacts
    let pngs: Vec<_> = std::fs::read_dir(&shots).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "png")).collect();
    assert!(pngs.len() >= 14, "a screenshot of each page: {}", pngs.len());
    if std::env::var_os("UPDATE_README_SCREENSHOTS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        for (from, to) in [("source-setup", "console-source.png"), ("event-with-actions", "console-event.png")] {
            let src = pngs.iter().map(|e| e.path()).find(|p| p.to_string_lossy().contains(from)).unwrap();
            std::fs::copy(&src, docs.join(to)).unwrap();
        }
    }
    eprintln!("console test: {} screenshots in {} ({:.0?})", pngs.len(), shots.display(), started.elapsed());
}
