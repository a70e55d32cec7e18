//! Decoding a topic's messages by Pulsar's schema registry, as a client in any language would:
//! each message with the `PROTOBUF_NATIVE` schema version it was written with (its descriptors
//! from `GET /admin/v2/schemas/{tenant}/{namespace}/{topic}/schema/{version}`), to proto3 JSON.
//! The admin API's address and credentials are those of [`AdminUrl`].

use std::collections::HashMap;

use anyhow::Context as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use pulsar::message::proto::Schema;
use service_runtime::config::PulsarArgs;

/// Where the admin API is; its CA and token are the binary protocol's.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminUrl {
    /// Pulsar admin REST URL (`http://` or `https://`; the broker's CA and token are those of
    /// the binary protocol: PULSAR_TLS_CA_FILE, PULSAR_TOKEN, PULSAR_TOKEN_FILE or PULSAR_OAUTH2_*).
    #[arg(
        long = "pulsar-admin-url",
        env = "PULSAR_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub admin_url: String,
}

impl AdminUrl {
    /// The admin API, with the broker's CA and the same token (or OAuth2 client) as `pulsar`.
    pub fn admin(&self, pulsar: &PulsarArgs) -> anyhow::Result<messaging::admin::Admin> {
        messaging::admin::Admin::new(
            &self.admin_url,
            pulsar.tls_ca_file.as_deref(),
            messaging::admin::Token::of(pulsar)?,
        )
    }
}

/// `platform schemas`: registers every topic's envelope in the namespace's schema registry.
#[derive(Debug, clap::Args)]
pub struct SchemasArgs {
    #[command(flatten)]
    pulsar: PulsarArgs,
    #[command(flatten)]
    admin: AdminUrl,
}

pub async fn register(args: SchemasArgs) -> anyhow::Result<()> {
    let (tenant, namespace) = (&args.pulsar.tenant, &args.pulsar.namespace);
    messaging::schema::register_all(&args.admin.admin(&args.pulsar)?, tenant, namespace).await?;
    eprintln!(
        "registered the PROTOBUF_NATIVE schemas of {} topics in {tenant}/{namespace}",
        messaging::schema::TOPICS.len()
    );
    Ok(())
}

/// The decoders of one topic, by schema version, fetched once each.
pub struct Registry {
    admin: messaging::admin::Admin,
    /// `{tenant}/{namespace}/{topic}`.
    path: String,
    versions: HashMap<u64, Option<MessageDescriptor>>,
}

/// A schema version as the broker sends it: 8 bytes, big-endian.
pub fn version(raw: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

/// The root message of a `PROTOBUF_NATIVE` schema, from its own descriptors.
pub fn root_message(schema: &Schema) -> anyhow::Result<MessageDescriptor> {
    let (files, root, _) =
        messaging::schema::descriptors(schema).context("not a PROTOBUF_NATIVE schema's data")?;
    let pool = DescriptorPool::from_file_descriptor_set(files)
        .context("the schema's file descriptor set")?;
    pool.get_message_by_name(&root)
        .with_context(|| format!("the schema names {root}, which its descriptors do not hold"))
}

impl Registry {
    pub fn new(admin: messaging::admin::Admin, topic: &str) -> Self {
        Self {
            admin,
            path: topic.trim_start_matches("persistent://").to_owned(),
            versions: HashMap::new(),
        }
    }

    /// The message at schema version `version`, decoded by the registry's descriptors: `None`
    /// if the registry has no `PROTOBUF_NATIVE` schema at that version.
    pub async fn decode(
        &mut self,
        version: u64,
        payload: &[u8],
    ) -> anyhow::Result<Option<serde_json::Value>> {
        if !self.versions.contains_key(&version) {
            let descriptor = self.fetch(version).await?;
            self.versions.insert(version, descriptor);
        }
        let Some(Some(descriptor)) = self.versions.get(&version) else {
            return Ok(None);
        };
        let message = DynamicMessage::decode(descriptor.clone(), payload).with_context(|| {
            format!(
                "decode as {} (schema version {version})",
                descriptor.full_name()
            )
        })?;
        Ok(Some(serde_json::to_value(&message)?))
    }

    async fn fetch(&self, version: u64) -> anyhow::Result<Option<MessageDescriptor>> {
        let path = format!("/admin/v2/schemas/{}/schema/{version}", self.path);
        let (status, body) = self.admin.request("GET", &path, "").await?;
        if status == 404 {
            return Ok(None);
        }
        anyhow::ensure!(status == 200, "GET {path}: HTTP {status} {body}");
        let info: serde_json::Value = serde_json::from_str(&body).context("the schema's JSON")?;
        if info["type"] != "PROTOBUF_NATIVE" {
            return Ok(None);
        }
        let schema = Schema {
            schema_data: info["data"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
            ..Schema::default()
        };
        root_message(&schema).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use affiliate_proto::campaign;

    #[test]
    fn the_registry_schema_decodes_an_envelope_as_the_compiled_types_do() {
        let schema = messaging::schema::of_topic("campaign-events");
        let root = root_message(&schema.unwrap_or_default());
        let root = root.unwrap_or_else(|e| panic!("{e:#}"));
        let event = campaign::CampaignEvent {
            event: Some(campaign::campaign_event::Event::CampaignCreated(
                campaign::CampaignCreated {
                    campaign: Some(campaign::Campaign {
                        name: "Spring".into(),
                        version: 3,
                        ..Default::default()
                    }),
                },
            )),
            ..Default::default()
        };
        let dynamic = DynamicMessage::decode(root, event.encode_to_vec().as_slice());
        let dynamic = serde_json::to_value(dynamic.unwrap_or_else(|e| panic!("{e}")));
        let compiled = serde_json::to_value(&event);
        assert_eq!(dynamic.ok(), compiled.ok());
        assert_eq!(version(&[0, 0, 0, 0, 0, 0, 0, 2]), Some(2));
        assert_eq!(version(&[1]), None);
    }
}
