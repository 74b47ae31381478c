//! What `drawbridge check` prints about a valid config: one screen, one line per part, in the
//! config's own words (`first_success`, `json`, `500 ms`), and a line for every section that is on.

use std::time::Duration;

pub(crate) mod json_log;
pub(crate) mod nofile;

use drawbridge::Config;
use drawbridge::config::LogTarget;

/// A duration as a config key would give it: `0 s`, `2 s`, `500 ms`, `1.5 s`.
fn time(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// Where a log goes: `stdout`, or its file.
fn target(t: &LogTarget) -> String {
    match t {
        LogTarget::Stdout => "stdout".to_owned(),
        LogTarget::File(path) => path.display().to_string(),
    }
}

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
            "timeouts    connect {}, response {}, header read {}, TLS handshake {}",
            time(config.upstream.connect_timeout),
            time(config.upstream.request_timeout),
            time(config.limits.header_read_timeout),
            time(config.limits.tls_handshake_timeout)
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
            "connections {} byte request heads, idle {}, HTTP/2 ping every {} (timeout {})",
            config.limits.max_request_head_bytes,
            time(config.limits.idle_timeout),
            time(config.limits.http2_keep_alive_interval),
            time(config.limits.http2_keep_alive_timeout)
        ),
        format!("shutdown    {} grace", time(config.shutdown.grace)),
        format!(
            "reload      on SIGHUP, or once a watched file is unchanged for {}",
            time(config.reload.settle)
        ),
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
            "cache       {} entries, allows up to {}, denials {}, stale-if-error {}",
            config.auth.cache.max_entries,
            time(config.auth.cache.max_ttl),
            time(config.auth.cache.negative_ttl),
            time(config.auth.cache.stale_if_error)
        ),
        format!(
            "sessions    {}, key {}, up to {}, iss {:?} aud {:?}",
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
            time(config.auth.session.max_ttl),
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
            "log         {} at {}",
            match config.log.format {
                drawbridge::config::LogFormat::Text => "text",
                drawbridge::config::LogFormat::Json => "json",
            },
            config.log.level
        ),
    ];
    for l in lines.into_iter().chain(optional_sections(config)) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// A line for each optional section that is on.
fn optional_sections(config: &Config) -> Vec<String> {
    let auth = &config.auth;
    let mut lines = Vec::new();
    let fa = &auth.forward_auth;
    lines.push(format!(
        "fwd auth    /auth/check, path from {}{}{}",
        fa.uri_from,
        fa.provider_tokens
            .as_ref()
            .map(|t| format!(", provider tokens for {} through {}", t.app, t.provider))
            .unwrap_or_default(),
        if fa.signin_url.is_some() {
            ", sign-in redirect"
        } else {
            ""
        }
    ));
    if let Some(code) = &auth.code_exchange {
        lines.push(format!(
            "native      POST /auth/token {{\"code\"}} logs in to {} through {}",
            code.app, code.provider
        ));
    }
    if !auth.cors_allowed_origins.is_empty() {
        lines.push(format!(
            "cors        {}",
            auth.cors_allowed_origins.join(", ")
        ));
    }
    if !auth.session.revalidate.is_zero() {
        lines.push(format!(
            "revalidate  open tunnels re-checked every {}",
            time(auth.session.revalidate)
        ));
    }
    if let Some(cluster) = &config.cluster {
        lines.push(format!(
            "cluster     {} (prefix {:?}){}{}",
            cluster.topology.shown(),
            cluster.key_prefix,
            if cluster.required {
                ", required for readiness"
            } else {
                ""
            },
            if cluster.shared_decisions {
                ", shared decisions"
            } else {
                ""
            }
        ));
    }
    if let Some(access) = &config.log.access {
        lines.push(format!("access log  {}", target(&access.target)));
    }
    if let Some(audit) = &config.audit {
        lines.push(format!("audit       {}", target(&audit.target)));
    }
    if let Some(tracing) = &config.tracing {
        lines.push(format!(
            "tracing     {} as {:?}, {} of traces",
            drawbridge::config::raw::shown_url(&tracing.otlp_endpoint),
            tracing.service_name,
            tracing.sample_ratio
        ));
    }
    lines
}
