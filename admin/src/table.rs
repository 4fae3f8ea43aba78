//! Creates the service's table from the `Table` resource of `template.yaml`, the one
//! definition of it, so that DynamoDB Local and AWS can never disagree on keys or
//! indexes. The template is compiled in, so the command works from any directory.

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde_yaml_ng::Value;

pub const TEMPLATE: &str = include_str!("../../template.yaml");

/// The `Properties` of the template's `Table` resource.
pub fn table_properties() -> Result<Value> {
    let template: Value = serde_yaml_ng::from_str(TEMPLATE).context("template.yaml is not YAML")?;
    template
        .get("Resources")
        .and_then(|r| r.get("Table"))
        .and_then(|t| t.get("Properties"))
        .cloned()
        .ok_or_else(|| anyhow!("template.yaml has no Resources.Table.Properties"))
}

fn text<'a>(v: &'a Value, field: &str) -> Result<&'a str> {
    v.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("table definition: {field} missing or not a string"))
}

fn list<'a>(v: &'a Value, field: &str) -> Result<&'a Vec<Value>> {
    v.get(field)
        .and_then(Value::as_sequence)
        .ok_or_else(|| anyhow!("table definition: {field} missing or not a list"))
}

fn key_schema(v: &Value) -> Result<Vec<KeySchemaElement>> {
    list(v, "KeySchema")?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName")?)
                .key_type(KeyType::from(text(k, "KeyType")?))
                .build()?)
        })
        .collect()
}

/// The template's stream, if it declares one.
fn stream_specification(props: &Value) -> Result<Option<StreamSpecification>> {
    let Some(stream) = props.get("StreamSpecification") else {
        return Ok(None);
    };
    Ok(Some(
        StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::from(text(stream, "StreamViewType")?))
            .build()?,
    ))
}

/// Creates `name` if it does not exist yet. Returns whether it created it.
pub async fn ensure_table(client: &Client, name: &str) -> Result<bool> {
    match client.describe_table().table_name(name).send().await {
        Ok(_) => return Ok(false),
        Err(e) if e.code() == Some("ResourceNotFoundException") => {}
        Err(e) => {
            return Err(anyhow!(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
            ))
            .context(format!("describing table {name}"))
        }
    }
    let props = table_properties()?;
    let billing = text(&props, "BillingMode")?;
    if billing != "PAY_PER_REQUEST" {
        bail!("only PAY_PER_REQUEST tables are supported, the template says {billing}");
    }
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&props)?))
        .set_stream_specification(stream_specification(&props)?);
    for attr in list(&props, "AttributeDefinitions")? {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(attr, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(attr, "AttributeType")?))
                .build()?,
        );
    }
    if let Some(indexes) = props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
    {
        for gsi in indexes {
            let projection = gsi
                .get("Projection")
                .ok_or_else(|| anyhow!("index without Projection"))?;
            let mut p = Projection::builder()
                .projection_type(ProjectionType::from(text(projection, "ProjectionType")?));
            if let Some(attrs) = projection
                .get("NonKeyAttributes")
                .and_then(Value::as_sequence)
            {
                for a in attrs {
                    p = p.non_key_attributes(
                        a.as_str()
                            .ok_or_else(|| anyhow!("NonKeyAttributes: not a string"))?,
                    );
                }
            }
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(text(gsi, "IndexName")?)
                    .set_key_schema(Some(key_schema(gsi)?))
                    .projection(p.build())
                    .build()?,
            );
        }
    }
    match req.send().await {
        Ok(_) => {}
        // Someone else created it between our describe and create.
        Err(e) if e.code() == Some("ResourceInUseException") => return Ok(false),
        Err(e) => {
            return Err(anyhow!(
                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
            ))
            .context(format!("creating table {name}"))
        }
    }
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(std::time::Duration::from_secs(60))
        .await
        .map_err(|e| anyhow!("waiting for table {name}: {e}"))?;
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        let enabled = ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(false);
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(text(ttl, "AttributeName")?)
                    .enabled(enabled)
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))
            .context(format!("setting the time-to-live attribute of {name}"))?;
    }
    Ok(true)
}

/// Gives an existing table the template's stream if it has none (a table that an earlier
/// version made and DynamoDB Local kept), and returns the stream's ARN. For local tables
/// only: on AWS the stack owns the table, and a change made here would drift from it.
pub async fn ensure_stream(client: &Client, name: &str) -> Result<String> {
    let wanted = stream_specification(&table_properties()?)?
        .ok_or_else(|| anyhow!("template.yaml's table declares no stream"))?;
    let describe = || async {
        client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))
            .with_context(|| format!("describing table {name}"))
    };
    let table = describe().await?.table.context("DescribeTable: no table")?;
    let current = table.stream_specification();
    if current.is_some_and(|s| s.stream_enabled()) {
        let view = current.and_then(|s| s.stream_view_type());
        if view != wanted.stream_view_type() {
            bail!(
                "table {name} streams {view:?}, the template says {:?}: delete the table \
                 (or the local data) to recreate it",
                wanted.stream_view_type()
            );
        }
        return table
            .latest_stream_arn()
            .map(str::to_owned)
            .with_context(|| format!("table {name} streams but has no LatestStreamArn"));
    }
    client
        .update_table()
        .table_name(name)
        .stream_specification(wanted)
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))
        .with_context(|| format!("enabling the stream of table {name}"))?;
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(std::time::Duration::from_secs(60))
        .await
        .map_err(|e| anyhow!("waiting for table {name}: {e}"))?;
    describe()
        .await?
        .table
        .and_then(|t| t.latest_stream_arn)
        .with_context(|| format!("table {name} has no stream after enabling it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_defines_the_keys_the_store_uses() {
        let props = table_properties().unwrap();
        let keys = key_schema(&props).unwrap();
        assert_eq!(keys[0].attribute_name(), "pk");
        assert_eq!(keys[0].key_type(), &KeyType::Hash);
        assert_eq!(keys[1].attribute_name(), "sk");
        assert_eq!(keys[1].key_type(), &KeyType::Range);
        // The store's idempotency records expire through this attribute.
        let ttl = props.get("TimeToLiveSpecification").unwrap();
        assert_eq!(text(ttl, "AttributeName").unwrap(), "expires_at");
        assert_eq!(ttl.get("Enabled").and_then(Value::as_bool), Some(true));
        // The sync function needs both images of every change (issue 10).
        let stream = stream_specification(&props).unwrap().unwrap();
        assert!(stream.stream_enabled());
        assert_eq!(
            stream.stream_view_type(),
            Some(&StreamViewType::NewAndOldImages)
        );
    }
}
