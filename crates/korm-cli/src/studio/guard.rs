//! Who may use the studio: the person who ran it, holding the token it printed.
//!
//! Every request passes four checks, in order:
//! 1. the `Host` header names the studio itself (`127.0.0.1:PORT` or `localhost:PORT`), so a
//!    web page whose DNS name was rebound to 127.0.0.1 is refused;
//! 2. a GET carrying `token=TOKEN` gets the cookie and a redirect to the same URL without the
//!    token (so it leaves the address bar and the history); a wrong token is refused;
//! 3. any other request needs the cookie `korm_studio_PORT=TOKEN` (`HttpOnly`,
//!    `SameSite=Strict`; named after the port, since cookies are not kept apart by port and
//!    another studio or page on 127.0.0.1 is the same site);
//! 4. a request whose `Sec-Fetch-Site` is given must come from the studio itself or from the
//!    person (`same-origin`, `none`), and a POST whose `Origin` is given must be the
//!    studio's own (`Origin: null` is refused).
//!
//! Tokens are compared in constant time, and never printed but once, on stdout at start.

use std::fmt;

/// The cookie's name, before the port.
const COOKIE: &str = "korm_studio_";

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it.
    Pass,
    /// Set the cookie and send the browser to this URL (the request's, without the token).
    Enter(String),
    /// Refuse it (403), saying why.
    Refuse(&'static str),
}

/// The token and the address it guards.
pub(crate) struct Guard {
    token: String,
    port: u16,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("token", &"<redacted>")
            .field("port", &self.port)
            .finish()
    }
}

/// What the guard looks at in a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub(crate) post: bool,
    pub(crate) host: Option<&'a str>,
    pub(crate) origin: Option<&'a str>,
    pub(crate) fetch_site: Option<&'a str>,
    /// Every `Cookie` header's value.
    pub(crate) cookies: &'a [&'a str],
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
}

impl Guard {
    /// A guard with a fresh token of 32 random bytes (64 hex characters) for port `port`.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub(crate) fn new(port: u16) -> korm::Result<Guard> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| korm::Error::InvalidOption {
            option: "studio",
            reason: format!("no random token: the system's random source failed ({e})"),
        })?;
        Ok(Guard {
            token: hex::encode(bytes),
            port,
        })
    }

    #[cfg(test)]
    fn with_token(token: &str, port: u16) -> Guard {
        Guard {
            token: token.to_owned(),
            port,
        }
    }

    /// The URL to print: the one place the token is shown.
    pub(crate) fn entry_url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }

    /// The `Set-Cookie` value that lets a browser in.
    pub(crate) fn cookie(&self) -> String {
        format!(
            "{COOKIE}{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.port, self.token
        )
    }

    /// Whether `asked` may be served (see the module docs).
    pub(crate) fn check(&self, asked: Asked<'_>) -> Verdict {
        let own = |host: &str| {
            let port = self.port.to_string();
            match host.rsplit_once(':') {
                Some((name, p)) => {
                    p == port && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost"))
                }
                None => false,
            }
        };
        if !asked.host.is_some_and(own) {
            return Verdict::Refuse(
                "the Host header does not name this studio (127.0.0.1:PORT or localhost:PORT)",
            );
        }
        if let Some(site) = asked.fetch_site
            && site != "same-origin"
            && site != "none"
        {
            return Verdict::Refuse("the request comes from another site (Sec-Fetch-Site)");
        }
        if !asked.post {
            let mut given = None;
            let mut rest = Vec::new();
            for pair in asked.query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("token", value)) => given = Some(value),
                    _ if pair == "token" => given = Some(""),
                    _ => rest.push(pair),
                }
            }
            if let Some(given) = given {
                if !same(given.as_bytes(), self.token.as_bytes()) {
                    return Verdict::Refuse("the token is not this studio's");
                }
                // One leading slash: `//host/...` (or `/\host`) in a Location would leave the
                // studio.
                let mut to = format!("/{}", asked.path.trim_start_matches(['/', '\\']));
                if !rest.is_empty() {
                    to.push('?');
                    to.push_str(&rest.join("&"));
                }
                return Verdict::Enter(to);
            }
        }
        let holds_cookie = asked
            .cookies
            .iter()
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| {
                name.strip_prefix(COOKIE) == Some(&self.port.to_string())
                    && same(value.as_bytes(), self.token.as_bytes())
            });
        if !holds_cookie {
            return Verdict::Refuse(
                "no valid studio cookie: open the URL korm studio printed (with its token)",
            );
        }
        if asked.post
            && let Some(origin) = asked.origin
        {
            let ok = origin.strip_prefix("http://").is_some_and(own);
            if !ok {
                return Verdict::Refuse("the request comes from another site (Origin)");
            }
        }
        Verdict::Pass
    }
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

    fn asked<'a>(host: &'a str, cookies: &'a [&'a str], query: &'a str) -> Asked<'a> {
        Asked {
            post: false,
            host: Some(host),
            origin: None,
            fetch_site: None,
            cookies,
            path: "/collection",
            query,
        }
    }

    #[test]
    fn the_token_enters_once_then_the_cookie_does() {
        let guard = Guard::with_token(TOKEN, 4000);
        let query = format!("rn=x&token={TOKEN}&sort=-a");
        assert_eq!(
            guard.check(asked("127.0.0.1:4000", &[], &query)),
            Verdict::Enter("/collection?rn=x&sort=-a".into())
        );
        let cookie = format!("other=1; korm_studio_4000={TOKEN}");
        assert_eq!(
            guard.check(asked("localhost:4000", &[&cookie], "rn=x")),
            Verdict::Pass
        );
        assert!(matches!(
            guard.check(asked("127.0.0.1:4000", &[], "rn=x")),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            guard.check(asked("127.0.0.1:4000", &["korm_studio_4000=ab12"], "")),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            guard.check(asked("127.0.0.1:4000", &[], "token=ab12")),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn the_entry_redirect_never_leaves_the_studio() {
        let guard = Guard::with_token(TOKEN, 4000);
        for path in ["//evil.example/", "/\\evil.example/", "///evil.example/"] {
            let query = format!("token={TOKEN}");
            let verdict = guard.check(Asked {
                path,
                ..asked("127.0.0.1:4000", &[], &query)
            });
            assert_eq!(verdict, Verdict::Enter("/evil.example/".into()), "{path}");
        }
    }

    #[test]
    fn another_host_or_origin_is_refused() {
        let guard = Guard::with_token(TOKEN, 4000);
        let cookie = format!("korm_studio_4000={TOKEN}");
        for host in [
            "evil.example:4000",
            "127.0.0.1:4001",
            "127.0.0.1",
            "x127.0.0.1:4000",
        ] {
            assert!(
                matches!(guard.check(asked(host, &[&cookie], "")), Verdict::Refuse(_)),
                "{host}"
            );
        }
        let cookies = [cookie.as_str()];
        let post = |origin| Asked {
            post: true,
            origin,
            ..asked("127.0.0.1:4000", &cookies, "")
        };
        assert_eq!(guard.check(post(None)), Verdict::Pass);
        assert_eq!(
            guard.check(post(Some("http://localhost:4000"))),
            Verdict::Pass
        );
        assert!(matches!(
            guard.check(post(Some("http://evil.example"))),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            guard.check(post(Some("null"))),
            Verdict::Refuse(_)
        ));
        // The same token under another port's cookie name does not enter.
        let other_port = format!("korm_studio_4001={TOKEN}");
        assert!(matches!(
            guard.check(asked("127.0.0.1:4000", &[&other_port], "")),
            Verdict::Refuse(_)
        ));
        for (site, ok) in [
            ("same-origin", true),
            ("none", true),
            ("same-site", false),
            ("cross-site", false),
        ] {
            let verdict = guard.check(Asked {
                fetch_site: Some(site),
                ..asked("127.0.0.1:4000", &cookies, "")
            });
            assert_eq!(verdict == Verdict::Pass, ok, "{site}");
        }
        assert!(!format!("{guard:?}").contains(TOKEN));
    }
}
