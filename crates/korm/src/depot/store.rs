//! What both depots share: an `object_store` behind validated keys, streaming puts and gets,
//! and errors that name the depot and never a secret.

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::{Content, DepotKey, FileContent, FileStream};
use crate::error::{Error, Result, Scrubber};

/// The size of one uploaded part (S3's minimum is 5 MiB, except for the last part): a stream
/// shorter than this is uploaded with one put.
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;
/// How many parts may upload at once: bounds the memory a streaming upload holds to about
/// `PART_SIZE * (MAX_PARTS_IN_FLIGHT + 1)`.
const MAX_PARTS_IN_FLIGHT: usize = 2;

/// The prefix of korm's own files in a depot, left out of listings.
pub(crate) const RESERVED_PREFIX: &str = "__korm_";

/// An object store under a depot name, with the strings an error must never show.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) ident: String,
    pub(crate) inner: Arc<dyn ObjectStore>,
    /// Secrets to scrub from error messages (defence in depth: object_store's messages do
    /// not carry credentials, but a server's error body might echo a header).
    redact: Scrubber,
}

impl Store {
    pub(crate) fn new(ident: &str, inner: Arc<dyn ObjectStore>, redact: Scrubber) -> Self {
        Store {
            ident: ident.to_owned(),
            inner,
            redact,
        }
    }

    pub(crate) fn path(key: &DepotKey) -> Result<Path> {
        Path::parse(key.as_str()).map_err(|e| Error::InvalidDepotKey {
            key: key.as_str().to_owned(),
            segment: "(whole key)".to_owned(),
            reason: e.to_string(),
        })
    }

    /// The error of a failed store call on `key`.
    pub(crate) fn error(&self, key: &str, error: object_store::Error) -> Error {
        match error {
            object_store::Error::NotFound { .. } => Error::FileNotFound {
                depot: self.ident.clone(),
                key: key.to_owned(),
            },
            other => self.failure(key, with_sources(&other)),
        }
    }

    pub(crate) fn failure(&self, key: &str, reason: String) -> Error {
        Error::Depot {
            depot: self.ident.clone(),
            key: key.to_owned(),
            reason: self.redact.scrub(&reason),
        }
    }

    pub(crate) async fn put(&self, key: &DepotKey, content: FileContent) -> Result<u64> {
        let path = Self::path(key)?;
        self.put_path(&path, content).await
    }

    pub(crate) async fn put_path(&self, path: &Path, content: FileContent) -> Result<u64> {
        let key = path.as_ref();
        match content.into_inner() {
            Content::Bytes(bytes) => {
                let size = bytes.len() as u64;
                if bytes.len() <= PART_SIZE {
                    self.inner
                        .put(path, PutPayload::from_bytes(bytes))
                        .await
                        .map_err(|e| self.error(key, e))?;
                    return Ok(size);
                }
                let stream = futures_util::stream::iter(
                    (0..bytes.len())
                        .step_by(PART_SIZE)
                        .map(move |at| Ok(bytes.slice(at..(at + PART_SIZE).min(bytes.len()))))
                        .collect::<Vec<_>>(),
                );
                self.put_stream(path, Box::pin(stream)).await
            }
            Content::Stream(stream) => self.put_stream(path, stream).await,
        }
    }

    /// Uploads a stream: one put if it ends within the first part, parts otherwise.
    async fn put_stream(&self, path: &Path, mut stream: super::UploadStream) -> Result<u64> {
        let key = path.as_ref();
        let stream_error =
            |e: std::io::Error| self.failure(key, format!("reading the content failed: {e}"));
        let mut first = BytesMut::new();
        let mut size: u64 = 0;
        while first.len() < PART_SIZE {
            match stream.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(stream_error)?;
                    size += chunk.len() as u64;
                    first.extend_from_slice(&chunk);
                }
                None => {
                    self.inner
                        .put(path, PutPayload::from_bytes(first.freeze()))
                        .await
                        .map_err(|e| self.error(key, e))?;
                    return Ok(size);
                }
            }
        }
        let upload = self
            .inner
            .put_multipart(path)
            .await
            .map_err(|e| self.error(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.put(first.freeze());
        loop {
            let chunk = match stream.next().await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    let _ = writer.abort().await;
                    return Err(stream_error(e));
                }
            };
            size += chunk.len() as u64;
            if let Err(e) = writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(self.error(key, e));
            }
            writer.put(chunk);
        }
        writer.finish().await.map_err(|e| self.error(key, e))?;
        Ok(size)
    }

    pub(crate) async fn get(&self, key: &DepotKey) -> Result<FileStream> {
        let path = Self::path(key)?;
        self.get_path(&path).await
    }

    pub(crate) async fn get_path(&self, path: &Path) -> Result<FileStream> {
        let key = path.as_ref().to_owned();
        let result = self
            .inner
            .get(path)
            .await
            .map_err(|e| self.error(&key, e))?;
        let ident = self.ident.clone();
        let redact = self.redact.clone();
        let stream = result.into_stream().map_err(move |e| Error::Depot {
            depot: ident.clone(),
            key: key.clone(),
            reason: redact.scrub(&with_sources(&e)),
        });
        Ok(Box::pin(stream))
    }

    pub(crate) async fn size(&self, key: &DepotKey) -> Result<Option<u64>> {
        let path = Self::path(key)?;
        self.size_path(&path).await
    }

    pub(crate) async fn size_path(&self, path: &Path) -> Result<Option<u64>> {
        match self.inner.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(path.as_ref(), e)),
        }
    }

    pub(crate) async fn delete_path(&self, path: &Path) -> Result<()> {
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(path.as_ref(), e)),
        }
    }

    pub(crate) async fn copy_path(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner
            .copy(from, to)
            .await
            .map_err(|e| self.error(from.as_ref(), e))
    }

    pub(crate) async fn list(&self, prefix: &DepotKey) -> Result<Vec<DepotKey>> {
        self.list_keys(prefix, false).await
    }

    /// One level under `prefix` (a delimiter listing), korm's own (`__korm_*`) left out of
    /// the top level (a prefix inside them lists what is there: korm's own readers); names a
    /// depot key can not hold are left out too.
    pub(crate) async fn list_level(&self, prefix: &DepotKey) -> Result<super::DepotLevel> {
        let path = if prefix.is_root() {
            None
        } else {
            Some(Self::path(prefix)?)
        };
        let level = self
            .inner
            .list_with_delimiter(path.as_ref())
            .await
            .map_err(|e| self.error(prefix.as_str(), e))?;
        let inside = prefix.as_str().starts_with(RESERVED_PREFIX);
        let visible = |text: &str| {
            (inside || !text.starts_with(RESERVED_PREFIX)) && DepotKey::parse(text).is_ok()
        };
        let mut folders: Vec<String> = level
            .common_prefixes
            .iter()
            .filter(|p| visible(p.as_ref()))
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        folders.sort();
        let mut files: Vec<DepotKey> = level
            .objects
            .iter()
            .filter(|meta| inside || !meta.location.as_ref().starts_with(RESERVED_PREFIX))
            .filter_map(|meta| DepotKey::parse(meta.location.as_ref()).ok())
            .collect();
        files.sort();
        Ok(super::DepotLevel { folders, files })
    }

    /// Every file under `prefix`, korm's own (`__korm_*`) included when `reserved`.
    pub(crate) async fn list_keys(
        &self,
        prefix: &DepotKey,
        reserved: bool,
    ) -> Result<Vec<DepotKey>> {
        let path = if prefix.is_root() {
            None
        } else {
            Some(Self::path(prefix)?)
        };
        let mut stream = self.inner.list(path.as_ref());
        let mut keys = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.error(prefix.as_str(), e))?;
            let text = meta.location.as_ref();
            if !reserved && text.starts_with(RESERVED_PREFIX) {
                continue;
            }
            // A name a depot RN can not hold (put there by someone else) is left out.
            if let Ok(key) = DepotKey::parse(text) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// An error's message followed by its sources' (`error sending request: connection refused`).
pub(crate) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
