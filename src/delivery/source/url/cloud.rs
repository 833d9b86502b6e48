//! The cloud stores' builders (S3, GCS, Azure Blob): one function per cloud,
//! from a parsed URL and its checked parameters to an object_store client.
//!
//! Owns each cloud's credential sources and the "no credentials" message.
//! Must not: do any I/O (clients connect on first use), or let credentials
//! reach a label or an error message.

use std::sync::Arc;

use object_store::ClientConfigKey;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use url::Url;

use super::{Built, Cloud, Params, Scheme, SourceOptions, retry_config};
use crate::util::error_chain;

/// Azurite's well-known development account and key (published by Microsoft,
/// not a secret); the same values object_store uses for `use_emulator`.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The instance metadata address object_store asks when it has no default
/// of its own configured (`AWS_METADATA_ENDPOINT` overrides it).
const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// `s3://bucket[/prefix]`: credentials and region from the `AWS_*`
/// environment; path-style requests unless `virtual_hosted=true`. Also
/// returns the instance metadata address when the source has no credentials
/// of its own and will ask that service, so that its failures can say "no
/// credentials" instead of a raw connection error.
pub(super) fn s3(
    url: &Url,
    params: &Params,
    opts: &SourceOptions,
) -> Result<(Built, Option<String>), String> {
    let c = Cloud::parse(Scheme::S3, url, params, opts)?;
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&c.bucket)
        .with_retry(retry_config(opts))
        .with_virtual_hosted_style_request(params.flag("virtual_hosted")?.unwrap_or(false))
        .with_skip_signature(c.anonymous);
    for (key, value) in c.timeouts.clone() {
        b = b.with_config(AmazonS3ConfigKey::Client(key), value);
    }
    if let Some(allow) = c.allow_http {
        b = b.with_allow_http(allow);
    }
    if let Some(endpoint) = params.endpoint(c.allow_http == Some(true))? {
        b = b.with_endpoint(endpoint);
    }
    if let Some(region) = params.get("region") {
        b = b.with_region(region);
    }
    if !c.anonymous && !has_aws_credentials(&b) && aws_metadata_disabled() {
        // Without this, the first read fails with a raw error from the
        // instance-metadata address, which says nothing about credentials.
        return Err(
            "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
             or AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or run where instance or task \
             metadata serves a role; for a public bucket use `anonymous=true`)"
                .to_owned(),
        );
    }
    let metadata = (!c.anonymous && !has_aws_credentials(&b)).then(|| {
        b.get_config_value(&AmazonS3ConfigKey::MetadataEndpoint)
            .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_owned())
    });
    let store = b.build().map_err(|e| error_chain(&e))?;
    Ok((c.built(Arc::new(store)), metadata))
}

/// Whether the builder holds credentials of its own (keys, a web identity,
/// or a container credentials address) rather than falling back to the EC2
/// instance metadata service.
fn has_aws_credentials(b: &AmazonS3Builder) -> bool {
    [
        AmazonS3ConfigKey::AccessKeyId,
        AmazonS3ConfigKey::SecretAccessKey,
        AmazonS3ConfigKey::WebIdentityTokenFile,
        AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
        AmazonS3ConfigKey::ContainerCredentialsFullUri,
    ]
    .iter()
    .any(|k| b.get_config_value(k).is_some_and(|v| !v.is_empty()))
}

/// `AWS_EC2_METADATA_DISABLED=true`, the AWS SDKs' switch for "this is not
/// an EC2 instance": the metadata service is then not a credential source, so
/// no credentials of the builder's own means none at all. Read here, as
/// `AmazonS3Builder::from_env` reads the other `AWS_*` variables.
fn aws_metadata_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// `gs://bucket[/prefix]`: credentials from `GOOGLE_*` or application
/// default credentials; `endpoint` becomes the base URL.
pub(super) fn gcs(url: &Url, params: &Params, opts: &SourceOptions) -> Result<Built, String> {
    let c = Cloud::parse(Scheme::Gcs, url, params, opts)?;
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&c.bucket)
        .with_retry(retry_config(opts))
        .with_skip_signature(c.anonymous);
    for (key, value) in c.timeouts.clone() {
        b = b.with_config(GoogleConfigKey::Client(key), value);
    }
    if let Some(allow) = c.allow_http {
        b = b.with_config(
            GoogleConfigKey::Client(ClientConfigKey::AllowHttp),
            allow.to_string(),
        );
    }
    if let Some(endpoint) = params.endpoint(c.allow_http == Some(true))? {
        b = b.with_base_url(&endpoint);
    }
    let store = b.build().map_err(|e| error_chain(&e))?;
    Ok(c.built(Arc::new(store)))
}

/// `az://container[/prefix]`: credentials from `AZURE_*`, or Azurite's
/// well-known account with `emulator=true`.
pub(super) fn azure(url: &Url, params: &Params, opts: &SourceOptions) -> Result<Built, String> {
    let c = Cloud::parse(Scheme::Azure, url, params, opts)?;
    let emulator = params.flag("emulator")?.unwrap_or(false);
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(&c.bucket)
        .with_retry(retry_config(opts))
        .with_skip_signature(c.anonymous);
    for (key, value) in c.timeouts.clone() {
        b = b.with_config(AzureConfigKey::Client(key), value);
    }
    if let Some(allow) = c.allow_http {
        b = b.with_allow_http(allow);
    }
    let account = params.get("account");
    // Azurite always speaks plain http; object_store forces it too.
    let endpoint = params.endpoint(emulator || c.allow_http == Some(true))?;
    match (emulator, endpoint) {
        (true, Some(endpoint)) => {
            // object_store's own emulator mode takes its address only from
            // an environment variable; with an explicit endpoint, set up
            // exactly what it would: the account in the path, its key,
            // plain http.
            let account = account.unwrap_or(AZURITE_ACCOUNT);
            b = b
                .with_use_emulator(false)
                .with_account(account)
                .with_endpoint(format!("{endpoint}/{account}"))
                .with_access_key(AZURITE_KEY)
                .with_allow_http(true);
        }
        (true, None) => {
            b = b.with_use_emulator(true);
            if let Some(account) = account {
                b = b.with_account(account);
            }
        }
        (false, endpoint) => {
            if let Some(account) = account {
                b = b.with_account(account);
            }
            if let Some(endpoint) = endpoint {
                b = b.with_endpoint(endpoint);
            }
        }
    }
    let store = b.build().map_err(|e| error_chain(&e))?;
    Ok(c.built(Arc::new(store)))
}
