//! The log timelines against a real Cassandra: entries written across a day boundary, several
//! minute slices and two bucket counts (a configuration change midway) list newest first,
//! paged with a cursor, with and without filters, exactly as the sorted list of what was
//! written; and no timeline partition holds more than its slice's share.

use serde_json::json;
use std::collections::HashMap;
use tributary_model::{ActionLog, EventLog};
use tributary_store::paging::{Page, Window};
use tributary_store::Store;
use tributary_tests::{cassandra, store_at, unique};

const DAY: i64 = 86_400_000;

async fn store(ks: &str, buckets: i32) -> Store {
    store_at(&cassandra(), ks).await.with_timeline_buckets(buckets)
}

fn event(i: usize, at: i64) -> EventLog {
    EventLog {
        event_id: format!("evt-{i:04}"),
        request_id: "r".into(),
        source: if i.is_multiple_of(3) { "a".into() } else { "b".into() },
        environment: "development".into(),
        event_type: Some(if i.is_multiple_of(2) { "track".into() } else { "identify".into() }),
        name: Some("Order Completed".into()),
        user_id: Some(format!("u{}", i % 7)),
        status: "processed".into(),
        error_code: None,
        error_message: None,
        verification: "unverified".into(),
        raw: json!({"i": i}),
        normalized: None,
        duplicate_of: None,
        received_at: at,
        inserted_at: at,
        ttl: None,
    }
}

fn action(i: usize, at: i64) -> ActionLog {
    ActionLog {
        action_id: format!("act-{i:04}"),
        event_id: format!("evt-{i:04}"),
        mapping_id: "m".into(),
        source: if i.is_multiple_of(3) { "a".into() } else { "b".into() },
        environment: "development".into(),
        action_type: "trigger_workflow".into(),
        status: if i.is_multiple_of(4) { "failed".into() } else { "success".into() },
        parameters: json!({}),
        payload: None,
        result: None,
        error: None,
        attempts: 1,
        replay_of: None,
        inserted_at: at,
        updated_at: at,
        ttl: None,
    }
}

/// Every page of a listing, following cursors.
async fn all_pages<T: Clone, F, Fut>(mut page: F) -> Vec<T>
where
    F: FnMut(Option<(i64, String)>) -> Fut,
    Fut: std::future::Future<Output = Page<T>>,
{
    let (mut out, mut after) = (Vec::new(), None);
    for _ in 0..1000 {
        let p = page(after.clone()).await;
        out.extend(p.items.iter().cloned());
        match p.next_cursor {
            Some(c) => after = Window::parse_cursor(&c),
            None => return out,
        }
    }
    panic!("paging did not end");
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_merge_slices_and_buckets_across_days_with_cursors_and_filters() {
    let ks = unique("tl");
    let first = store(&ks, 3).await;
    // Around last midnight (UTC): 8 minutes, so two days and 9 slices; some entries share a
    // millisecond (the id breaks the tie).
    let midnight = chrono_now() / DAY * DAY;
    let times: Vec<i64> = (0..400).map(|i| midnight - 4 * 60_000 + (i as i64 / 2) * 2_400).collect();
    for (i, at) in times.iter().enumerate() {
        // the bucket count changes midway, as a reconfigured fleet would
        let s = if i < 200 { &first } else { &store(&ks, 5).await };
        s.write_event_log(&event(i, *at), 3600).await.unwrap();
        if i.is_multiple_of(2) {
            s.write_action_log(&action(i, *at), Some("wf"), 3600).await.unwrap();
        }
    }
    let reader = store(&ks, 8).await;
    let (since, until) = (midnight - DAY, midnight + DAY);

    // expected: what was written, newest first, ties by id
    let mut expected: Vec<(i64, String, String, String)> = times
        .iter()
        .enumerate()
        .map(|(i, at)| (*at, format!("evt-{i:04}"), event(i, 0).source, event(i, 0).user_id.unwrap()))
        .collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));

    for (limit, source, user) in [(7usize, None, None), (50, Some("a"), None), (3, Some("b"), Some("u2")), (500, None, None)] {
        let got = all_pages(|after| {
            let w = Window { until, since, after, limit };
            let r = &reader;
            async move {
                r.page_events("development", &w, |e| {
                    source.is_none_or(|s| e.source.as_deref() == Some(s)) && user.is_none_or(|u| e.user_id.as_deref() == Some(u))
                })
                .await
                .unwrap()
            }
        })
        .await;
        let want: Vec<(i64, String)> = expected
            .iter()
            .filter(|e| source.is_none_or(|s| e.2 == s) && user.is_none_or(|u| e.3 == u))
            .map(|e| (e.0, e.1.clone()))
            .collect();
        let got: Vec<(i64, String)> = got.into_iter().map(|e| (e.received_at, e.event_id)).collect();
        assert_eq!(got, want, "limit {limit}, source {source:?}, user {user:?}");
    }

    // a window inside one day, across slices: only what is in it
    let (w_since, w_until) = (midnight + 30_000, midnight + 150_000);
    let got = all_pages(|after| {
        let w = Window { until: w_until, since: w_since, after, limit: 9 };
        let r = &reader;
        async move { r.page_events("development", &w, |_| true).await.unwrap() }
    })
    .await;
    let want: Vec<String> = expected.iter().filter(|e| e.0 >= w_since && e.0 <= w_until).map(|e| e.1.clone()).collect();
    assert_eq!(got.into_iter().map(|e| e.event_id).collect::<Vec<_>>(), want);

    // actions: the same order and filters
    let got = all_pages(|after| {
        let w = Window { until, since, after, limit: 11 };
        let r = &reader;
        async move { r.page_actions("development", &w, |a| a.status.as_deref() == Some("failed")).await.unwrap() }
    })
    .await;
    let mut want: Vec<(i64, String)> =
        times.iter().enumerate().filter(|(i, _)| i.is_multiple_of(2) && i.is_multiple_of(4)).map(|(i, at)| (*at, format!("act-{i:04}"))).collect();
    want.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    assert_eq!(got.into_iter().map(|a| (a.inserted_at, a.action_id)).collect::<Vec<_>>(), want);

    // No partition holds more than its slice's share: each (slice, bucket) partition has at most
    // the slice's entries, and each slice's entries are spread over its buckets.
    let spread = reader.timeline_partition_sizes("development", since, until).await.unwrap();
    let slices: HashMap<i64, usize> = times.iter().fold(HashMap::new(), |mut m, t| {
        *m.entry(t.div_euclid(60_000)).or_default() += 1;
        m
    });
    assert!(spread.len() >= 8 * 3, "entries spread over slices and buckets: {spread:?}");
    for ((slice, _bucket), rows) in &spread {
        assert!(*rows < slices[slice], "a partition holds {rows} of its slice's {} entries", slices[slice]);
    }
    assert_eq!(spread.values().sum::<usize>(), times.len());
    reader.drop_keyspace().await.unwrap();
}

/// Many events logged at once, as the action-log writer does under load: every row and every
/// timeline entry is stored, and the entries waiting for one timeline partition went together
/// (fewer requests than statements), the two rows of an event in one request.
#[tokio::test(flavor = "multi_thread")]
async fn logs_written_at_once_are_all_stored_and_gathered_per_partition() {
    use futures::StreamExt;
    use tributary_store::counted::{REQUESTS, STATEMENTS};
    let ks = unique("tlc");
    let s = store(&ks, 4).await;
    let now = chrono_now();
    let n = 600usize;
    let (stmts0, reqs0) = (STATEMENTS.get(), REQUESTS.get());
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let s = &s;
            async move {
                let (e, a) = (tributary_model::EventLogRecord::from(&event(i, now - i as i64)), action(i, now - i as i64));
                s.write_logs(Some(&e), &[(&a, Some("wf"))], 3600).await
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    assert!(results.iter().all(|r| r.is_ok()), "{:?}", results.iter().find(|r| r.is_err()));
    let (stmts, reqs) = (STATEMENTS.get() - stmts0, REQUESTS.get() - reqs0);
    // 4 statements per event (+ the slice index); the other test of this file may run beside
    // this one, so the bound is loose: gathering has to show, not a particular ratio.
    assert!(stmts >= 4 * n as u64, "{stmts} statements");
    assert!((reqs as f64) < 0.75 * stmts as f64, "{reqs} requests for {stmts} statements: nothing was gathered");

    let w = Window { until: now + 60_000, since: now - 3_600_000, after: None, limit: 1000 };
    let events = s.page_events("development", &w, |_| true).await.unwrap().items;
    let actions = s.page_actions("development", &w, |_| true).await.unwrap().items;
    assert_eq!(events.len(), n);
    assert_eq!(actions.len(), n);
    for i in [0, n / 2, n - 1] {
        let e = s.get_event_log(&format!("evt-{i:04}")).await.unwrap().expect("event row");
        assert_eq!(e.raw, json!({"i": i}));
        let a = s.action_logs_for_event(&format!("evt-{i:04}")).await.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].action_id, format!("act-{i:04}"));
    }
    s.drop_keyspace().await.unwrap();
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
