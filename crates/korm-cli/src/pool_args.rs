//! Layers and depots named on the command line (`--layer name=URL`, `--depot name=PATH`),
//! read without ever echoing what was given: a URL may hold a password.

use korm::Error;

/// Splits `name=value`; the error names the flag and never repeats the value. The name must
/// be a layer or depot name (`[A-Za-z0-9_-]`, at most 64): without it, a URL holding `=`
/// (`s3://key:secret@bucket?region=eu`) would split inside the URL, and the pool's refusal of
/// that "name" would print it.
fn split<'a>(flag: &'static str, arg: &'a str, what: &str) -> korm::Result<(&'a str, &'a str)> {
    let is_name = |name: &str| {
        (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    match arg.split_once('=') {
        Some((name, value)) if is_name(name) && !value.is_empty() => Ok((name, value)),
        _ => Err(Error::InvalidOption {
            option: flag,
            reason: format!("takes NAME={what} (the value given is not repeated here)"),
        }),
    }
}

/// The value itself, or the environment variable it names (`env:VAR`): a URL with a
/// password on the command line is visible to every user of the machine in `ps`.
fn resolve(flag: &'static str, name: &str, value: &str) -> korm::Result<String> {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var).map_err(|_| Error::InvalidOption {
            option: flag,
            reason: format!("{name}: the environment variable {var:?} is not set"),
        }),
        None => Ok(value.to_owned()),
    }
}

/// A layer from `name=URL` (`sqlite:cars.sqlite`, `postgres://…`, `mysql://…`) or
/// `name=env:VAR`.
///
/// # Errors
/// [`Error::InvalidOption`] for a malformed argument or a missing variable, and
/// [`korm::layers::from_url`]'s error for a scheme korm does not know (it shows the scheme,
/// never the rest).
pub(crate) fn layer(arg: &str) -> korm::Result<(String, korm::LayerSpec)> {
    let (name, value) = split("--layer", arg, "URL")?;
    let url = resolve("--layer", name, value)?;
    Ok((name.to_owned(), korm::layers::from_url(&url)?))
}

/// A depot from `name=PATH` (a local folder, which must exist) or `name=s3://bucket/prefix`
/// (credentials, region and endpoint from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION` and `AWS_ENDPOINT_URL`), or `name=env:VAR`.
///
/// # Errors
/// [`Error::InvalidOption`] for a malformed argument, a missing variable, or an S3 URL with
/// credentials in it.
pub(crate) fn depot(arg: &str) -> korm::Result<(String, korm::depots::DepotSpec)> {
    let (name, value) = split("--depot", arg, "PATH")?;
    let value = resolve("--depot", name, value)?;
    let spec = match value.strip_prefix("s3://") {
        Some(rest) => s3(name, rest)?.into(),
        // A mistyped folder must fail, not become a new empty depot.
        None => korm::depots::local(value).with_create(false).into(),
    };
    Ok((name.to_owned(), spec))
}

fn s3(name: &str, rest: &str) -> korm::Result<korm::depots::S3Options> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // A query or fragment could carry a secret (`?secret=`): refused, never repeated.
    if bucket.is_empty() || bucket.contains(['@', ':']) || rest.contains(['?', '#']) {
        return Err(Error::InvalidOption {
            option: "--depot",
            reason: format!(
                "{name}: an S3 depot is s3://BUCKET or s3://BUCKET/PREFIX; credentials come \
                 from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never the URL"
            ),
        });
    }
    let mut options = korm::depots::s3(bucket);
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        options = options.with_prefix(prefix);
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
        options = options.with_region(region);
    }
    if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
        options = options.with_endpoint(endpoint);
    }
    if let Some(id) = var("AWS_ACCESS_KEY_ID") {
        options = options.with_access_key_id(id);
    }
    if let Some(secret) = var("AWS_SECRET_ACCESS_KEY") {
        options = options.with_secret_access_key(secret);
    }
    if let Some(token) = var("AWS_SESSION_TOKEN") {
        options = options.with_session_token(token);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_arguments_are_refused_without_repeating_them() {
        for arg in [
            "postgres://korm:s3cret@db/app",
            "=sqlite:x",
            "cardb=",
            "postgres://korm:s3cret@db/app?sslmode=require",
        ] {
            let err = layer(arg).expect_err(arg).to_string();
            assert!(err.contains("--layer"), "{err}");
            assert!(
                !err.contains("s3cret") && !err.contains("sqlite:x"),
                "{err}"
            );
        }
        let err = layer("cardb=redis://:s3cret@cache")
            .expect_err("unknown scheme")
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let err = depot("wal=s3://key:s3cret@bucket/x")
            .expect_err("credentials in the url")
            .to_string();
        assert!(
            err.contains("AWS_SECRET_ACCESS_KEY") && !err.contains("s3cret"),
            "{err}"
        );
        // NAME= left off a URL holding `=`: refused as a whole, not split inside it.
        let err = depot("s3://AKIA:s3cret@bucket/p?region=eu")
            .expect_err("no name")
            .to_string();
        assert!(err.contains("--depot") && !err.contains("s3cret"), "{err}");
        // A query or a fragment (a secret written as `?secret=`) is refused unrepeated too.
        for arg in [
            "wal=s3://bucket?secret=s3cret",
            "wal=s3://bucket/x?k=s3cret",
            "wal=s3://b#s3cret",
        ] {
            let err = depot(arg).expect_err(arg).to_string();
            assert!(err.contains("--depot") && !err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn names_and_values_are_split_at_the_first_equals_sign() {
        let (name, spec) = layer("cardb=sqlite::memory:").expect("sqlite");
        assert_eq!(name, "cardb");
        assert!(format!("{spec:?}").contains("Memory"), "{spec:?}");
        let (name, spec) = depot("files=/srv/files=old").expect("local");
        assert_eq!(name, "files");
        assert!(format!("{spec:?}").contains("/srv/files=old"), "{spec:?}");
        let (_, spec) = depot("wal=s3://korm-wal/prod/eu").expect("s3");
        let shown = format!("{spec:?}");
        assert!(
            shown.contains("korm-wal") && shown.contains("prod/eu"),
            "{shown}"
        );
        let err = layer("cardb=env:KORM_CLI_TEST_UNSET_VARIABLE")
            .expect_err("unset")
            .to_string();
        assert!(err.contains("KORM_CLI_TEST_UNSET_VARIABLE"), "{err}");
    }
}
