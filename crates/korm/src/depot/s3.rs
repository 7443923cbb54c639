//! The S3-compatible depot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpConnector};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use super::store::Store;
use super::{Depot, DepotKey, FileContent, FileStream};
use crate::error::{Error, Result, Scrubber};

/// Options of an [`S3Depot`], made by [`s3`] and set with `with_*` methods (D1).
///
/// Debug prints the secret access key and the session token as `***`.
///
/// ```
/// let options = korm::depots::s3("invoices")
///     .with_endpoint("http://127.0.0.1:9000")
///     .with_region("eu-central-1")
///     .with_access_key_id("AKIAEXAMPLE")
///     .with_secret_access_key("wJalrXUtnFEMI/K7MDENG")
///     .with_prefix("korm/prod")
///     .with_auto_create_bucket(true);
/// assert!(!format!("{options:?}").contains("wJalrXUtnFEMI"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct S3Options {
    bucket: String,
    endpoint: Option<String>,
    region: String,
    /// Whether the region was set (korm 1.5's default identifier hashes an unset one as
    /// empty).
    region_given: bool,
    access_key_id: Option<String>,
    secret_access_key: Option<SecretString>,
    session_token: Option<SecretString>,
    virtual_hosted_style: bool,
    prefix: Option<String>,
    auto_create_bucket: bool,
    identifier: Option<String>,
    request_timeout: Duration,
    max_retries: usize,
}

/// A depot in the S3 bucket `bucket` (on AWS unless [`with_endpoint`](S3Options::with_endpoint)
/// names another S3-compatible server).
pub fn s3(bucket: impl Into<String>) -> S3Options {
    S3Options {
        bucket: bucket.into(),
        endpoint: None,
        region: "us-east-1".to_owned(),
        region_given: false,
        access_key_id: None,
        secret_access_key: None,
        session_token: None,
        virtual_hosted_style: false,
        prefix: None,
        auto_create_bucket: false,
        identifier: None,
        request_timeout: Duration::from_secs(60),
        max_retries: 3,
    }
}

impl S3Options {
    /// The server's URL (`http://127.0.0.1:9000`, `https://s3.example.com`); `http://` is
    /// allowed. Without it, AWS's endpoint for the region is used.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The region (`us-east-1` by default).
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self.region_given = true;
        self
    }

    /// The access key id.
    pub fn with_access_key_id(mut self, id: impl Into<String>) -> Self {
        self.access_key_id = Some(id.into());
        self
    }

    /// The secret access key (never printed, never in an error).
    pub fn with_secret_access_key(mut self, secret: impl Into<String>) -> Self {
        self.secret_access_key = Some(SecretString::from(secret.into()));
        self
    }

    /// A session token for temporary credentials (never printed, never in an error).
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(SecretString::from(token.into()));
        self
    }

    /// Virtual-hosted-style requests (`https://bucket.host/key`) instead of path style
    /// (`https://host/bucket/key`, the default). With an endpoint, the endpoint must then
    /// include the bucket (`https://invoices.s3.example.com`).
    pub fn with_virtual_hosted_style(mut self, virtual_hosted: bool) -> Self {
        self.virtual_hosted_style = virtual_hosted;
        self
    }

    /// A key prefix (`korm/prod`): the depot's files live under it in the bucket.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Creates the bucket when the pool opens if it does not exist yet (a signed
    /// `PUT` on the bucket root; an existing bucket of yours is fine).
    pub fn with_auto_create_bucket(mut self, create: bool) -> Self {
        self.auto_create_bucket = create;
        self
    }

    /// A stable name for the storage behind the depot, recorded in pool metadata; by default
    /// korm 1.5's: `korm_s3_` and the first 12 hex characters of SHA-256 of
    /// `s3|{endpoint}|{bucket}|{region}|{prefix}` (each as given, empty when not set), so
    /// korm 1.5 and korm-rs name the same bucket alike.
    pub fn with_identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// How long one request may take (60 s by default).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How often a failed request (a connection error, a 5xx) is retried (3 by default; 0
    /// fails at once).
    pub fn with_max_retries(mut self, retries: usize) -> Self {
        self.max_retries = retries;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The identifier (see [`with_identifier`](S3Options::with_identifier)).
    pub fn identifier(&self) -> String {
        self.identifier.clone().unwrap_or_else(|| {
            use sha2::Digest;
            let region = if self.region_given { &self.region } else { "" };
            let seed = [
                "s3",
                self.endpoint.as_deref().unwrap_or(""),
                &self.bucket,
                region,
                self.prefix.as_deref().unwrap_or(""),
            ]
            .map(str::trim)
            .join("|");
            let hash = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
            format!("korm_s3_{}", &hash[..12])
        })
    }

    /// The options as korm 1.5's S3 depot reports them for pool metadata (its
    /// `getPoolConfig().options`, in its order): `identifier`, `bucket`, `endpoint`,
    /// `region`, `accessKeyId`, `secretAccessKey`, `sessionToken`, `virtualHostedStyle`,
    /// `prefix` (without surrounding slashes, empty when unset), `autoCreateBucket`; the
    /// optional ones only when set. Holds the secrets in clear: for sealing only.
    pub(crate) fn pool_config(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut map = serde_json::Map::new();
        map.insert("identifier".into(), Value::from(self.identifier()));
        map.insert("bucket".into(), Value::from(self.bucket.clone()));
        if let Some(endpoint) = &self.endpoint {
            map.insert("endpoint".into(), Value::from(endpoint.clone()));
        }
        map.insert("region".into(), Value::from(self.region.clone()));
        if let Some(id) = &self.access_key_id {
            map.insert("accessKeyId".into(), Value::from(id.clone()));
        }
        if let Some(secret) = &self.secret_access_key {
            map.insert(
                "secretAccessKey".into(),
                Value::from(secret.expose_secret().to_owned()),
            );
        }
        if let Some(token) = &self.session_token {
            map.insert(
                "sessionToken".into(),
                Value::from(token.expose_secret().to_owned()),
            );
        }
        map.insert(
            "virtualHostedStyle".into(),
            Value::from(self.virtual_hosted_style),
        );
        let prefix = self
            .prefix
            .as_deref()
            .unwrap_or("")
            .trim()
            .trim_matches('/');
        map.insert("prefix".into(), Value::from(prefix));
        map.insert(
            "autoCreateBucket".into(),
            Value::from(self.auto_create_bucket),
        );
        map
    }

    /// Options from what [`pool_config`](S3Options::pool_config) (or korm 1.5) recorded.
    /// Fields korm does not know are ignored; a known field of the wrong type is an error
    /// naming it (never its value).
    pub(crate) fn from_pool_config(
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> std::result::Result<S3Options, String> {
        let text = |field: &str| -> std::result::Result<Option<String>, String> {
            match map.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{field} is not a string")),
            }
        };
        let flag = |field: &str| -> std::result::Result<Option<bool>, String> {
            match map.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(format!("{field} is not a boolean")),
            }
        };
        let bucket = text("bucket")?.ok_or("bucket is missing")?;
        let mut options = s3(bucket);
        if let Some(endpoint) = text("endpoint")? {
            options = options.with_endpoint(endpoint);
        }
        if let Some(region) = text("region")? {
            options = options.with_region(region);
        }
        if let Some(id) = text("accessKeyId")? {
            options = options.with_access_key_id(id);
        }
        if let Some(secret) = text("secretAccessKey")? {
            options = options.with_secret_access_key(secret);
        }
        if let Some(token) = text("sessionToken")? {
            options = options.with_session_token(token);
        }
        if let Some(hosted) = flag("virtualHostedStyle")? {
            options = options.with_virtual_hosted_style(hosted);
        }
        if let Some(prefix) = text("prefix")?.filter(|p| !p.trim().trim_matches('/').is_empty()) {
            options = options.with_prefix(prefix);
        }
        if let Some(create) = flag("autoCreateBucket")? {
            options = options.with_auto_create_bucket(create);
        }
        if let Some(identifier) = text("identifier")? {
            options = options.with_identifier(identifier);
        }
        Ok(options)
    }

    /// The URL of the bucket root, for the bucket-creating `PUT`.
    fn bucket_url(&self) -> String {
        match (&self.endpoint, self.virtual_hosted_style) {
            (Some(endpoint), true) => endpoint.trim_end_matches('/').to_owned(),
            (Some(endpoint), false) => {
                format!("{}/{}", endpoint.trim_end_matches('/'), self.bucket)
            }
            (None, true) => format!("https://{}.s3.{}.amazonaws.com", self.bucket, self.region),
            (None, false) => format!("https://s3.{}.amazonaws.com/{}", self.region, self.bucket),
        }
    }
}

/// Whether an endpoint URL carries user info (`https://key:secret@host`): credentials that
/// belong in the options' keys, never in a URL korm shows.
fn has_user_info(endpoint: &str) -> bool {
    // Not cut at `/`: a secret key is base64, often with a `/`; no endpoint needs an `@`.
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.contains('@')
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An endpoint with user info (refused at open) is shown by neither field.
        const HIDDEN: &str = "<an endpoint with user info>";
        let hidden = self.endpoint.as_deref().is_some_and(has_user_info);
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field(
                "endpoint",
                &self
                    .endpoint
                    .as_deref()
                    .map(|e| if hidden { HIDDEN } else { e }),
            )
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("prefix", &self.prefix)
            .field("auto_create_bucket", &self.auto_create_bucket)
            .field(
                "identifier",
                &if hidden {
                    HIDDEN.to_owned()
                } else {
                    self.identifier()
                },
            )
            .finish()
    }
}

/// A depot in an S3-compatible bucket: key `a/b.txt` is the object `<prefix>/a/b.txt`.
///
/// Files of 8 MiB or more upload in parts (multipart upload), two parts in flight at most,
/// so a large stream never sits in memory whole; reads stream too.
pub struct S3Depot {
    store: Store,
    identifier: String,
}

impl fmt::Debug for S3Depot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Depot")
            .field("ident", &self.store.ident)
            .field("identifier", &self.identifier)
            .finish()
    }
}

/// The HTTP client of a depot: rustls with ring as its crypto provider, given to this client
/// only (a library must not install a process-wide provider behind its user's back), the
/// system's trusted roots, HTTP/1.1, and the depot's timeouts.
fn http_client(
    timeout: Duration,
    https_only: bool,
) -> std::result::Result<reqwest::Client, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_platform_verifier()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("korm/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT)
        .http1_only()
        .https_only(https_only)
        .build()
        .map_err(|e| format!("can not build an http client: {e}"))
}

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Gives object_store the depot's [`http_client`] (its own would need a process-wide
/// rustls provider).
#[derive(Debug)]
struct Connector {
    timeout: Duration,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v == "true");
        http_client(self.timeout, !allow_http)
            .map(HttpClient::new)
            .map_err(|reason| object_store::Error::Generic {
                store: "S3",
                source: reason.into(),
            })
    }
}

impl S3Depot {
    /// Opens the depot under the name `ident`, creating the bucket first if
    /// [`with_auto_create_bucket`](S3Options::with_auto_create_bucket) is set. Without it
    /// nothing is sent until the first file operation.
    ///
    /// # Errors
    /// [`Error::Depot`] for options the client refuses or a bucket that can not be created
    /// (the server is down, the credentials are refused). The message names the depot and
    /// never holds the secret.
    pub async fn open(ident: &str, options: S3Options) -> Result<Self> {
        // Secrets are scrubbed from every message (defence in depth: object_store's do not
        // carry credentials, but a server's error body might echo a header).
        let redact = Scrubber::new(
            options
                .secret_access_key
                .iter()
                .chain(options.session_token.iter())
                .map(|s| s.expose_secret().to_owned())
                .filter(|s| s.len() >= 4)
                .collect(),
        );
        let fail = |reason: String| Error::Depot {
            depot: ident.to_owned(),
            key: String::new(),
            reason: redact.scrub(&reason),
        };
        let bucket_ok = (1..=255).contains(&options.bucket.len())
            && options
                .bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !bucket_ok {
            // Not repeated: a bucket "name" taken from a URL may hold its query (`?secret=`).
            return Err(fail(
                "invalid bucket name: 1 to 255 characters of [A-Za-z0-9._-]".to_owned(),
            ));
        }
        if options.endpoint.as_deref().is_some_and(has_user_info) {
            return Err(fail(
                "the endpoint URL carries user info (user:secret@): give the credentials as \
                 the access key and secret instead"
                    .to_owned(),
            ));
        }
        // Credentials travel in HTTP headers: refuse what a header can not hold (the signer
        // would panic on it) before anything is sent. The message never quotes them.
        let header_safe = |s: &str| s.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if !options.access_key_id.as_deref().is_none_or(header_safe)
            || !options
                .secret_access_key
                .as_ref()
                .is_none_or(|s| header_safe(s.expose_secret()))
            || !options
                .session_token
                .as_ref()
                .is_none_or(|s| header_safe(s.expose_secret()))
        {
            return Err(fail(
                "the access key id, secret or session token holds a character outside \
                 visible ASCII"
                    .to_owned(),
            ));
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&options.bucket)
            .with_region(&options.region)
            .with_virtual_hosted_style_request(options.virtual_hosted_style)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(options.request_timeout)
                    .with_connect_timeout(CONNECT_TIMEOUT),
            )
            .with_http_connector(Connector {
                timeout: options.request_timeout,
            })
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: options.max_retries,
                retry_timeout: Duration::from_secs(30),
            });
        if let Some(endpoint) = &options.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(id) = &options.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token.expose_secret());
        }
        let s3 = builder.build().map_err(|e| fail(e.to_string()))?;
        if options.auto_create_bucket {
            create_bucket(&options)
                .await
                .map_err(|reason| fail(format!("can not create bucket: {reason}")))?;
        }
        let inner: Arc<dyn ObjectStore> =
            match options.prefix.as_deref().map(|p| p.trim_matches('/')) {
                Some(prefix) if !prefix.is_empty() => {
                    let prefix =
                        Path::parse(prefix).map_err(|e| fail(format!("invalid prefix: {e}")))?;
                    Arc::new(PrefixStore::new(s3, prefix))
                }
                _ => Arc::new(s3),
            };
        Ok(S3Depot {
            store: Store::new(ident, inner, redact),
            identifier: options.identifier(),
        })
    }

    /// The identifier of the storage behind the depot.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }
}

/// Creates the bucket with a SigV4-signed `PUT` on its root; an existing bucket is fine.
async fn create_bucket(options: &S3Options) -> std::result::Result<(), String> {
    let url = options.bucket_url();
    let body = if options.region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            options.region
        )
    };
    let mut request = http::Request::builder()
        .method(http::Method::PUT)
        .uri(&url)
        .body(object_store::client::HttpRequestBody::from(body.clone()))
        .map_err(|e| format!("invalid bucket url: {e}"))?;
    if let (Some(id), Some(secret)) = (&options.access_key_id, &options.secret_access_key) {
        let credential = AwsCredential {
            key_id: id.clone(),
            secret_key: secret.expose_secret().to_owned(),
            token: options
                .session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
        };
        AwsAuthorizer::new(&credential, "s3", &options.region)
            .try_authorize(&mut request, None)
            .map_err(|e| format!("can not sign the request: {e}"))?;
        // The credential copy is dropped here; AwsCredential does not zero itself.
        let AwsCredential { mut secret_key, .. } = credential;
        secret_key.zeroize();
    }
    let client = http_client(options.request_timeout, !url.starts_with("http://"))?;
    let response = client
        .put(&url)
        .headers(request.headers().clone())
        .body(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "request failed: {}",
                super::store::with_sources(&e.without_url())
            )
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    if status == http::StatusCode::CONFLICT
        && (text.contains("BucketAlreadyOwnedByYou") || text.contains("BucketAlreadyExists"))
    {
        return Ok(());
    }
    let code = text
        .split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("");
    Err(format!("the server answered {status} {code}"))
}

#[async_trait::async_trait]
impl Depot for S3Depot {
    fn ident(&self) -> &str {
        &self.store.ident
    }

    async fn put(&self, key: &DepotKey, content: FileContent) -> Result<u64> {
        self.store.put(key, content).await
    }

    async fn get(&self, key: &DepotKey) -> Result<FileStream> {
        self.store.get(key).await
    }

    async fn size(&self, key: &DepotKey) -> Result<Option<u64>> {
        self.store.size(key).await
    }

    async fn delete(&self, key: &DepotKey) -> Result<()> {
        self.store.delete_path(&Store::path(key)?).await
    }

    async fn copy(&self, from: &DepotKey, to: &DepotKey) -> Result<()> {
        self.store
            .copy_path(&Store::path(from)?, &Store::path(to)?)
            .await
    }

    async fn list(&self, prefix: &DepotKey) -> Result<Vec<DepotKey>> {
        self.store.list(prefix).await
    }

    async fn list_level(&self, prefix: &DepotKey) -> Result<super::DepotLevel> {
        self.store.list_level(prefix).await
    }

    async fn list_all(&self, prefix: &DepotKey) -> Result<Vec<DepotKey>> {
        self.store.list_keys(prefix, true).await
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::{http_client, s3};
    use crate::error::Scrubber;
    use std::time::Duration;

    #[test]
    fn an_endpoint_with_user_info_is_never_shown_and_refused_at_open() {
        let options = s3("invoices").with_endpoint("https://AKIA:hunter2-s3cret@minio:9000/");
        assert!(!format!("{options:?}").contains("hunter2"));
        let slashed = s3("invoices").with_endpoint("https://AKIA:wJal/K7MD/hunter2@minio:9000");
        assert!(!format!("{slashed:?}").contains("hunter2"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let refused = runtime
            .block_on(super::S3Depot::open("files", options))
            .map(|_| ());
        let text = format!("{refused:?}");
        assert!(
            text.contains("user info") && !text.contains("hunter2"),
            "{text}"
        );
        // An invalid bucket name (it may hold a URL's query) is not repeated.
        let refused = runtime
            .block_on(super::S3Depot::open("files", s3("b?secret=hunter2")))
            .map(|_| ());
        let text = format!("{refused:?}");
        assert!(
            text.contains("invalid bucket") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn bucket_urls_follow_the_addressing_style() {
        let path = s3("invoices").with_endpoint("http://127.0.0.1:9000/");
        assert_eq!(path.bucket_url(), "http://127.0.0.1:9000/invoices");
        let hosted = s3("invoices")
            .with_endpoint("https://invoices.s3.example.com")
            .with_virtual_hosted_style(true);
        assert_eq!(hosted.bucket_url(), "https://invoices.s3.example.com");
        let aws = s3("invoices").with_region("eu-central-1");
        assert_eq!(
            aws.bucket_url(),
            "https://s3.eu-central-1.amazonaws.com/invoices"
        );
        assert_eq!(
            aws.with_virtual_hosted_style(true).bucket_url(),
            "https://invoices.s3.eu-central-1.amazonaws.com"
        );
    }

    #[test]
    fn identifier_defaults_to_korm_1_5s() {
        use sha2::Digest;
        let korm_1_5 = |seed: &str| {
            format!(
                "korm_s3_{}",
                &hex::encode(sha2::Sha256::digest(seed.as_bytes()))[..12]
            )
        };
        // korm 1.5: createDepotIdentifier("s3", [endpoint ?? "", bucket, region ?? "",
        // prefix ?? ""]), each part trimmed, joined with "|".
        let options = s3("b").with_endpoint("http://h:1/").with_prefix("/t/x/");
        assert_eq!(options.identifier(), korm_1_5("s3|http://h:1/|b||/t/x/"));
        assert_eq!(
            s3("b").with_region("eu-west-1").identifier(),
            korm_1_5("s3||b|eu-west-1|")
        );
        assert_eq!(
            options.with_identifier("prod-files").identifier(),
            "prod-files"
        );
    }

    #[test]
    fn pool_config_is_korm_1_5s_options_and_reads_back() {
        let options = s3("b")
            .with_endpoint("http://h:1")
            .with_access_key_id("AKIA")
            .with_secret_access_key("s3cret")
            .with_prefix("/t/x/");
        let map = options.pool_config();
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "identifier",
                "bucket",
                "endpoint",
                "region",
                "accessKeyId",
                "secretAccessKey",
                "virtualHostedStyle",
                "prefix",
                "autoCreateBucket"
            ]
        );
        assert_eq!(map["prefix"], "t/x");
        assert_eq!(map["region"], "us-east-1");
        let back = super::S3Options::from_pool_config(&map).expect("reads back");
        assert_eq!(back.pool_config(), map);
        let mut bad = map.clone();
        bad.insert("bucket".into(), serde_json::Value::from(3));
        let err = super::S3Options::from_pool_config(&bad).expect_err("refused");
        assert_eq!(err, "bucket is not a string");
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let redact = Scrubber::new(vec!["wJalrXUtnFEMI".to_owned()]);
        assert_eq!(
            redact.scrub("signature for wJalrXUtnFEMI failed"),
            "signature for *** failed"
        );
        assert!(!format!("{redact:?}").contains("wJal"));
    }

    #[test]
    fn the_library_installs_no_process_wide_tls_provider() {
        let client = http_client(Duration::from_secs(1), true);
        assert!(client.is_ok(), "{:?}", client.err());
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }
}
