//! im-local's stream poller (`im_local::stream`) on a real DynamoDB Local stream: a
//! fresh table, items written with PutItem, DeleteItem and TransactWriteItems, and a
//! handler that fails some records on purpose. Needs DynamoDB Local
//! (`IM_TEST_DDB_ENDPOINT`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use im_e2e::stack::{ddb, env, unique};
use im_local::stream::lambda_record;
use im_local::stream::{
    compare_sequence_numbers, BoxError, DynamoDbBatchItemFailure, DynamoDbEventResponse,
    PollerSettings, StreamEvent, StreamHandler, StreamPoller,
};
use im_shared::config::DynamoBounds;
use im_shared::store::DynamoStore;
use im_sync::stream::{read_batch, BatchInfo, ReadError};
use serde_json::Value;

/// One record as the handler saw it.
#[derive(Clone, Debug)]
struct Seen {
    seq: String,
    pk: String,
    sk: String,
    event_name: String,
}

#[derive(Debug)]
struct Invocation {
    records: Vec<Seen>,
    /// What the handler reported failed (empty for a panic, which reports nothing).
    reported: Vec<String>,
    panicked: bool,
}

impl Invocation {
    /// The records the poller may checkpoint after this invocation: all before the
    /// lowest reported failure, none after a panic.
    fn taken(&self) -> Vec<&Seen> {
        if self.panicked {
            return Vec::new();
        }
        let lowest = self
            .reported
            .iter()
            .min_by(|a, b| compare_sequence_numbers(a, b));
        self.records
            .iter()
            .filter(|r| lowest.is_none_or(|l| compare_sequence_numbers(&r.seq, l).is_lt()))
            .collect()
    }
}

/// A handler that fails records on purpose, by the `rule` attribute of their new image:
/// `flaky` is reported failed twice and then taken, `poison` is always reported failed,
/// `panic` makes the handler panic whenever it is in the batch.
#[derive(Default)]
struct Recorder {
    invocations: Mutex<Vec<Invocation>>,
    flaky_failures: Mutex<HashMap<String, u32>>,
    /// When each record was first taken, for the lag.
    taken_at: Mutex<HashMap<(String, String), Instant>>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

impl Recorder {
    fn handle(&self, event: StreamEvent) -> DynamoDbEventResponse {
        // The Lambda event's JSON, as the function would read it.
        let records: Vec<Value> = event
            .records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        let rule = |json: &Value| text(&json["dynamodb"]["NewImage"]["rule"]["S"]);
        // A panic takes the whole batch down before any record is looked at.
        let panics = records.iter().any(|json| rule(json) == "panic");
        let mut seen = Vec::new();
        let mut reported = Vec::new();
        for json in &records {
            assert_eq!(json["eventSource"], "aws:dynamodb");
            assert_eq!(json["eventVersion"], "1.1");
            assert_eq!(json["awsRegion"], "us-east-1");
            assert_eq!(json["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
            let d = &json["dynamodb"];
            let record = Seen {
                seq: text(&d["SequenceNumber"]),
                pk: text(&d["Keys"]["pk"]["S"]),
                sk: text(&d["Keys"]["sk"]["S"]),
                event_name: text(&json["eventName"]),
            };
            match rule(json).as_str() {
                _ if panics => {}
                "poison" => reported.push(record.seq.clone()),
                "flaky" => {
                    let mut failures = self.flaky_failures.lock().unwrap();
                    let n = failures.entry(record.seq.clone()).or_default();
                    if *n < 2 {
                        *n += 1;
                        reported.push(record.seq.clone());
                    }
                }
                _ => {}
            }
            seen.push(record);
        }
        let invocation = Invocation {
            records: seen,
            reported: reported.clone(),
            panicked: panics,
        };
        {
            let mut taken_at = self.taken_at.lock().unwrap();
            for r in invocation.taken() {
                taken_at
                    .entry((r.pk.clone(), r.sk.clone()))
                    .or_insert_with(Instant::now);
            }
        }
        self.invocations.lock().unwrap().push(invocation);
        if panics {
            panic!("a record this handler cannot take (on purpose)");
        }
        let mut response = DynamoDbEventResponse::default();
        for seq in reported {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(seq);
            response.batch_item_failures.push(failure);
        }
        response
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

async fn put(client: &Client, table: &str, pk: &str, sk: &str, rule: Option<&str>) {
    let mut req = client
        .put_item()
        .table_name(table)
        .item("pk", s(pk))
        .item("sk", s(sk))
        .item("group_name", s("a group"));
    if let Some(rule) = rule {
        req = req.item("rule", s(rule));
    }
    req.send().await.unwrap();
}

fn put_item(table: &str, pk: &str, sk: &str) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .item("pk", s(pk))
                .item("sk", s(sk))
                .build()
                .unwrap(),
        )
        .build()
}

#[tokio::test]
async fn the_poller_hands_over_group_changes_in_order_retries_and_dead_letters() {
    let client = ddb().await;
    let table = unique("stream");
    assert!(im_admin::table::ensure_table(&client, &table)
        .await
        .unwrap());

    // Written before the poller starts: TRIM_HORIZON must find them.
    put(&client, &table, "GROUP#1", "META", None).await;
    put(&client, &table, "APP#x", "META", None).await; // filtered out
    put(&client, &table, "GROUP#1", "MEMBER#alice", None).await;
    put(&client, &table, "GROUP#1", "SYNC", None).await; // filtered out
    put(&client, &table, "GROUP#2", "META", Some("flaky")).await;
    put(&client, &table, "GROUP#2", "MEMBER#bob", None).await;
    put(&client, &table, "GROUP#3", "META", Some("poison")).await;
    client
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&table)
                        .key("pk", s("GROUP#1"))
                        .key("sk", s("META"))
                        .update_expression("SET group_name = :n")
                        .expression_attribute_values(":n", s("renamed"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(put_item(&table, "GROUP#1", "MEMBER#carol"))
        .send()
        .await
        .unwrap();
    put(&client, &table, "GROUP#4", "META", Some("panic")).await;
    put(&client, &table, "GROUP#4", "MEMBER#dave", None).await;
    client
        .delete_item()
        .table_name(&table)
        .key("pk", s("GROUP#1"))
        .key("sk", s("MEMBER#alice"))
        .send()
        .await
        .unwrap();

    let recorder = Arc::new(Recorder::default());
    let handler: Arc<dyn StreamHandler> = {
        let recorder = recorder.clone();
        Arc::new(move |event: StreamEvent| {
            let recorder = recorder.clone();
            async move { Ok::<_, BoxError>(recorder.handle(event)) }
        })
    };
    let dead_letters = std::env::temp_dir().join(format!("{}.jsonl", unique("dead-letters")));
    let mut settings = PollerSettings::new(&dead_letters);
    settings.batch_size = 10;
    settings.maximum_retry_attempts = 2;
    settings.retry_backoff = Duration::from_millis(10);
    settings.retry_backoff_max = Duration::from_millis(40);
    settings.idle_poll = Duration::from_millis(50);
    let sdk = DynamoStore::local_config(
        &env("IM_TEST_DDB_ENDPOINT"),
        &DynamoBounds::from_env().unwrap(),
    )
    .await;
    let poller = StreamPoller::start(&sdk, &table, settings, handler)
        .await
        .unwrap();
    assert_eq!(poller.dead_letter_path(), dead_letters.as_path());
    assert!(
        poller.wait_drained(Duration::from_secs(60)).await,
        "not drained: {:?}",
        poller.status()
    );

    // Written while it runs: picked up live, a transaction's two items included.
    let written = Instant::now();
    put(&client, &table, "GROUP#5", "META", None).await;
    put(&client, &table, "APP#y", "META", None).await; // filtered out
    client
        .transact_write_items()
        .transact_items(put_item(&table, "GROUP#5", "MEMBER#erin"))
        .transact_items(put_item(&table, "GROUP#5", "MEMBER#frank"))
        .send()
        .await
        .unwrap();
    assert!(
        poller.wait_drained(Duration::from_secs(30)).await,
        "not drained: {:?}",
        poller.status()
    );
    let lag = recorder.taken_at.lock().unwrap()[&("GROUP#5".to_owned(), "META".to_owned())]
        .duration_since(written);
    assert!(
        lag < Duration::from_secs(5),
        "write to handler took {lag:?}"
    );

    let invocations = std::mem::take(&mut *recorder.invocations.lock().unwrap());
    // The filter: no app item, no sync state.
    for r in invocations.iter().flat_map(|i| &i.records) {
        assert!(r.pk.starts_with("GROUP#"), "{r:?} passed the filter");
        assert!(
            r.sk == "META" || r.sk.starts_with("MEMBER#"),
            "{r:?} passed the filter"
        );
    }
    // What was taken, each record once, and per item in stream order.
    let mut per_item: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    let mut taken_seqs = Vec::new();
    for r in invocations.iter().flat_map(Invocation::taken) {
        per_item
            .entry((r.pk.clone(), r.sk.clone()))
            .or_default()
            .push((r.seq.clone(), r.event_name.clone()));
        taken_seqs.push(r.seq.clone());
    }
    let mut unique_seqs = taken_seqs.clone();
    unique_seqs.sort();
    unique_seqs.dedup();
    assert_eq!(
        unique_seqs.len(),
        taken_seqs.len(),
        "a record was taken twice"
    );
    for changes in per_item.values() {
        assert!(changes
            .windows(2)
            .all(|w| compare_sequence_numbers(&w[0].0, &w[1].0).is_lt()));
    }
    let names = |pk: &str, sk: &str| -> Vec<String> {
        per_item
            .get(&(pk.to_owned(), sk.to_owned()))
            .map(|c| c.iter().map(|(_, n)| n.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(names("GROUP#1", "META"), ["INSERT", "MODIFY"]);
    assert_eq!(names("GROUP#1", "MEMBER#alice"), ["INSERT", "REMOVE"]);
    assert_eq!(names("GROUP#1", "MEMBER#carol"), ["INSERT"]);
    assert_eq!(names("GROUP#2", "META"), ["INSERT"]); // after two failures
    assert_eq!(names("GROUP#2", "MEMBER#bob"), ["INSERT"]);
    assert_eq!(names("GROUP#4", "MEMBER#dave"), ["INSERT"]); // after the panicking one
    assert_eq!(names("GROUP#5", "META"), ["INSERT"]);
    assert_eq!(names("GROUP#5", "MEMBER#erin"), ["INSERT"]);
    assert_eq!(names("GROUP#5", "MEMBER#frank"), ["INSERT"]);
    assert!(names("GROUP#3", "META").is_empty());
    assert!(names("GROUP#4", "META").is_empty());
    assert_eq!(per_item.len(), 9);

    // Once taken, never handed over again (the records before a failed one included).
    for (i, earlier) in invocations.iter().enumerate() {
        for r in earlier.taken() {
            for later in &invocations[i + 1..] {
                assert!(
                    later.records.iter().all(|l| l.seq != r.seq),
                    "{r:?} was handed over again after it was taken"
                );
            }
        }
    }
    // The flaky record was retried as the first failure, twice.
    let flaky = &per_item[&("GROUP#2".to_owned(), "META".to_owned())][0].0;
    let lowest_failed = |i: &Invocation| {
        i.reported
            .iter()
            .min_by(|a, b| compare_sequence_numbers(a, b))
            .cloned()
    };
    assert_eq!(
        invocations
            .iter()
            .filter(|i| lowest_failed(i).as_ref() == Some(flaky))
            .count(),
        2
    );
    // The poison record failed first in 1 + MaximumRetryAttempts tries, then went.
    let poison_failures: Vec<&Invocation> = invocations
        .iter()
        .filter(|i| {
            lowest_failed(i).is_some_and(|l| {
                i.records
                    .iter()
                    .any(|r| r.seq == l && r.pk == "GROUP#3" && r.sk == "META")
            })
        })
        .collect();
    assert_eq!(poison_failures.len(), 3);
    // The panicking record was bisected down to a batch of its own before it went.
    assert!(invocations.iter().any(|i| i.panicked
        && i.records.len() == 1
        && i.records[0].pk == "GROUP#4"
        && i.records[0].sk == "META"));

    // The dead letters: the two records that always fail, in order, one line each.
    let lines: Vec<Value> = std::fs::read_to_string(&dead_letters)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let k = &l["record"]["dynamodb"]["Keys"];
            (text(&k["pk"]["S"]), text(&k["sk"]["S"]))
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("GROUP#3".to_owned(), "META".to_owned()),
            ("GROUP#4".to_owned(), "META".to_owned())
        ]
    );
    for (line, failure) in lines.iter().zip(["reported", "panic"]) {
        let info = &line["DDBStreamBatchInfo"];
        assert_eq!(info["streamArn"], poller.stream_arn());
        assert_eq!(info["batchSize"], 1);
        assert_eq!(info["startSequenceNumber"], info["endSequenceNumber"]);
        assert_eq!(
            info["startSequenceNumber"],
            line["record"]["dynamodb"]["SequenceNumber"]
        );
        assert!(text(&info["shardId"]).starts_with("shardId-"));
        assert_eq!(
            line["requestContext"]["condition"],
            "RetryAttemptsExhausted"
        );
        assert_eq!(line["record"]["eventSourceARN"], poller.stream_arn());
        assert_eq!(line["failure"], failure);
    }

    let status = poller.status();
    assert_eq!(status.records_dead_lettered, 2);
    assert_eq!(status.records_delivered, taken_seqs.len() as u64);
    assert_eq!(status.records_pending, 0);
    assert!(status.records_filtered_out >= 3, "{status:?}");
    poller.stop().await;
    std::fs::remove_file(dead_letters).unwrap();
}

/// What `im-admin sync redrive --queue-url` reads for a dead-letter message: a batch of
/// DynamoDB Local's real stream, from its start to its end sequence number, through the
/// mapping's filter, in the shape the poller hands over.
#[tokio::test]
async fn a_dead_lettered_batch_is_read_back_from_the_stream() {
    let client = ddb().await;
    let table = unique("stream-batch");
    assert!(im_admin::table::ensure_table(&client, &table)
        .await
        .unwrap());
    let written = [
        ("GROUP#1", "META"),
        ("APP#x", "META"),
        ("GROUP#1", "MEMBER#alice"),
        ("GROUP#1", "SYNC"),
        ("GROUP#2", "META"),
        ("GROUP#2", "MEMBER#bob"),
    ];
    for (pk, sk) in written {
        put(&client, &table, pk, sk, None).await;
    }
    let stream_arn = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .and_then(|t| t.latest_stream_arn)
        .unwrap();
    let sdk = DynamoStore::local_config(
        &env("IM_TEST_DDB_ENDPOINT"),
        &DynamoBounds::from_env().unwrap(),
    )
    .await;
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    // Every record of the table's one shard, as the poller reads it.
    let shards = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .and_then(|d| d.shards)
        .unwrap();
    assert_eq!(shards.len(), 1, "a new table's stream has one shard");
    let shard_id = shards[0].shard_id().unwrap().to_owned();
    let mut iterator = streams
        .get_shard_iterator()
        .stream_arn(&stream_arn)
        .shard_id(&shard_id)
        .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator;
    let mut all = Vec::new();
    while let Some(it) = iterator.take() {
        let out = streams
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .unwrap();
        let records = out.records.unwrap_or_default();
        if records.is_empty() {
            break;
        }
        all.extend(
            records
                .into_iter()
                .filter_map(|r| lambda_record(r, &stream_arn, "us-east-1")),
        );
        iterator = out.next_shard_iterator;
    }
    assert_eq!(all.len(), written.len());
    let seq = |i: usize| all[i].change.sequence_number.clone().unwrap();
    let batch = |start: usize, end: usize, shard: &str| BatchInfo {
        shard_id: shard.to_owned(),
        start_sequence_number: seq(start),
        end_sequence_number: seq(end),
        approximate_arrival_of_first_record: None,
        approximate_arrival_of_last_record: None,
        batch_size: (end - start + 1) as u64,
        stream_arn: stream_arn.clone(),
    };
    let keys = |records: &[im_local::stream::EventRecord]| -> Vec<(String, String)> {
        records
            .iter()
            .map(|r| {
                let key = |k| match r.change.keys.get(k) {
                    Some(serde_dynamo::AttributeValue::S(s)) => s.clone(),
                    other => panic!("{other:?}"),
                };
                (key("pk"), key("sk"))
            })
            .collect()
    };
    let pair = |pk: &str, sk: &str| (pk.to_owned(), sk.to_owned());

    let read = |start, end| {
        let (streams, info) = (&streams, batch(start, end, &shard_id));
        async move { read_batch(streams, &info, "us-east-1").await.unwrap() }
    };
    // The first four records: the app and the sync state are filtered out, the rest
    // come as the poller would have handed them (the whole record, not only its keys).
    let first = read(0, 3).await;
    assert_eq!(
        keys(&first),
        [pair("GROUP#1", "META"), pair("GROUP#1", "MEMBER#alice")]
    );
    assert_eq!(first, [all[0].clone(), all[2].clone()]);
    // One record in the middle; the last one, at the shard's open end.
    assert_eq!(keys(&read(4, 4).await), [pair("GROUP#2", "META")]);
    assert_eq!(keys(&read(5, 5).await), [pair("GROUP#2", "MEMBER#bob")]);
    // A shard that is not there (any more): gone, not an error to retry.
    let err = read_batch(
        &streams,
        &batch(0, 0, "shardId-00000001000000000000-00000000"),
        "us-east-1",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ReadError::Gone(_)), "{err:?}");
}
