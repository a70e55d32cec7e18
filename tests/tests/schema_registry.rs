//! Schemas in Pulsar's registry, enforced, against the real broker: a topic's envelope is
//! registered as `PROTOBUF_NATIVE` by its first producer (with the schema the relay declares,
//! `messaging::schema`); under the namespace's `FULL_TRANSITIVE` strategy the broker refuses a
//! producer whose schema is another message and accepts one that only added a field. It also
//! accepts a field whose type or number changed: Pulsar 4.0's `PROTOBUF_NATIVE` check compares
//! the root message's name only, so field rules rest on `buf breaking` (tests/run.sh), the gate
//! before a schema reaches the broker; the test pins that, so a broker that starts checking fields
//! is noticed. And a client in another language (Python,
//! the official `pulsar-client` from PyPI) reads the typed events, decoding them with the
//! descriptors it fetched from the registry, not with our `.proto` files; so does `platform tail`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use prost::Message as _;
use prost_types::field_descriptor_proto::Type as FieldType;
use prost_types::{FieldDescriptorProto, FileDescriptorSet};
use pulsar::message::proto::Schema;
use pulsar::{ProducerOptions, Pulsar, TokioExecutor};

use affiliate_proto::campaign::{self as pb, campaign_event::Event};
use affiliate_proto::common::MessageMetadata;
use messaging::schema;

/// The Python of the tools' venv, with pulsar-client and protobuf (deploy/local/install.sh).
fn python() -> String {
    let bin = std::env::var("PY_TOOLS_PYTHON").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()));
        format!("{cache}/affiliate-platform/venv/bin/python")
    });
    let has_client = std::process::Command::new(&bin)
        .args(["-c", "import pulsar, google.protobuf"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_client,
        "{bin} cannot import pulsar and google.protobuf: install them with `deploy/local/install.sh` (tests/run.sh does)"
    );
    bin
}

async fn producer(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
    schema: Option<Schema>,
) -> Result<pulsar::Producer<TokioExecutor>, pulsar::Error> {
    client
        .producer()
        .with_topic(topic)
        .with_options(ProducerOptions {
            schema,
            ..ProducerOptions::default()
        })
        .build()
        .await
}

/// The campaign-events envelope's schema with `change` applied to the `Campaign` message.
fn varied(change: impl FnOnce(&mut Vec<FieldDescriptorProto>)) -> Schema {
    let (mut files, root, root_file) =
        schema::descriptors(&schema::of_topic("campaign-events").unwrap()).unwrap();
    let campaign = files
        .file
        .iter_mut()
        .flat_map(|f| f.message_type.iter_mut())
        .find(|m| m.name() == "Campaign")
        .unwrap();
    change(&mut campaign.field);
    schema::from_descriptors(&FileDescriptorSet { file: files.file }, &root, &root_file)
}

fn campaign_created(name: &str) -> (String, Vec<u8>) {
    let id = uuid::Uuid::now_v7().to_string();
    let envelope = pb::CampaignEvent {
        metadata: Some(MessageMetadata {
            message_id: id.clone(),
            message_type: "campaign.created.v1".into(),
            aggregate_type: "campaign".into(),
            aggregate_id: id.clone(),
            aggregate_version: 1,
            ..Default::default()
        }),
        event: Some(Event::CampaignCreated(pb::CampaignCreated {
            campaign: Some(pb::Campaign {
                id: id.clone(),
                name: name.into(),
                commission_rate_bps: 1250,
                status: pb::CampaignStatus::Active.into(),
                version: 1,
                ..Default::default()
            }),
        })),
    };
    (id, envelope.encode_to_vec())
}

#[tokio::test]
async fn envelopes_are_registered_incompatible_producers_refused_and_read_typed_from_python() {
    let python = python();
    let namespace = e2e::fresh_namespace().await;
    let topic = namespace.topic("campaign-events");
    let client = e2e::pulsar().await;

    // The relay's producer registers the envelope.
    let mut relay_like = producer(&client, &topic, schema::of_topic(&topic))
        .await
        .unwrap();
    let (id, payload) = campaign_created("Typed for every client");
    let message = pulsar::producer::Message {
        payload,
        properties: [("message-type".to_owned(), "campaign.created.v1".to_owned())].into(),
        partition_key: Some(id.clone()),
        ..Default::default()
    };
    relay_like
        .send_non_blocking(message)
        .await
        .unwrap()
        .await
        .unwrap();
    let path = format!(
        "/admin/v2/schemas/{}/{}/campaign-events/schema",
        e2e::pulsar_tenant(),
        &*namespace
    );
    let (status, body) = e2e::http_request("GET", &path, "").await;
    assert_eq!(status, 200, "{body}");
    let registered: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(registered["type"], "PROTOBUF_NATIVE", "{body}");
    let data: serde_json::Value =
        serde_json::from_str(registered["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data["rootMessageTypeName"],
        "affiliate.campaign.v1.CampaignEvent"
    );

    // What the broker does with other schemas under FULL_TRANSITIVE.
    let another_message = schema::protobuf_native("affiliate.campaign.v1.CampaignCommand");
    let added_field = varied(|fields| {
        fields.push(FieldDescriptorProto {
            name: Some("region".into()),
            number: Some(99),
            label: Some(1),
            r#type: Some(FieldType::String as i32),
            json_name: Some("region".into()),
            ..Default::default()
        });
    });
    let changed_type = varied(|fields| {
        let name = fields.iter_mut().find(|f| f.name() == "name").unwrap();
        name.r#type = Some(FieldType::Int64 as i32);
    });
    let renumbered = varied(|fields| {
        let name = fields.iter_mut().find(|f| f.name() == "name").unwrap();
        name.number = Some(98);
    });
    let mut unexpected = Vec::new();
    // (what, the schema, whether the broker accepts it)
    for (what, schema, accepted) in [
        ("the same envelope", schema::of_topic(&topic), true),
        ("another message (CampaignCommand)", another_message, false),
        ("Campaign with a field added", Some(added_field), true),
        // Breaking under proto3's rules, not checked by the broker: buf breaking refuses them.
        ("Campaign.name as int64", Some(changed_type), true),
        ("Campaign.name renumbered", Some(renumbered), true),
    ] {
        let result = producer(&client, &topic, schema).await;
        eprintln!(
            "schema_registry: a producer with {what}: {}",
            match &result {
                Ok(_) => "accepted".to_owned(),
                Err(e) => format!("refused ({e})"),
            }
        );
        if result.is_ok() != accepted {
            unexpected.push(what);
        }
    }
    assert!(
        unexpected.is_empty(),
        "the broker's verdict changed for: {unexpected:?}"
    );

    // Python, with only the registry's descriptors, reads the event typed.
    let out = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/read_typed_events.py"
        ))
        .args(["--service-url", &e2e::broker().url])
        .args(["--admin-url", &e2e::broker().admin_url])
        .args(["--topic", &topic, "--count", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "read_typed_events.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("schema_registry: python read {stdout}");
    let line = stdout.lines().find(|l| l.starts_with('{'));
    let read: serde_json::Value = serde_json::from_str(line.unwrap()).unwrap();
    assert_eq!(read["schemaType"], "PROTOBUF_NATIVE");
    assert_eq!(
        read["schemaVersion"], 0,
        "decoded with the version it was written with"
    );
    assert_eq!(read["rootMessage"], "affiliate.campaign.v1.CampaignEvent");
    assert_eq!(read["messageType"], "campaign.created.v1");
    let campaign = &read["message"]["campaignCreated"]["campaign"];
    assert_eq!(campaign["id"], id);
    assert_eq!(campaign["name"], "Typed for every client");
    assert_eq!(campaign["status"], "CAMPAIGN_STATUS_ACTIVE");

    // `platform tail` decodes by the registry too, with the message's own version.
    let out = std::process::Command::new(e2e::process::binary("platform"))
        .args(["tail", "--topic", "campaign-events", "--from-earliest"])
        .args(["--count", "1", "--timeout", "30s"])
        .args(e2e::pulsar_args(&namespace))
        .args(["--pulsar-admin-url", &e2e::broker().admin_url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "platform tail failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tailed: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(tailed["schema"]["registry_version"], 0, "{tailed}");
    assert_eq!(
        tailed["envelope"]["campaignCreated"]["campaign"],
        read["message"]["campaignCreated"]["campaign"]
    );
}
