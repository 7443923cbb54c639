//! Database URLs: held as secrets, shown with their passwords replaced by `***`, and those
//! passwords scrubbed from every driver message before it leaves a layer.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::error::Scrubber;

/// Query parameters that may carry a password (`?password=...`, `pass`, `sslpassword`,
/// `pwd`, in any case; not `passfile`, the path of one).
fn is_password_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    (key.contains("pass") || key.contains("pwd")) && key != "passfile"
}

/// The user info a parser did not see whole: a password written with an unencoded `#`, `?`,
/// `/` or `@` ends the authority early (`mysql://korm:#s3cret@db/x` parses as host `korm`
/// and fragment `s3cret@db/x`; `mysql://u:a@b/c@db/x` as password `a`, host `b` and path
/// `/c@db/x`). Such a URL has a fragment (a database URL never does), an `@` in its path, or
/// no user while an `@` comes before any `=` (an `@` in a query value, `user=alice@REALM`,
/// is not one). Then the text between `://` and the last `@` (all of it may be secret).
fn unparsed_userinfo<'a>(raw: &'a str, url: &url::Url) -> Option<&'a str> {
    let rest = raw.split_once("://")?.1;
    let no_user = url.username().is_empty() && url.password().is_none();
    let cut = url.fragment().is_some()
        || url.path().contains('@')
        || (no_user
            && rest
                .split('=')
                .next()
                .is_some_and(|head| head.contains('@')));
    if !cut {
        return None;
    }
    Some(rest.rfind('@').map_or(rest, |at| &rest[..at]))
}

/// A server URL (`postgres://user:password@host/db`). It is zeroed on drop, and `Debug`
/// shows it [redacted](DbUrl::redacted).
#[derive(Clone)]
pub(crate) struct DbUrl(SecretString);

impl DbUrl {
    pub(crate) fn new(url: impl Into<String>) -> DbUrl {
        DbUrl(SecretString::from(url.into()))
    }

    /// The URL itself, for the driver only.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL as a secret of its own (for pool metadata, which seals it).
    pub(crate) fn secret(&self) -> SecretString {
        self.0.clone()
    }

    /// The URL with every password (in the user info and in `password`/`pass` query
    /// parameters) replaced by `***`; `<url>` when it does not parse, since the password can
    /// then not be found.
    ///
    /// ```text
    /// postgres://korm:s3cret@db:5432/app  ->  postgres://korm:***@db:5432/app
    /// ```
    pub(crate) fn redacted(&self) -> String {
        let Ok(mut url) = url::Url::parse(self.expose()) else {
            return "<url>".to_owned();
        };
        if unparsed_userinfo(self.expose(), &url).is_some() {
            return "<url>".to_owned();
        }
        if url.password().is_some() && url.set_password(Some("***")).is_err() {
            return "<url>".to_owned();
        }
        if url.query_pairs().any(|(key, _)| is_password_key(&key)) {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if is_password_key(&key) {
                        "***".to_owned()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.into()
    }

    /// Whether the URL's user info was cut short by an unencoded `#`, `?`, `/` or `@` in its
    /// password (see [`unparsed_userinfo`]): the driver would read part of the password as
    /// the host, a path or a parameter (and may log it), so such a URL is refused at open.
    pub(crate) fn cut_short(&self) -> bool {
        url::Url::parse(self.expose())
            .is_ok_and(|url| unparsed_userinfo(self.expose(), &url).is_some())
    }

    /// A query parameter that looks like a password (`pass`, `Password`) but is not one of
    /// `read`, the keys the driver takes as the password: the driver would ignore it, or log
    /// its value as an unknown parameter. The key (never the value) is the error.
    pub(crate) fn stray_password_key(&self, read: &[&str]) -> Option<String> {
        let url = url::Url::parse(self.expose()).ok()?;
        url.query_pairs()
            .map(|(key, _)| key)
            .find(|key| is_password_key(key) && !read.contains(&key.as_ref()))
            .map(|key| crate::error::clip(&key))
    }

    /// Refuses, before a driver parses it, a URL whose password the driver would misread or
    /// log: one cut short ([`cut_short`](DbUrl::cut_short)), or a password-like query
    /// parameter that is not one of `read` ([`stray_password_key`](DbUrl::stray_password_key);
    /// sqlx logs an unknown parameter's value). The reason, never the password.
    pub(crate) fn check_password_placement(&self, read: &[&str]) -> Result<(), String> {
        if self.cut_short() {
            return Err(
                "the url's password holds an unencoded `#`, `?`, `/` or `@`: \
                        percent-encode it"
                    .to_owned(),
            );
        }
        match self.stray_password_key(read) {
            Some(key) => Err(format!(
                "the url's query parameter `{key}` is not one the driver reads as the \
                 password: put the password in the url's user info{}",
                if read.is_empty() {
                    ""
                } else {
                    " or in `password=`"
                }
            )),
            None => Ok(()),
        }
    }

    /// The passwords the URL holds, as written and percent-decoded, to scrub from messages.
    pub(crate) fn scrubber(&self) -> Scrubber {
        let mut found = Vec::new();
        if let Ok(url) = url::Url::parse(self.expose()) {
            if let Some(info) = unparsed_userinfo(self.expose(), &url) {
                found.push(info.to_owned());
                if let Some((_, password)) = info.split_once(':') {
                    found.push(password.to_owned());
                }
            }
            if let Some(password) = url.password() {
                found.push(password.to_owned());
                if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                    found.push(decoded.into_owned());
                }
            }
            for (key, value) in url.query_pairs() {
                if is_password_key(&key) {
                    found.push(value.into_owned());
                }
            }
            // As written in the query too (query_pairs decodes).
            for pair in url.query().unwrap_or_default().split('&') {
                if let Some((key, value)) = pair.split_once('=')
                    && is_password_key(key)
                {
                    found.push(value.to_owned());
                }
            }
        }
        Scrubber::new(found)
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::DbUrl;

    #[test]
    fn passwords_never_survive_redaction() {
        let shown = |url: &str| DbUrl::new(url).redacted();
        assert_eq!(
            shown("postgres://korm:s3cret@db:5432/app"),
            "postgres://korm:***@db:5432/app"
        );
        assert_eq!(
            shown("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306/test"
        );
        assert_eq!(
            shown("postgres://u:p%40ss@h/d?sslmode=require&password=x"),
            "postgres://u:***@h/d?sslmode=require&password=***"
        );
        assert_eq!(shown("not a url s3cret"), "<url>");
        assert!(!shown("postgres://a:b:c@h/d").contains("b:c"));
        assert!(!format!("{:?}", DbUrl::new("postgres://u:s3cret@h/d")).contains("s3cret"));
        // A password written with an unencoded `#`, `?` or `/` cuts the authority short: the
        // parser finds no password, so the whole URL is hidden.
        for raw in [
            "mysql://korm:#S3cret@db:3306/docs",
            "postgres://app:123?pw-S3cret@db/app",
            "postgres://app:/S3cret@db/app",
            "mysql://u:a@b/S3cret@db/x",
        ] {
            assert_eq!(shown(raw), "<url>", "{raw}");
            let scrubbed = DbUrl::new(raw)
                .scrubber()
                .scrub(&format!("can not reach {raw}"));
            assert!(!scrubbed.contains("S3cret"), "{scrubbed}");
        }
    }

    #[test]
    fn password_parameters_the_driver_would_not_read_are_found() {
        let stray = |url: &str, read: &[&str]| DbUrl::new(url).stray_password_key(read);
        assert_eq!(stray("postgres://u@h/d?password=x", &["password"]), None);
        assert_eq!(
            stray("postgres://u@h/d?Password=x", &["password"]).as_deref(),
            Some("Password")
        );
        assert_eq!(
            stray("postgres://u@h/d?pass=x", &["password"]).as_deref(),
            Some("pass")
        );
        assert_eq!(
            stray("mysql://u@h/d?password=x", &[]).as_deref(),
            Some("password")
        );
        assert_eq!(stray("mysql://u:x@h/d?ssl-mode=disabled", &[]), None);
        assert_eq!(
            stray("postgres://u@h/d?sslpassword=x", &["password"]).as_deref(),
            Some("sslpassword")
        );
        assert_eq!(stray("postgres://u@h/d?passfile=/p", &["password"]), None);
    }

    #[test]
    fn an_at_sign_in_a_query_value_is_not_a_cut_password() {
        for legit in [
            "postgres:///app?host=/var/run/postgresql&user=alice@EXAMPLE.COM",
            "postgres://db/app?user=admin@srv",
            "postgres://%2Fvar%2Frun%2Fpostgresql/app",
            "mysql://u:p@db:3306/x",
        ] {
            assert!(!DbUrl::new(legit).cut_short(), "{legit}");
            assert_ne!(DbUrl::new(legit).redacted(), "<url>", "{legit}");
        }
        assert!(DbUrl::new("postgres://app:123?pw@db/app").cut_short());
    }

    #[test]
    fn secrets_are_found_as_written_and_decoded_and_scrubbed() {
        let scrubber = DbUrl::new("mysql://korm:p%40ss@db/x?password=other%21").scrubber();
        assert_eq!(
            scrubber.scrub("denied for p@ss, p%40ss, other! and other%21"),
            "denied for ***, ***, *** and ***"
        );
        let none = DbUrl::new("postgres://u@h/d").scrubber();
        assert_eq!(none.scrub("u@h"), "u@h");
        assert!(!format!("{scrubber:?}").contains("p@ss"));
    }
}
