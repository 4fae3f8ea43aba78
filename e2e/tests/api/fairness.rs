//! One app over its IM cloud's quota never holds another app's mirror (issue 22 item 8),
//! end to end: HTTP writes on the local server, its stream poller, the mirror, and a
//! stand-in per app that enforces the vendor's message quota (429 past it, for a
//! while). `scripts/test.sh` starts the local server with a 4 s pause for a 429 without
//! `Retry-After` (the vendor's minute, shortened) and a drain every 0.5 s.

use std::time::{Duration, Instant};

use im_shared::model::{ImCloud, OnDelete};

use crate::mirror::{dead_letters_of, eventually, mirrored, Mirrored};

/// The sync state of group `id` as its owner sees it.
async fn sync_status(m: &Mirrored, id: u64) -> (String, String) {
    let g = m.group("alice", id).await;
    (
        g["sync"]["status"].as_str().unwrap_or_default().to_owned(),
        g["sync"]["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn an_app_over_its_message_quota_never_holds_another_apps_records() {
    let limited = mirrored("fair-limited", true, OnDelete::Keep).await;
    let other = mirrored("fair-other", true, OnDelete::Keep).await;
    // Two messages a minute, then the door shuts (and stays shut while the minute's
    // count is full).
    limited
        .cloud
        .set_message_quota(Some((2, Duration::from_secs(60))));
    let mut groups = Vec::new();
    for i in 0..5 {
        groups.push(limited.create("alice", &format!("busy-{i}"), "bob").await);
    }
    // The app is over its quota: its groups are deferred, not retried on the shard.
    eventually("the limited app's later groups are deferred", || async {
        let mut deferred = 0;
        for id in &groups {
            let (status, error) = sync_status(&limited, *id).await;
            if status == "held" && error.starts_with("deferred:") {
                deferred += 1;
            }
        }
        deferred >= 3
    })
    .await;
    assert!(limited.cloud.messages_refused() > 0);
    // Meanwhile the other app's groups reach its cloud, each with its message, while
    // the limited app is still refused.
    let mut theirs = Vec::new();
    for i in 0..3 {
        let id = other
            .create("alice", &format!("calm-{i}"), "bob:carol")
            .await;
        theirs.push(id);
    }
    for id in &theirs {
        let c = other.wait_in_step(*id).await;
        eventually(&format!("group {id} is announced and in step"), || async {
            other.events(&c.id).len() == 1 && sync_status(&other, *id).await.0 == "ok"
        })
        .await;
    }
    let (status, _) = sync_status(&limited, groups[4]).await;
    assert_eq!(
        status, "held",
        "the limited app is still deferred once the other app is in step"
    );
    // The quota lifts: the drain applies every deferred record, in order, once.
    limited.cloud.set_message_quota(None);
    for id in &groups {
        let c = limited.wait_in_step(*id).await;
        eventually(&format!("group {id}'s message arrives"), || async {
            limited.events(&c.id).len() == 1
        })
        .await;
        eventually(&format!("group {id} is in step"), || async {
            sync_status(&limited, *id).await.0 == "ok"
        })
        .await;
        assert_eq!(limited.events(&c.id)[0]["event"], "created");
        assert_eq!(dead_letters_of(*id), "", "group {id} was dead-lettered");
    }
    // A later change goes straight through again, announced once.
    limited.rename("alice", groups[0], "renamed").await;
    let c = limited.wait_in_step(groups[0]).await;
    eventually("the rename's message arrives", || async {
        limited.events(&c.id).len() == 2
    })
    .await;
}

#[tokio::test]
async fn records_deferred_behind_a_429_keep_their_order() {
    let m = mirrored("fair-order", true, OnDelete::Keep).await;
    m.cloud
        .set_message_quota(Some((1, Duration::from_secs(60))));
    let id = m.create("alice", "v0", "bob").await;
    m.wait_in_step(id).await;
    // Over the quota now: every later change of the group waits in its deferral.
    for i in 1..=4 {
        m.rename("alice", id, &format!("v{i}")).await;
    }
    m.add("alice", id, "carol:dave").await;
    eventually("the group is deferred", || async {
        sync_status(&m, id).await.1.starts_with("deferred:")
    })
    .await;
    m.cloud.set_message_quota(None);
    eventually("every change reached the conversation", || async {
        let Some(c) = m.in_step(id).await else {
            return false;
        };
        c.name.as_deref() == Some("v4") && m.events(&c.id).len() == 6
    })
    .await;
    let c = m.in_step(id).await.unwrap();
    let texts: Vec<String> = m
        .cloud
        .messages(&c.id)
        .iter()
        .map(|m| m.message["_lctext"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        texts,
        [
            "alice created the group v0",
            "alice renamed the group to v1",
            "alice renamed the group to v2",
            "alice renamed the group to v3",
            "alice renamed the group to v4",
            "alice added carol, dave",
        ],
    );
}

#[tokio::test]
async fn the_mirror_sends_an_app_no_more_messages_than_its_setting() {
    let m = mirrored("fair-paced", true, OnDelete::Keep).await;
    // 60 a minute: one a second, never faster.
    let settings = ImCloud::new(
        m.cloud.url(),
        true,
        true,
        Some("imsystem".to_owned()),
        OnDelete::Keep,
    )
    .unwrap()
    .with_messages_per_minute(60)
    .unwrap();
    m.api
        .store
        .set_im_cloud(&m.api.app.app_id, &settings)
        .await
        .unwrap();
    let id = m.create("alice", "p0", "bob").await;
    for i in 1..=4 {
        m.rename("alice", id, &format!("p{i}")).await;
    }
    let started = Instant::now();
    eventually("five messages arrive", || async {
        m.in_step(id)
            .await
            .is_some_and(|c| m.cloud.messages(&c.id).len() == 5)
    })
    .await;
    let c = m.in_step(id).await.unwrap();
    let at: Vec<u64> = m
        .cloud
        .messages(&c.id)
        .iter()
        .map(|m| m.timestamp)
        .collect();
    for pair in at.windows(2) {
        // One a second at the pace; the stand-in's clock reads milliseconds.
        assert!(
            pair[1] - pair[0] >= 900,
            "messages {} ms apart: {at:?} (after {:?})",
            pair[1] - pair[0],
            started.elapsed()
        );
    }
    assert_eq!(m.cloud.messages_refused(), 0);
}
