//! Each topic's envelope in Pulsar's schema registry: a `PROTOBUF_NATIVE` schema (the file
//! descriptor set of the envelope's `.proto` file and its imports, and the envelope's full name),
//! declared by every producer (the relay) and consumer (the command doors and feeds) of the topic.
//! The broker registers it with the topic's first producer or consumer and refuses a producer or
//! consumer whose schema is incompatible under the namespace's compatibility strategy
//! (`FULL_TRANSITIVE`, set where the namespace is made). A client in any language reads the
//! envelope's type from the registry (`GET /admin/v2/schemas/{tenant}/{namespace}/{topic}/schema`)
//! and decodes with it, without our `.proto` files.

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use pulsar::message::proto::{Schema, schema::Type};

/// The envelope (full protobuf name) of a topic of the platform, by its name's end:
/// `{service}-events` or `{service}-commands`; `None` for any other topic (dead-letter topics,
/// a watcher's own).
pub fn envelope_of(topic: &str) -> Option<&'static str> {
    let short = topic.rsplit('/').next().unwrap_or(topic);
    Some(match short {
        "campaign-events" => "affiliate.campaign.v1.CampaignEvent",
        "campaign-commands" => "affiliate.campaign.v1.CampaignCommand",
        "tracking-events" => "affiliate.tracking.v1.TrackingEventEnvelope",
        "tracking-commands" => "affiliate.tracking.v1.TrackingCommand",
        "commission-events" => "affiliate.commission.v1.CommissionEvent",
        "commission-commands" => "affiliate.commission.v1.CommissionCommand",
        "payment-events" => "affiliate.payment.v1.PaymentEvent",
        "payment-commands" => "affiliate.payment.v1.PaymentCommand",
        "webhook-events" => "affiliate.webhook.v1.WebhookEvent",
        _ => return None,
    })
}

/// The platform's topics that carry an envelope, by short name.
pub const TOPICS: [&str; 9] = [
    "campaign-events",
    "campaign-commands",
    "tracking-events",
    "tracking-commands",
    "commission-events",
    "commission-commands",
    "payment-events",
    "payment-commands",
    "webhook-events",
];

/// Registers every topic's envelope in namespace `tenant/namespace` through the admin API, ahead of
/// any producer or consumer: the broker adds a schema to a topic only while no schemaless client
/// (a watcher, a tool's producer) is on it and it holds no message, so the namespace's setup does
/// it first (deploy/local/platform.sh, the tests' namespaces, `platform schemas`). Registering the
/// same schema again changes nothing; an incompatible one is refused (the error says which topic).
pub async fn register_all(
    admin: &crate::admin::Admin,
    tenant: &str,
    namespace: &str,
) -> anyhow::Result<()> {
    for topic in TOPICS {
        let schema = of_topic(topic).ok_or_else(|| anyhow::anyhow!("no envelope for {topic}"))?;
        let body = serde_json::json!({
            "type": "PROTOBUF_NATIVE",
            "schema": String::from_utf8_lossy(&schema.schema_data),
            "properties": {},
        });
        let path = format!("/admin/v2/schemas/{tenant}/{namespace}/{topic}/schema");
        let (status, answer) = admin.request("POST", &path, &body.to_string()).await?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "register the schema of {tenant}/{namespace}/{topic}: HTTP {status} {answer}"
        );
    }
    Ok(())
}

/// The `PROTOBUF_NATIVE` schema of `topic`'s envelope, `None` for a topic without one.
pub fn of_topic(topic: &str) -> Option<Schema> {
    protobuf_native(envelope_of(topic)?)
}

/// The `PROTOBUF_NATIVE` schema of message `root` (a full name, e.g.
/// `affiliate.campaign.v1.CampaignEvent`) as Pulsar's `ProtobufNativeSchemaData` has it: JSON with
/// the base64 file descriptor set (the root's file and every file it imports, imports first), the
/// root message's name and its file's name. `None` if no file of the platform defines `root`.
pub fn protobuf_native(root: &str) -> Option<Schema> {
    let set = FileDescriptorSet::decode(affiliate_proto::FILE_DESCRIPTOR_SET).ok()?;
    let files: BTreeMap<&str, &FileDescriptorProto> =
        set.file.iter().map(|f| (f.name(), f)).collect();
    let (package, message) = root.rsplit_once('.')?;
    let root_file = set
        .file
        .iter()
        .find(|f| f.package() == package && f.message_type.iter().any(|m| m.name() == message))?;
    let mut ordered = Vec::new();
    let mut seen = HashSet::new();
    imports_first(root_file, &files, &mut seen, &mut ordered);
    let root_file = root_file.name().to_owned();
    Some(from_descriptors(
        &FileDescriptorSet { file: ordered },
        root,
        &root_file,
    ))
}

/// The `PROTOBUF_NATIVE` schema of message `root`, defined in file `root_file` of `files` (which
/// holds it and everything it imports, imports first).
pub fn from_descriptors(files: &FileDescriptorSet, root: &str, root_file: &str) -> Schema {
    let data = serde_json::json!({
        "fileDescriptorSet": base64::engine::general_purpose::STANDARD.encode(files.encode_to_vec()),
        "rootMessageTypeName": root,
        "rootFileDescriptorName": root_file,
    });
    Schema {
        name: root.to_owned(),
        schema_data: data.to_string().into_bytes(),
        r#type: Type::ProtobufNative as i32,
        properties: Vec::new(),
    }
}

/// The descriptors of a `PROTOBUF_NATIVE` schema (for a tool or test that reads or varies it).
pub fn descriptors(schema: &Schema) -> Option<(FileDescriptorSet, String, String)> {
    let data: serde_json::Value = serde_json::from_slice(&schema.schema_data).ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data["fileDescriptorSet"].as_str()?)
        .ok()?;
    Some((
        FileDescriptorSet::decode(bytes.as_slice()).ok()?,
        data["rootMessageTypeName"].as_str()?.to_owned(),
        data["rootFileDescriptorName"].as_str()?.to_owned(),
    ))
}

/// `file` after every file it imports, each once.
fn imports_first(
    file: &FileDescriptorProto,
    files: &BTreeMap<&str, &FileDescriptorProto>,
    seen: &mut HashSet<String>,
    ordered: &mut Vec<FileDescriptorProto>,
) {
    if !seen.insert(file.name().to_owned()) {
        return;
    }
    for import in &file.dependency {
        if let Some(dependency) = files.get(import.as_str()) {
            imports_first(dependency, files, seen, ordered);
        }
    }
    ordered.push(file.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(schema: &Schema) -> serde_json::Value {
        serde_json::from_slice(&schema.schema_data).unwrap_or_default()
    }

    #[test]
    fn every_platform_topic_has_its_envelope_as_a_protobuf_native_schema() {
        for service in ["campaign", "tracking", "commission", "payment"] {
            for kind in ["events", "commands"] {
                let topic = format!("persistent://affiliate/platform/{service}-{kind}");
                let schema = of_topic(&topic);
                let schema = schema.unwrap_or_else(|| panic!("{topic} has a schema"));
                assert_eq!(schema.r#type, Type::ProtobufNative as i32);
                let data = data(&schema);
                assert_eq!(
                    data["rootMessageTypeName"].as_str(),
                    envelope_of(&topic),
                    "{topic}"
                );
                assert!(
                    data["rootFileDescriptorName"]
                        .as_str()
                        .is_some_and(|f| f.starts_with(&format!("affiliate/{service}/v1/"))),
                    "{data}"
                );
            }
        }
        assert!(of_topic("persistent://t/n/campaign-events-tracking-DLQ").is_none());
        assert!(TOPICS.iter().all(|t| of_topic(t).is_some()));
    }

    #[test]
    fn the_descriptor_set_holds_the_root_file_after_everything_it_imports() {
        let schema = of_topic("campaign-events");
        let (set, root, root_file) = schema.as_ref().and_then(descriptors).unwrap_or_default();
        assert_eq!(root, "affiliate.campaign.v1.CampaignEvent");
        assert_eq!(root_file, "affiliate/campaign/v1/campaign_messages.proto");
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        assert_eq!(
            names.last(),
            Some(&"affiliate/campaign/v1/campaign_messages.proto")
        );
        for (i, file) in set.file.iter().enumerate() {
            for import in &file.dependency {
                let at = names.iter().position(|n| n == import);
                assert!(
                    at.is_some_and(|at| at < i),
                    "{import} comes before {}",
                    file.name()
                );
            }
        }
    }
}
