//! What `drawbridge check` prints about a valid config: one screen, one line per part.

pub(crate) mod json_log;
pub(crate) mod nofile;

use drawbridge::Config;

/// A one-screen summary of `config` for `drawbridge check`.
pub(crate) fn summary(config: &Config) -> String {
    let mut out = String::new();
    let tls = match &config.tls {
        None => "off (plaintext)".to_owned(),
        Some(t) => format!(
            "cert {} key {}{}",
            t.cert_file.display(),
            t.key_file.display(),
            t.client_ca_file
                .as_ref()
                .map(|ca| format!(", client certificates required (CA {})", ca.display()))
                .unwrap_or_default()
        ),
    };
    let lines = [
        format!("listen      {}", config.listen.addr),
        format!("tls         {tls}"),
        format!("admin       {}", config.admin.addr),
        format!(
            "upstream    {}://{}",
            config.upstream.scheme, config.upstream.authority
        ),
        format!(
            "public ws   {}",
            if config.upstream.public_upgrade_paths.is_empty() {
                "none (every websocket upgrade needs a session)".to_owned()
            } else {
                config.upstream.public_upgrade_paths.join(", ")
            }
        ),
        format!(
            "timeouts    connect {:?}, response {:?}, header read {:?}, TLS handshake {:?}",
            config.upstream.connect_timeout,
            config.upstream.request_timeout,
            config.limits.header_read_timeout,
            config.limits.tls_handshake_timeout
        ),
        format!(
            "limits      {} connections, {} byte request bodies",
            config.limits.max_connections, config.limits.max_request_body_bytes
        ),
        format!(
            "clients     addressed by {}{}; at most {} connections each",
            if config.listen.proxy_protocol {
                "the PROXY protocol header"
            } else {
                "the TCP peer"
            },
            if config.listen.trusted_proxies.is_empty() {
                String::new()
            } else {
                format!(
                    ", X-Forwarded-For believed from {} (exempt from the cap)",
                    config.listen.trusted_proxies
                )
            },
            config.limits.max_connections_per_client
        ),
        format!(
            "connections {} byte request heads, idle {:?}, HTTP/2 ping every {:?} (timeout {:?})",
            config.limits.max_request_head_bytes,
            config.limits.idle_timeout,
            config.limits.http2_keep_alive_interval,
            config.limits.http2_keep_alive_timeout
        ),
        format!("shutdown    {:?} grace", config.shutdown.grace),
        format!("providers   {}", config.auth.providers_summary()),
        format!(
            "apps        {}",
            match &config.auth.apps {
                None => "any app".to_owned(),
                Some(apps) => apps
                    .iter()
                    .map(|(app, p)| format!("{app} -> {}", p.join("/")))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        ),
        format!(
            "cache       {} entries, allows up to {:?}, denials {:?}, stale-if-error {:?}",
            config.auth.cache.max_entries,
            config.auth.cache.max_ttl,
            config.auth.cache.negative_ttl,
            config.auth.cache.stale_if_error
        ),
        format!(
            "sessions    {}, key {}, up to {:?}, iss {:?} aud {:?}",
            config
                .auth
                .session
                .algorithm
                .map_or("from the key".to_owned(), |a| format!("{a:?}")),
            config
                .auth
                .session
                .key_file
                .as_ref()
                .map_or("ephemeral (set session.key_file)".to_owned(), |k| k
                    .display()
                    .to_string()),
            config.auth.session.max_ttl,
            config.auth.session.issuer,
            config.auth.session.audience
        ),
        format!(
            "ditto door  {}",
            if config.ditto.enabled {
                format!(
                    "{}/_ditto/auth/*, {}/_ditto/ws {}",
                    config.ditto.path_prefix,
                    config.ditto.path_prefix,
                    if config.ditto.require_known_token {
                        "needs a known token"
                    } else {
                        "relayed"
                    }
                )
            } else {
                "off".to_owned()
            }
        ),
        format!("aggregator  {}", config.auth.aggregator.summary()),
        format!(
            "rate limit  {}",
            config.auth.rate_limit.map_or("off".to_owned(), |r| format!(
                "{}/s, burst {}, per client IP",
                r.per_second, r.burst
            ))
        ),
        format!(
            "log         {:?} at {}",
            config.log.format, config.log.level
        ),
    ];
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}
