//! Stream records as the mirror reads them: which group, which item, what it was before
//! and after. Pure, so every rule about what a record means is unit-tested here.

use aws_lambda_events::event::dynamodb::EventRecord;
use im_shared::store::dynamo::layout::{self, MEMBER_PREFIX, META_SK, PK, SK};
use serde::{Deserialize, Serialize};

/// The group item's fields that the mirror follows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct GroupImage {
    pub app_id: String,
    #[serde(default)]
    pub group_name: String,
    #[serde(default)]
    pub owner: String,
    /// The group's admins (a string set; absent when there are none).
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub status: String,
    pub conversation_id: Option<String>,
    /// Set with `conversation_id` when the mirror linked a conversation it made.
    pub mirrored_conversation: Option<String>,
    pub last_change: Option<LastChange>,
}

impl GroupImage {
    pub fn live(&self) -> bool {
        self.status == "active"
    }
}

/// Whether the write from `old` to `new` is `im-admin import`'s own (a new `last_change`
/// whose event is `imported`), rather than a later write that left the import's
/// `last_change` in place.
pub fn imports(old: Option<&GroupImage>, new: Option<&GroupImage>) -> bool {
    let change = new.and_then(|g| g.last_change.as_ref());
    change.is_some_and(|c| c.event == "imported")
        && change != old.and_then(|g| g.last_change.as_ref())
}

/// The members the write from `old` to `new` brought in at once: the commit of a big
/// add, whose member items' inserts were skipped.
pub fn bulk_added<'g>(
    old: Option<&GroupImage>,
    new: Option<&'g GroupImage>,
) -> Option<&'g [String]> {
    let before = old.and_then(|g| g.last_change.as_ref());
    new.and_then(|g| g.last_change.as_ref())
        .filter(|c| Some(*c) != before && c.bulk && c.event == "members_added")
        .map(|c| c.members.as_slice())
}

/// What the write that made this image did (`last_change` on the group item).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LastChange {
    pub event: String,
    pub by: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub at: String,
    /// Set by the commit of a big add (`store::dynamo::bulk`): its members' inserts were
    /// skipped (they were not members yet), and `members` are added at this write.
    #[serde(default)]
    pub bulk: bool,
}

#[derive(Debug, Deserialize)]
struct MemberImage {
    client_id: String,
    gsi1pk: Option<String>,
    /// `import` on a member item `im-admin import` wrote.
    via: Option<String>,
    /// The token of the big add writing it: not a member until that add commits.
    pending: Option<String>,
}

/// Serialized when the mirror defers it (`store::dynamo::deferred`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub enum Change {
    /// The group item: absent before an insert, absent after a removal.
    Group {
        old: Option<Box<GroupImage>>,
        new: Option<Box<GroupImage>>,
    },
    /// A member item came (`joined`) or went.
    Member {
        client_id: String,
        joined: bool,
        app_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Record {
    /// The stream's sequence number: what a failure report names.
    pub seq: String,
    pub group_id: u64,
    pub change: Change,
}

impl Record {
    /// The app the group belongs to, as far as this record tells.
    pub fn app_id(&self) -> Option<&str> {
        match &self.change {
            Change::Group { old, new } => new.as_ref().or(old.as_ref()).map(|g| g.app_id.as_str()),
            Change::Member { app_id, .. } => app_id.as_deref(),
        }
    }
}

/// Why a record is not one the mirror acts on. Records of other items never get here on
/// AWS (the event source mapping filters them); a record that cannot be read is skipped
/// rather than retried forever, since no retry can make it readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NotAGroupItem,
    /// A member item changed in place (nothing the conversation follows).
    MemberModified,
    /// A member the import brought in: the conversation has them already.
    Imported,
    /// A member item of a big add that has not committed: the commit's record adds it.
    Pending,
    Unreadable(String),
}

/// Reads one stream record.
pub fn read(record: &EventRecord) -> Result<Record, Skip> {
    let keys = &record.change.keys;
    let key = |name: &str| -> Option<String> {
        let item: serde_json::Value = serde_dynamo::from_item(keys.clone()).ok()?;
        item.get(name)?.as_str().map(str::to_owned)
    };
    let (Some(pk), Some(sk)) = (key(PK), key(SK)) else {
        return Err(Skip::Unreadable("no pk/sk keys".into()));
    };
    let group_id = layout::group_of_pk(&pk).ok_or(Skip::NotAGroupItem)?;
    let seq = record
        .change
        .sequence_number
        .clone()
        .ok_or_else(|| Skip::Unreadable("no sequence number".into()))?;
    let unreadable = |what: &str, e: serde_dynamo::Error| Skip::Unreadable(format!("{what}: {e}"));
    let image = |item: &serde_dynamo::Item| -> Result<Option<Box<GroupImage>>, Skip> {
        if item.is_empty() {
            return Ok(None);
        }
        serde_dynamo::from_item(item.clone())
            .map(|g| Some(Box::new(g)))
            .map_err(|e| unreadable("group image", e))
    };
    let change = if sk == META_SK {
        Change::Group {
            old: image(&record.change.old_image)?,
            new: image(&record.change.new_image)?,
        }
    } else if sk.starts_with(MEMBER_PREFIX) {
        let joined = match record.event_name.as_str() {
            "INSERT" => true,
            "REMOVE" => false,
            "MODIFY" => return Err(Skip::MemberModified),
            other => return Err(Skip::Unreadable(format!("event {other}"))),
        };
        let item = if joined {
            &record.change.new_image
        } else {
            &record.change.old_image
        };
        let member: MemberImage =
            serde_dynamo::from_item(item.clone()).map_err(|e| unreadable("member image", e))?;
        if joined && member.via.as_deref() == Some(im_shared::store::dynamo::import::VIA_IMPORT) {
            return Err(Skip::Imported);
        }
        if joined && member.pending.is_some() {
            return Err(Skip::Pending);
        }
        let app_id = member
            .gsi1pk
            .as_deref()
            .and_then(layout::app_of_member_gsi1pk)
            .map(str::to_owned);
        Change::Member {
            client_id: member.client_id,
            joined,
            app_id,
        }
    } else {
        return Err(Skip::NotAGroupItem);
    };
    Ok(Record {
        seq,
        group_id,
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(
        name: &str,
        keys: serde_json::Value,
        old: serde_json::Value,
        new: serde_json::Value,
    ) -> EventRecord {
        serde_json::from_value(json!({
            "eventID": "1",
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_764_000_000,
                "Keys": keys,
                "OldImage": old,
                "NewImage": new,
                "SequenceNumber": "4200000000000000000001",
                "SizeBytes": 100,
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        }))
        .unwrap()
    }

    fn group_image(status: &str, name: &str, change: &str) -> serde_json::Value {
        json!({
            "pk": {"S": "GROUP#7"}, "sk": {"S": "META"}, "group_id": {"N": "7"},
            "app_id": {"S": "app"}, "group_name": {"S": name}, "owner": {"S": "alice"},
            "status": {"S": status}, "version": {"N": "3"},
            "admins": {"SS": ["bob"]},
            "last_change": {"M": {"event": {"S": change}, "by": {"S": "alice"},
                "members": {"L": [{"S": "bob"}]}, "at": {"S": "2026-11-26T00:00:00Z"}}}
        })
    }

    #[test]
    fn a_group_change_reads_both_images() {
        let keys = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "META"}});
        let r = read(&record(
            "MODIFY",
            keys,
            group_image("active", "old", "created"),
            group_image("deleting", "old", "dismissed"),
        ))
        .unwrap();
        assert_eq!(r.group_id, 7);
        assert_eq!(r.seq, "4200000000000000000001");
        assert_eq!(r.app_id(), Some("app"));
        let Change::Group {
            old: Some(old),
            new: Some(new),
        } = r.change
        else {
            panic!("not a group change")
        };
        assert!(old.live() && !new.live());
        let change = new.last_change.unwrap();
        assert_eq!(
            (change.event.as_str(), change.by.as_str()),
            ("dismissed", "alice")
        );
        assert_eq!(change.members, ["bob"]);
    }

    #[test]
    fn member_items_read_as_joins_and_departures_of_their_app() {
        let keys = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "MEMBER#bob"}});
        let image = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "MEMBER#bob"},
            "client_id": {"S": "bob"}, "group_id": {"N": "7"},
            "gsi1pk": {"S": "CLIENT#app-1:bob"}, "gsi1sk": {"S": "GROUP#00000000000000000007"}});
        let joined = read(&record("INSERT", keys.clone(), json!({}), image.clone())).unwrap();
        assert_eq!(
            joined.change,
            Change::Member {
                client_id: "bob".into(),
                joined: true,
                app_id: Some("app-1".into())
            }
        );
        let left = read(&record("REMOVE", keys.clone(), image.clone(), json!({}))).unwrap();
        assert!(matches!(left.change, Change::Member { joined: false, .. }));
        assert_eq!(
            read(&record("MODIFY", keys, image.clone(), image)),
            Err(Skip::MemberModified)
        );
    }

    #[test]
    fn a_big_adds_members_join_at_its_commit_not_at_their_inserts() {
        let keys = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "MEMBER#bob"}});
        let image = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "MEMBER#bob"},
            "client_id": {"S": "bob"}, "group_id": {"N": "7"}, "pending": {"S": "t1"},
            "gsi1pk": {"S": "CLIENT#app-1:bob"}, "gsi1sk": {"S": "GROUP#00000000000000000007"}});
        assert_eq!(
            read(&record("INSERT", keys.clone(), json!({}), image.clone())),
            Err(Skip::Pending)
        );
        // The mark's removal after the commit changes nothing the conversation follows;
        // a later removal is a removal like any.
        let mut unmarked = image.clone();
        unmarked.as_object_mut().unwrap().remove("pending");
        assert_eq!(
            read(&record("MODIFY", keys.clone(), image.clone(), unmarked)),
            Err(Skip::MemberModified)
        );
        let left = read(&record("REMOVE", keys, image, json!({}))).unwrap();
        assert!(matches!(left.change, Change::Member { joined: false, .. }));

        // The commit: a new `last_change` marked bulk names every member it added.
        let keys = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "META"}});
        let images = |old: serde_json::Value, new: serde_json::Value| {
            let r = read(&record("MODIFY", keys.clone(), old, new)).unwrap();
            let Change::Group { old, new } = r.change else {
                panic!()
            };
            (old.unwrap(), new.unwrap())
        };
        let before = group_image("active", "T", "created");
        let mut commit = group_image("active", "T", "members_added");
        commit["last_change"]["M"]["bulk"] = json!({"BOOL": true});
        commit["last_change"]["M"]["members"] = json!({"L": [{"S": "bob"}, {"S": "cy"}]});
        let (old, new) = images(before.clone(), commit.clone());
        assert_eq!(
            bulk_added(Some(&old), Some(&new)),
            Some(&["bob".to_owned(), "cy".to_owned()][..])
        );
        // A later write that leaves that `last_change` in place adds nobody again, and
        // a small add's `last_change` (members added by their own inserts) is not bulk.
        let (_, committed) = images(commit.clone(), commit);
        assert_eq!(bulk_added(Some(&committed), Some(&committed)), None);
        let (old, new) = images(before, group_image("active", "T", "members_added"));
        assert_eq!(bulk_added(Some(&old), Some(&new)), None);
    }

    #[test]
    fn what_the_import_wrote_is_the_conversations_already() {
        let keys = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "MEMBER#bob"}});
        let image = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "MEMBER#bob"},
            "client_id": {"S": "bob"}, "group_id": {"N": "7"}, "via": {"S": "import"},
            "gsi1pk": {"S": "CLIENT#app-1:bob"}, "gsi1sk": {"S": "GROUP#00000000000000000007"}});
        assert_eq!(
            read(&record("INSERT", keys.clone(), json!({}), image.clone())),
            Err(Skip::Imported)
        );
        // Its removal later (a kick) is a removal like any.
        let left = read(&record("REMOVE", keys, image, json!({}))).unwrap();
        assert!(matches!(left.change, Change::Member { joined: false, .. }));

        let keys = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "META"}});
        let group = |status: &str, change: &str| {
            let r = read(&record(
                "INSERT",
                keys.clone(),
                json!({}),
                group_image(status, "T", change),
            ))
            .unwrap();
            let Change::Group { new, .. } = r.change else {
                panic!()
            };
            new.unwrap()
        };
        let imported = group("importing", "imported");
        let mut later = imported.clone();
        later.status = "active".into();
        assert!(imports(None, Some(&imported)));
        // A later write that left the import's `last_change` as it was is not the import's.
        assert!(!imports(Some(&imported), Some(&later)));
        let mut again = later.clone();
        again.last_change.as_mut().unwrap().at = "2026-11-27T00:00:00Z".into();
        assert!(imports(Some(&imported), Some(&again)));
        let renamed = group("active", "renamed");
        assert!(!imports(Some(&imported), Some(&renamed)));
        assert!(!imports(Some(&renamed), None));
    }

    #[test]
    fn other_items_are_skipped() {
        for (pk, sk) in [
            ("APP", "app"),
            ("GROUP#7", "SYNC"),
            ("CONV#a:b", "CONV"),
            ("GROUP#x", "META"),
        ] {
            let keys = json!({"pk": {"S": pk}, "sk": {"S": sk}});
            assert_eq!(
                read(&record("INSERT", keys, json!({}), json!({}))),
                Err(Skip::NotAGroupItem),
                "{pk} {sk}"
            );
        }
    }

    #[test]
    fn a_broken_image_is_unreadable_not_a_panic() {
        let keys = json!({"pk": {"S": "GROUP#7"}, "sk": {"S": "META"}});
        let broken = json!({"app_id": {"N": "12"}});
        assert!(matches!(
            read(&record("INSERT", keys, json!({}), broken)),
            Err(Skip::Unreadable(_))
        ));
    }
}
