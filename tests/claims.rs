//! Dedup claims read and written in groups against a real Cassandra: every key's holder comes
//! back as written, whatever group it fell in; groups never mix environments or sources and
//! stay within their bound; a claim the database refuses does not take its neighbours' along.

use std::collections::HashMap;
use tributary_store::claims::{READ_GROUP, WRITE_GROUP};
use tributary_store::{ClaimKey, NewClaim, Store, StoreError};
use tributary_tests::{cassandra, store_at, unique};

async fn store(ks: &str) -> Store {
    store_at(&cassandra(), ks).await
}

fn key(env: &str, src: &str, i: usize) -> ClaimKey {
    (env.into(), src.into(), format!("msg-{i}"))
}

#[tokio::test]
async fn grouped_claims_read_back_exactly_what_was_written() {
    let ks = unique("claims");
    let store = store(&ks).await;
    // 300 keys over two environments and two sources; every third written in groups, every
    // fifth alone (the path a record takes outside a batch); the rest nobody holds.
    let mut all: Vec<ClaimKey> = Vec::new();
    for (env, src) in [("development", "a"), ("development", "b"), ("production", "a")] {
        all.extend((0..100).map(|i| key(env, src, i)));
    }
    let mut expected: HashMap<ClaimKey, Option<String>> = all.iter().map(|k| (k.clone(), None)).collect();
    let mut grouped: Vec<NewClaim> = Vec::new();
    for (i, k) in all.iter().enumerate() {
        if i % 3 == 0 {
            grouped.push((k.clone(), format!("evt-{i}"), 3600));
            expected.insert(k.clone(), Some(format!("evt-{i}")));
        } else if i % 5 == 0 {
            store.write_claim(&k.0, &k.1, &k.2, &format!("solo-{i}"), 3600).await.unwrap();
            expected.insert(k.clone(), Some(format!("solo-{i}")));
        }
    }
    assert_eq!(grouped.len(), 100);
    let failed = store.write_claims(grouped, 8).await;
    assert!(failed.is_empty(), "{failed:?}");

    let groups = store.claim_read_groups(all.clone());
    assert!(groups.len() >= 3 * 100usize.div_ceil(READ_GROUP), "{} groups", groups.len());
    for g in &groups {
        assert!(!g.is_empty() && g.len() <= READ_GROUP);
        assert!(g.iter().all(|k| k.0 == g[0].0 && k.1 == g[0].1), "a group mixes environments or sources");
    }
    assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), all.len());
    let mut read: HashMap<ClaimKey, Option<String>> = HashMap::new();
    for g in &groups {
        read.extend(store.claim_owners(g).await.unwrap());
    }
    assert_eq!(read, expected);

    // A read naming two sources is refused, not answered for one of them.
    let mixed = vec![key("development", "a", 0), key("development", "b", 0)];
    assert!(matches!(store.claim_owners(&mixed).await, Err(StoreError::Rejected(_))));
    store.drop_keyspace().await.unwrap();
}

#[tokio::test]
async fn a_refused_claim_does_not_take_its_group_along() {
    let ks = unique("claims_refused");
    let store = store(&ks).await;
    // A claim the database refuses (a TTL beyond Cassandra's 20-year maximum, 630,720,000 s)
    // travels in one batch with the others: every key lives on the same replica (one node
    // here), and a normal key has a token, so it groups with them. The batch is refused as a
    // whole and written again claim by claim.
    let mut claims: Vec<NewClaim> = (0..WRITE_GROUP - 1).map(|i| (key("development", "a", i), format!("evt-{i}"), 3600)).collect();
    let refused: ClaimKey = ("development".into(), "a".into(), "refused".into());
    claims.insert(3, (refused.clone(), "evt-refused".into(), 700_000_000));
    assert_eq!(store.claim_read_groups(claims.iter().map(|c| c.0.clone()).collect()).len(), 1, "one replica, one group");
    let failed = store.write_claims(claims, 4).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0 .0, refused);
    assert!(!failed[0].1.is_transient(), "{:?}", failed[0].1);
    let keys: Vec<ClaimKey> = (0..WRITE_GROUP - 1).map(|i| key("development", "a", i)).collect();
    let owners = store.claim_owners(&keys).await.unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(owners[k], Some(format!("evt-{i}")), "{k:?}");
    }
    assert_eq!(store.claim_owner(&refused.0, &refused.1, &refused.2).await.unwrap(), None);
    store.drop_keyspace().await.unwrap();
}
