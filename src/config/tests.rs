use std::collections::HashMap;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, &HashMap::new())
}

fn lines(text: &str) -> Vec<String> {
    parse(text).expect_err("config should be rejected").lines()
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse("[upstream]\nurl = \"http://127.0.0.1:8080\"\n").unwrap();
    assert_eq!(c.listen.addr, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(c.admin.addr, "127.0.0.1:9090".parse().unwrap());
    assert!(c.upstream.public_upgrade_paths.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.limits.max_request_body_bytes, 10 * 1024 * 1024);
    assert_eq!(c.shutdown.grace, Duration::from_secs(25));
    let tls = c.tls.expect("TLS is on by default");
    assert_eq!(tls.cert_file, PathBuf::from("tls.crt"));
}

#[test]
fn unknown_field_names_its_key_path() {
    let l = lines("[listen]\nbogus_key = 1\n[upstream]\nurl = \"http://a:1\"\n");
    assert_eq!(l.len(), 1);
    assert!(l[0].starts_with("listen.bogus_key: unknown field"), "{l:?}");
}

#[test]
fn unknown_table_names_its_key() {
    let l = lines("[upstreams]\nurl = \"http://a:1\"\n");
    assert!(l[0].starts_with("upstreams: unknown field"), "{l:?}");
}

#[test]
fn missing_upstream_url_is_named() {
    assert_eq!(
        lines("[listen]\naddr = \"127.0.0.1:1\"\n"),
        ["upstream.url: missing"]
    );
}

#[test]
fn wrong_type_names_its_key_path() {
    let l = lines("[upstream]\nurl = \"http://a:1\"\nconnect_timeout_ms = \"fast\"\n");
    assert!(l[0].starts_with("upstream.connect_timeout_ms: "), "{l:?}");
}

#[test]
fn every_value_problem_is_listed() {
    let l = lines(
        "[listen]\naddr = \"nowhere\"\n[upstream]\nurl = \"ftp://a\"\nconnect_timeout_ms = 0\n[log]\nlevel = \"=\"\n",
    );
    assert!(l.iter().any(|x| x.starts_with("listen.addr: ")), "{l:?}");
    assert!(
        l.iter().any(|x| x.starts_with("upstream.url: scheme")),
        "{l:?}"
    );
    assert!(
        l.iter()
            .any(|x| x.starts_with("upstream.connect_timeout_ms: ")),
        "{l:?}"
    );
    assert!(l.iter().any(|x| x.starts_with("log.level: ")), "{l:?}");
}

#[test]
fn bad_enum_value_names_its_key_path() {
    let l = lines("[upstream]\nurl = \"http://a:1\"\n[log]\nformat = \"xml\"\n");
    assert!(l[0].starts_with("log.format: unknown variant"), "{l:?}");
}

#[test]
fn env_reference_is_resolved() {
    let env = HashMap::from([("UP".to_owned(), "http://10.0.0.1:9000".to_owned())]);
    let c = Config::from_toml("[upstream]\nurl = \"${env:UP}\"\n", &env).unwrap();
    assert_eq!(c.upstream.authority.as_str(), "10.0.0.1:9000");
}

#[test]
fn missing_env_reference_is_named_without_value() {
    let l = lines("[upstream]\nurl = \"${env:NOPE_NOT_SET}\"\n");
    assert_eq!(
        l,
        ["upstream.url: environment variable NOPE_NOT_SET is not set"]
    );
}

#[test]
fn file_reference_is_resolved_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("url");
    std::fs::write(&f, "http://127.0.0.1:7000\n").unwrap();
    let text = format!("[upstream]\nurl = \"${{file:{}}}\"\n", f.display());
    assert_eq!(
        parse(&text).unwrap().upstream.authority.as_str(),
        "127.0.0.1:7000"
    );
}

#[test]
fn upstream_url_with_path_is_rejected() {
    let l = lines("[upstream]\nurl = \"http://a:1/base\"\n");
    assert!(
        l[0].starts_with("upstream.url: must not have a path"),
        "{l:?}"
    );
}

#[test]
fn plaintext_with_client_ca_is_rejected() {
    let l = lines(
        "[listen]\nplaintext = true\n[tls]\nclient_ca_file = \"ca.pem\"\n[upstream]\nurl = \"http://a:1\"\n",
    );
    assert!(l[0].starts_with("tls.client_ca_file: "), "{l:?}");
}

#[test]
fn syntax_error_is_one_line_with_position() {
    let e = parse("[upstream\nurl = 1").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax(_)));
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn aggregator_is_disabled_unless_signed_or_explicitly_unsigned() {
    use auth::AggregatorAccess;
    let up = "[upstream]\nurl = \"http://a:1\"\n";
    let access = |extra: &str| parse(&format!("{up}{extra}")).unwrap().auth.aggregator;

    let default = access("");
    assert_eq!(default.access, AggregatorAccess::Disabled);
    assert!(default.warnings().is_empty());
    assert!(default.summary().contains("aggregator.signing_secret"));

    let signed = access("[aggregator]\nsigning_secret = \"c2VjcmV0\"\n");
    assert_eq!(signed.access, AggregatorAccess::Signed(b"secret".to_vec()));
    assert!(signed.warnings().is_empty());
    assert!(
        !format!("{signed:?}").contains("115, 101"),
        "the key leaks through Debug"
    );

    let unsigned = access("[aggregator]\nallow_unsigned = true\n");
    assert_eq!(unsigned.access, AggregatorAccess::Unsigned);
    assert_eq!(unsigned.warnings().len(), 1);
    assert_eq!(unsigned.warnings()[0].path, "aggregator.allow_unsigned");
}

#[test]
fn aggregator_secret_with_allow_unsigned_or_bad_base64_is_rejected() {
    let l = lines(
        "[upstream]\nurl = \"http://a:1\"\n[aggregator]\nsigning_secret = \"c2VjcmV0\"\nallow_unsigned = true\n",
    );
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("aggregator.allow_unsigned: "), "{l:?}");
    for bad in ["\"\"", "\"%%%\""] {
        let l = lines(&format!(
            "[upstream]\nurl = \"http://a:1\"\n[aggregator]\nsigning_secret = {bad}\n"
        ));
        assert_eq!(l, ["aggregator.signing_secret: must be non-empty base64"]);
    }
}

#[test]
fn connection_limits_get_defaults() {
    let c = parse("[upstream]\nurl = \"http://127.0.0.1:8080\"\n").unwrap();
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.max_request_head_bytes, 32 * 1024);
    assert_eq!(c.limits.http2_keep_alive_interval, Duration::from_secs(30));
    assert_eq!(c.limits.http2_keep_alive_timeout, Duration::from_secs(20));
}

#[test]
fn connection_limits_out_of_range_are_each_named() {
    let l = lines(
        "[upstream]\nurl = \"http://a:1\"\n[limits]\nidle_timeout_ms = 0\nmax_request_head_bytes = 100\n\
         http2_keep_alive_interval_ms = 0\nhttp2_keep_alive_timeout_ms = 3600001\n",
    );
    for key in [
        "limits.idle_timeout_ms: must be greater than 0",
        "limits.max_request_head_bytes: must be between 8192 and 1048576",
        "limits.http2_keep_alive_interval_ms: must be greater than 0",
        "limits.http2_keep_alive_timeout_ms: must be at most 3600000",
    ] {
        assert!(l.iter().any(|x| x.starts_with(key)), "{key} missing: {l:?}");
    }
    assert_eq!(l.len(), 4, "{l:?}");
}

#[test]
fn connection_limits_upper_bounds_are_enforced() {
    for (key, value) in [
        ("idle_timeout_ms", "86400001"),
        ("max_request_head_bytes", "1048577"),
        ("http2_keep_alive_interval_ms", "3600001"),
    ] {
        let l = lines(&format!(
            "[upstream]\nurl = \"http://a:1\"\n[limits]\n{key} = {value}\n"
        ));
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with(&format!("limits.{key}: must ")), "{l:?}");
    }
    let ok = parse(
        "[upstream]\nurl = \"http://a:1\"\n[limits]\nidle_timeout_ms = 86400000\n\
         max_request_head_bytes = 8192\nhttp2_keep_alive_interval_ms = 1\n",
    );
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.lines()));
}

#[test]
fn negative_request_head_limit_names_its_key_path() {
    let l = lines("[upstream]\nurl = \"http://a:1\"\n[limits]\nmax_request_head_bytes = -1\n");
    assert!(l[0].starts_with("limits.max_request_head_bytes: "), "{l:?}");
}

#[test]
fn public_upgrade_paths_must_be_canonical_prefixes() {
    let c = parse("[upstream]\nurl = \"http://a:1\"\npublic_upgrade_paths = [\"/public\", \"/status/ws/\", \"/a%3Fb\"]\n")
        .unwrap();
    assert_eq!(
        c.upstream.public_upgrade_paths,
        ["/public", "/status/ws/", "/a%3Fb"]
    );
    for (entry, why) in [
        ("public", "must start with /"),
        ("", "must start with /"),
        ("/", "/ would leave no websocket path gated"),
        ("//", "/ would leave no websocket path gated"),
        ("//public", "must be canonical"),
        ("/a/../public", "must be canonical"),
        ("/./public", "must be canonical"),
        ("/%70ublic", "must be canonical"),
        ("/a%3fb", "must be canonical"),
        ("/a%2Fb", "must be canonical"),
        ("/a\\\\b", "must be canonical"),
        ("/public?x=1", "must be a path only"),
    ] {
        let l = lines(&format!(
            "[upstream]\nurl = \"http://a:1\"\npublic_upgrade_paths = [\"/ok\", {entry:?}]\n"
        ));
        assert_eq!(l.len(), 1, "{entry:?}: {l:?}");
        assert!(
            l[0].starts_with(&format!("upstream.public_upgrade_paths.1: {why}")),
            "{entry:?}: {l:?}"
        );
    }
}

#[test]
fn sync_paths_still_loads_with_a_migration_warning() {
    let c = parse("[upstream]\nurl = \"http://a:1\"\nsync_paths = [\"/sync\", \"/_ditto/ws\"]\n")
        .unwrap();
    assert!(c.upstream.public_upgrade_paths.is_empty());
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = c.warnings[0].to_string();
    assert!(w.starts_with("upstream.sync_paths: "), "{w}");
    assert!(w.contains("upstream.public_upgrade_paths"), "{w}");
    assert!(
        w.contains("every websocket upgrade now needs a session"),
        "{w}"
    );
}

#[test]
fn public_ditto_websocket_without_known_token_is_warned_about() {
    let base = "[upstream]\nurl = \"http://a:1\"\n";
    for (upstream, ditto, warned) in [
        (
            "public_upgrade_paths = [\"/_ditto/ws\"]",
            "enabled = true",
            true,
        ),
        (
            "public_upgrade_paths = [\"/gw\"]",
            "enabled = true\npath_prefix = \"/gw\"",
            true,
        ),
        (
            "public_upgrade_paths = [\"/_ditto\"]",
            "enabled = true",
            true,
        ),
        (
            "public_upgrade_paths = [\"/_ditto/ws\"]",
            "enabled = true\nrequire_known_token = true",
            false,
        ),
        (
            "public_upgrade_paths = [\"/_ditto/wsx\"]",
            "enabled = true",
            false,
        ),
        (
            "public_upgrade_paths = [\"/_ditto/ws\"]",
            "enabled = false",
            false,
        ),
        ("", "enabled = true", false),
    ] {
        let c = parse(&format!("{base}{upstream}\n[ditto]\n{ditto}\n")).unwrap();
        let hit = c.warnings.iter().any(|w| {
            w.path == "upstream.public_upgrade_paths"
                && w.message.contains("ditto.require_known_token")
        });
        assert_eq!(hit, warned, "{upstream} / {ditto}: {:?}", c.warnings);
    }
}

#[test]
fn ditto_path_prefix_must_be_canonical() {
    for prefix in ["/gw", "/gw/", "/a/b", "/gw%3B"] {
        let c = parse(&format!(
            "[upstream]\nurl = \"http://a:1\"\n[ditto]\nenabled = true\npath_prefix = {prefix:?}\n"
        ));
        assert!(c.is_ok(), "{prefix}: {c:?}");
    }
    for prefix in [
        "//gw", "/a//b", "/./gw", "/a/../gw", "/%67w", "/gw%2F", "/gw%3b",
    ] {
        let l = lines(&format!(
            "[upstream]\nurl = \"http://a:1\"\n[ditto]\nenabled = true\npath_prefix = {prefix:?}\n"
        ));
        assert_eq!(l.len(), 1, "{prefix}: {l:?}");
        assert!(l[0].starts_with("ditto.path_prefix: "), "{prefix}: {l:?}");
    }
}

#[test]
fn audit_and_access_log_are_off_by_default() {
    let c = parse("[upstream]\nurl = \"http://127.0.0.1:8080\"\n").unwrap();
    assert_eq!(c.audit, None);
    assert_eq!(c.log.access, None);
}

#[test]
fn audit_path_dash_is_stdout_and_access_defaults_to_stdout() {
    let c =
        parse("[upstream]\nurl = \"http://a:1\"\n[audit]\npath = \"-\"\n[log]\naccess = true\n")
            .unwrap();
    let audit = c.audit.unwrap();
    assert_eq!(audit.target, LogTarget::Stdout);
    assert_eq!(audit.queue_lines, raw::DEFAULT_LOG_QUEUE_LINES);
    assert_eq!(c.log.access.unwrap().target, LogTarget::Stdout);
    let c =
        parse("[upstream]\nurl = \"http://a:1\"\n[audit]\npath = \"/var/log/a.log\"\n").unwrap();
    assert_eq!(
        c.audit.unwrap().target,
        LogTarget::File(PathBuf::from("/var/log/a.log"))
    );
}

#[test]
fn bad_audit_and_access_settings_are_named() {
    let l = lines(
        "[upstream]\nurl = \"http://a:1\"\n[audit]\npath = \" \"\nqueue_lines = 0\n\
         [log]\naccess = true\naccess_queue_lines = 0\n",
    );
    assert!(l.iter().any(|l| l.starts_with("audit.path:")), "{l:?}");
    assert!(
        l.iter().any(|l| l.starts_with("audit.queue_lines:")),
        "{l:?}"
    );
    assert!(
        l.iter().any(|l| l.starts_with("log.access_queue_lines:")),
        "{l:?}"
    );
}

#[test]
fn tracing_is_off_by_default_and_takes_its_defaults() {
    let c = parse("[upstream]\nurl = \"http://a:1\"\n").unwrap();
    assert_eq!(c.tracing, None);
    let c = parse(
        "[upstream]\nurl = \"http://a:1\"\n[tracing]\notlp_endpoint = \"http://otel:4318\"\n",
    )
    .unwrap();
    let t = c.tracing.unwrap();
    assert_eq!(t.otlp_endpoint, "http://otel:4318");
    assert!((t.sample_ratio - 1.0).abs() < f64::EPSILON);
    assert_eq!(t.service_name, "drawbridge");
    assert_eq!(t.export_timeout, Duration::from_secs(10));
}

#[test]
fn bad_tracing_settings_are_named() {
    let l = lines(
        "[upstream]\nurl = \"http://a:1\"\n[tracing]\notlp_endpoint = \"otel:4318\"\n\
         sample_ratio = 1.5\nservice_name = \"\"\n",
    );
    for key in [
        "tracing.otlp_endpoint:",
        "tracing.sample_ratio:",
        "tracing.service_name:",
    ] {
        assert!(l.iter().any(|l| l.starts_with(key)), "{key} {l:?}");
    }
}

#[test]
fn session_revalidate_defaults_off_and_is_bounded() {
    let c = parse("[upstream]\nurl = \"http://a:1\"\n").unwrap();
    assert!(c.auth.session.revalidate.is_zero());
    let c =
        parse("[upstream]\nurl = \"http://a:1\"\n[session]\nrevalidate_seconds = 60\n").unwrap();
    assert_eq!(c.auth.session.revalidate, Duration::from_secs(60));
    let l = lines("[upstream]\nurl = \"http://a:1\"\n[session]\nrevalidate_seconds = 86401\n");
    assert!(
        l.iter().any(|l| l.contains("session.revalidate_seconds")),
        "{l:?}"
    );
}

#[test]
fn session_token_signing_defaults_to_hmac_and_names_its_choices() {
    use crate::config::auth::TokenSigning;
    let c = parse("[upstream]\nurl = \"http://a:1\"\n").unwrap();
    assert_eq!(c.auth.session.token_signing, TokenSigning::Hmac);
    let c =
        parse("[upstream]\nurl = \"http://a:1\"\n[session]\ntoken_signing = \"key\"\n").unwrap();
    assert_eq!(c.auth.session.token_signing, TokenSigning::Key);
    let l = lines("[upstream]\nurl = \"http://a:1\"\n[session]\ntoken_signing = \"rsa\"\n");
    assert!(
        l.iter()
            .any(|l| l.contains("session.token_signing") && l.contains("\"hmac\"")),
        "{l:?}"
    );
}

#[test]
fn listen_backlog_defaults_to_4096_and_is_bounded() {
    let c = parse("[upstream]\nurl = \"http://a:1\"\n").unwrap();
    assert_eq!(c.listen.backlog, 4096);
    for bad in ["0", "65536"] {
        let l = lines(&format!(
            "[upstream]\nurl = \"http://a:1\"\n[listen]\nbacklog = {bad}\n"
        ));
        assert!(
            l.iter().any(|l| l.contains("listen.backlog")),
            "{bad}: {l:?}"
        );
    }
    let b = parse("[upstream]\nurl = \"http://a:1\"\n[listen]\nbacklog = 512\n").unwrap();
    assert_eq!(c.restart_changes(&b), vec!["listen.backlog"]);
}

#[test]
fn restart_changes_name_only_what_a_reload_cannot_apply() {
    let base = "[upstream]\nurl = \"http://a:1\"\n";
    let a = parse(base).unwrap();
    let b = parse(&format!(
        "{base}[listen]\naddr = \"0.0.0.0:9443\"\nplaintext = true\n[rate_limit]\nenabled = true\n"
    ));
    let b = b.unwrap();
    assert_eq!(a.restart_changes(&b), vec!["listen.addr", "tls"]);
    assert!(a.restart_changes(&a).is_empty());
    let c = parse(&format!(
        "{base}[audit]\npath = \"-\"\n[cluster]\nredis_url = \"redis://r:6379\"\n[log]\naccess = true\n{SESSION_KEY}"
    ))
    .unwrap();
    assert_eq!(
        a.restart_changes(&c),
        vec!["log.access", "audit", "cluster"]
    );
}

const UPSTREAM: &str = "[upstream]\nurl = \"http://127.0.0.1:8080\"\n";
/// A shared session key, which `[cluster]` needs (the file is read at start, not by the config).
const SESSION_KEY: &str = "[session]\nkey_file = \"/etc/drawbridge/session.key\"\n";

#[test]
fn cluster_with_an_ephemeral_session_key_is_refused_naming_key_file() {
    let l = lines(&format!(
        "{UPSTREAM}[cluster]\nredis_url = \"redis://r:6379\"\n"
    ));
    assert!(
        l.iter()
            .any(|x| x.starts_with("session.key_file: required with [cluster]")),
        "{l:?}"
    );
    let c = parse(&format!(
        "{UPSTREAM}{SESSION_KEY}[cluster]\nredis_url = \"redis://r:6379\"\n"
    ))
    .unwrap();
    assert!(c.cluster.is_some());
}

#[test]
fn cluster_absent_keeps_everything_local() {
    assert!(parse(UPSTREAM).unwrap().cluster.is_none());
}

#[test]
fn cluster_gets_defaults_and_hides_its_password() {
    let mut env = HashMap::new();
    env.insert("REDIS_PW".to_owned(), "s3cret-pw".to_owned());
    let text = format!(
        "{UPSTREAM}{SESSION_KEY}[cluster]\nredis_url = \"rediss://u:inline-pw@redis:6380/1\"\npassword = \"${{env:REDIS_PW}}\"\n"
    );
    let c = Config::from_toml(&text, &env).unwrap().cluster.unwrap();
    assert_eq!(c.password.as_deref(), Some("s3cret-pw"));
    assert_eq!(c.key_prefix, "drawbridge:");
    assert_eq!(c.connect_timeout, Duration::from_secs(1));
    assert_eq!(c.command_timeout, Duration::from_millis(500));
    assert_eq!(c.resync_interval, Duration::from_secs(5));
    assert!(!c.required);
    assert!(c.shared_decisions);
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("s3cret-pw") && !debug.contains("inline-pw"),
        "{debug}"
    );
    assert!(
        debug.contains("rediss://<redacted>@redis:6380/1"),
        "{debug}"
    );
}

#[test]
fn cluster_bad_values_name_their_keys() {
    let l = lines(&format!(
        "{UPSTREAM}[cluster]\nredis_url = \"http://redis:6379\"\nresync_interval_ms = 0\ncommand_timeout_ms = 0\nusername = \"u\"\n"
    ));
    for key in [
        "cluster.redis_url",
        "cluster.resync_interval_ms",
        "cluster.command_timeout_ms",
        "cluster.username",
    ] {
        assert!(l.iter().any(|x| x.contains(key)), "{key} in {l:?}");
    }
    let l = lines(&format!("{UPSTREAM}[cluster]\nkey_prefix = \"a\"\n"));
    assert!(l.iter().any(|x| x.contains("cluster.redis_url")), "{l:?}");
    let l = lines(&format!(
        "{UPSTREAM}[cluster]\nredis_url = \"redis://r\"\nbogus = 1\n"
    ));
    assert!(l.iter().any(|x| x.contains("bogus")), "{l:?}");
}

#[test]
fn forward_auth_is_off_without_its_section() {
    let c = parse("[upstream]\nurl = \"http://a:1\"\n").unwrap();
    assert!(c.auth.forward_auth.signin_url.is_none());
    assert!(c.auth.forward_auth.provider_tokens.is_none());
}

#[test]
fn forward_auth_provider_tokens_name_a_configured_provider_and_app() {
    let base = "[upstream]\nurl = \"http://a:1\"\n[providers.demo]\nkind = \"webhook\"\nurl = \"https://hook.example/\"\n";
    let c = parse(&format!(
        "{base}[forward_auth]\naccept_provider_tokens = true\napp = \"app\"\nprovider = \"demo\"\nsignin_url = \"https://login.example/\"\n"
    ))
    .unwrap();
    let tokens = c.auth.forward_auth.provider_tokens.unwrap();
    assert_eq!(
        (tokens.app.as_str(), tokens.provider.as_str()),
        ("app", "demo")
    );
    assert_eq!(
        c.auth.forward_auth.signin_url.unwrap(),
        "https://login.example/"
    );
    assert!(parse(&format!("{base}[forward_auth]\nsignin_url = \"/login\"\n")).is_ok());

    for (section, key) in [
        (
            "accept_provider_tokens = true\napp = \"app\"",
            "forward_auth.accept_provider_tokens",
        ),
        (
            "accept_provider_tokens = true\nprovider = \"demo\"",
            "forward_auth.accept_provider_tokens",
        ),
        (
            "accept_provider_tokens = true\napp = \"app\"\nprovider = \"nope\"",
            "forward_auth.provider",
        ),
        ("signin_url = \"ftp://x/\"", "forward_auth.signin_url"),
        (
            "signin_url = \"//evil.example/\"",
            "forward_auth.signin_url",
        ),
        ("signin_url = \"login\"", "forward_auth.signin_url"),
        ("signin_url = \"https://a/\\n\"", "forward_auth.signin_url"),
    ] {
        let l = lines(&format!("{base}[forward_auth]\n{section}\n"));
        assert_eq!(l.len(), 1, "{section}: {l:?}");
        assert!(l[0].starts_with(&format!("{key}: ")), "{section}: {l:?}");
    }
    let l = lines(&format!(
        "{base}[apps.other]\nproviders = [\"demo\"]\n[forward_auth]\naccept_provider_tokens = true\napp = \"app\"\nprovider = \"demo\"\n"
    ));
    assert!(l[0].starts_with("forward_auth.app: "), "{l:?}");
}

#[test]
fn token_field_is_session_token_unless_token_and_refuses_other_names() {
    use crate::config::auth::TokenField;
    let base = "[upstream]\nurl = \"http://a:1\"\n";
    assert_eq!(
        parse(base).unwrap().auth.token_field,
        TokenField::SessionToken
    );
    for (name, field) in [
        ("sessionToken", TokenField::SessionToken),
        ("token", TokenField::Token),
    ] {
        let c = parse(&format!("{base}[native]\ntoken_field = \"{name}\"\n")).unwrap();
        assert_eq!(c.auth.token_field, field, "{name}");
    }
    for bad in ["session_token", "Token", ""] {
        let l = lines(&format!("{base}[native]\ntoken_field = \"{bad}\"\n"));
        assert_eq!(l.len(), 1, "{bad}: {l:?}");
        assert!(l[0].starts_with("native.token_field: "), "{bad}: {l:?}");
    }
}

#[test]
fn code_exchange_is_off_without_native_and_names_a_provider_when_on() {
    let base = "[upstream]\nurl = \"http://a:1\"\n[providers.auth0]\nkind = \"webhook\"\nurl = \"https://hook.example/\"\n";
    assert!(parse(base).unwrap().auth.code_exchange.is_none());
    let c = parse(&format!(
        "{base}[native]\ncode_provider = \"auth0\"\ncode_app = \"todo\"\n"
    ))
    .unwrap();
    let exchange = c.auth.code_exchange.unwrap();
    assert_eq!(
        (exchange.app.as_str(), exchange.provider.as_str()),
        ("todo", "auth0")
    );
    for (section, key) in [
        ("code_provider = \"auth0\"", "native.code_provider"),
        ("code_app = \"todo\"", "native.code_provider"),
        (
            "code_provider = \"nope\"\ncode_app = \"todo\"",
            "native.code_provider",
        ),
        (
            "code_provider = \"auth0\"\ncode_app = \"todo\"\nbogus = 1",
            "native.bogus",
        ),
    ] {
        let l = lines(&format!("{base}[native]\n{section}\n"));
        assert_eq!(l.len(), 1, "{section}: {l:?}");
        assert!(l[0].starts_with(&format!("{key}: ")), "{section}: {l:?}");
    }
    let l = lines(&format!(
        "{base}[apps.other]\nproviders = [\"auth0\"]\n[native]\ncode_provider = \"auth0\"\ncode_app = \"todo\"\n"
    ));
    assert!(l[0].starts_with("native.code_app: "), "{l:?}");
}

#[test]
fn jwt_profile_claims_default_to_openid_connect_names() {
    let jwt = "[upstream]\nurl = \"http://a:1\"\n[providers.oidc]\nkind = \"jwt\"\nissuer = \"https://i/\"\naudiences = [\"a\"]\njwks_url = \"https://i/jwks\"\n";
    let profile = |c: &Config| match &c.auth.providers["oidc"] {
        auth::ProviderConfig::Jwt(j) => j.profile_claims.clone(),
        other => panic!("{other:?}"),
    };
    let p = profile(&parse(jwt).unwrap());
    assert_eq!(
        (p.email.as_str(), p.displayname.as_str(), p.image.as_str()),
        ("email", "name", "picture")
    );
    let p = profile(
        &parse(&format!(
            "{jwt}[providers.oidc.profile_claims]\nemail = \"mail\"\nimage = \"\"\n"
        ))
        .unwrap(),
    );
    assert_eq!(
        (p.email.as_str(), p.displayname.as_str(), p.image.as_str()),
        ("mail", "name", "")
    );
    let l = lines(&format!(
        "{jwt}[providers.oidc.profile_claims]\nphone = \"x\"\n"
    ));
    // The provider kind is an internally tagged enum: serde's path stops at the provider.
    assert!(
        l[0].starts_with("providers.oidc") && l[0].contains("phone: unknown field"),
        "{l:?}"
    );
}

#[test]
fn forward_auth_uri_from_names_the_path_or_one_header() {
    use crate::config::auth::UriSource;
    let base = "[upstream]\nurl = \"http://127.0.0.1:1\"\n";
    let c = parse(base).unwrap();
    assert_eq!(c.auth.forward_auth.uri_from, UriSource::Path, "default");
    for (value, want) in [
        ("path", "path"),
        ("header:x-forwarded-uri", "header:x-forwarded-uri"),
        ("header:X-Original-URL", "header:x-original-url"),
    ] {
        let c = parse(&format!("{base}[forward_auth]\nuri_from = \"{value}\"\n")).unwrap();
        assert_eq!(c.auth.forward_auth.uri_from.to_string(), want);
    }
    for bad in [
        "",
        "Path",
        "header:",
        "header:bad name",
        "x-original-uri",
        "header:host",
        "header:cookie",
        "header:authorization",
    ] {
        let l = lines(&format!("{base}[forward_auth]\nuri_from = \"{bad}\"\n"));
        assert!(
            l.len() == 1 && l[0].starts_with("forward_auth.uri_from: "),
            "{bad:?}: {l:?}"
        );
    }
}

#[test]
fn config_keys_list_every_table_with_its_defaults() {
    let keys = keys::config_keys();
    let default = |k: &str| {
        keys.iter()
            .find(|c| c.key == k)
            .unwrap_or_else(|| panic!("{k} missing"))
            .default
            .clone()
    };
    assert_eq!(default("limits.idle_timeout_ms"), 60_000);
    assert_eq!(default("listen.backlog"), 4096);
    assert_eq!(default("session.token_signing"), "hmac");
    assert_eq!(default("session.key_file"), serde_json::Value::Null);
    assert_eq!(default("cluster.command_timeout_ms"), 500);
    assert_eq!(default("providers.<name>.kind"), serde_json::Value::Null);
    assert!(!keys.iter().any(|k| k.key == "providers.<jwt>.kind"));
    assert_eq!(default("providers.<webhook>.timeout_ms"), 2_000);
    assert_eq!(default("providers.<jwt>.profile_claims.email"), "email");
    assert_eq!(default("providers.<group>.fallthrough_on_error"), false);
    assert_eq!(default("apps.<appID>.providers"), serde_json::json!([]));
    assert_eq!(default("log.format"), "text");
    // A table that is empty by default is one key, not none.
    assert_eq!(
        default("providers.<webhook>.headers"),
        serde_json::json!({})
    );
    // Every plain key (not of a named table) reads back under its own name.
    for k in keys.iter().filter(|k| !k.key.contains('<')) {
        let (section, key) = k.key.split_once('.').unwrap();
        if k.default.is_null() || matches!(section, "upstream" | "session") {
            // No value to write; or the table the minimal file already opens.
            continue;
        }
        let mut table = toml::Table::new();
        table.insert(key.to_owned(), toml::Value::try_from(&k.default).unwrap());
        let mut doc = toml::Table::new();
        doc.insert(section.to_owned(), toml::Value::Table(table));
        if let Err(e) = Config::from_toml(&format!("{UPSTREAM}{SESSION_KEY}{doc}"), &SkipFiles) {
            let l = e.lines();
            assert!(
                !l.iter().any(|l| l.contains("unknown field")),
                "{}: {l:?}",
                k.key
            );
        }
    }
}

#[test]
fn client_address_keys_default_off_and_parse_cidrs_and_addresses() {
    let c = parse("[upstream]\nurl = \"http://a:1\"\n").unwrap();
    assert!(!c.listen.proxy_protocol);
    assert!(c.listen.trusted_proxies.is_empty());
    assert_eq!(c.limits.max_connections_per_client, 256);
    let c = parse(
        "[listen]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\"]\n\
         [limits]\nmax_connections_per_client = 4\n[upstream]\nurl = \"http://a:1\"\n",
    )
    .unwrap();
    assert!(c.listen.proxy_protocol);
    assert_eq!(c.limits.max_connections_per_client, 4);
    let t = &c.listen.trusted_proxies;
    for ip in ["10.200.1.1", "192.0.2.7", "fd00::1", "::ffff:10.0.0.1"] {
        assert!(t.contains(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["192.0.2.8", "11.0.0.1", "fe80::1"] {
        assert!(!t.contains(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn trusted_proxy_typo_names_the_entry() {
    let l = lines(
        "[listen]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0/8\", \"10.1.2.3/8\", \"10.0.0.0/33\"]\n\
         [upstream]\nurl = \"http://a:1\"\n",
    );
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l[0].starts_with("listen.trusted_proxies.1: "), "{l:?}");
    assert!(
        l[1].starts_with("listen.trusted_proxies.2: ") && l[1].contains("10.0.0.0/8"),
        "{l:?}"
    );
    assert!(l[2].starts_with("listen.trusted_proxies.3: "), "{l:?}");
    let l = lines("[limits]\nmax_connections_per_client = 0\n[upstream]\nurl = \"http://a:1\"\n");
    assert_eq!(
        l,
        ["limits.max_connections_per_client: must be greater than 0"]
    );
}

/// A config with a secret in every place that can hold one, some of them from `${file:..}` and
/// `${env:..}`; each secret holds `MARK`.
fn config_full_of_secrets(dir: &Path) -> (String, HashMap<String, String>) {
    const SECRET_B64: &str = "c2VjcmV0LU1BUkstZmlsZQ=="; // "secret-MARK-file"
    let file = dir.join("hook-secret");
    std::fs::write(&file, "MARK-from-file-secret\n").unwrap();
    let text = format!(
        "[upstream]\nurl = \"http://up:MARK-up-pw@127.0.0.1:8080\"\n{SESSION_KEY}\
         [aggregator]\nsigning_secret = \"{SECRET_B64}\"\n\
         [cluster]\nredis_url = \"redis://:MARK-redis-pw@redis:6379/0\"\npassword = \"${{env:REDIS_PW}}\"\n\
         [tracing]\notlp_endpoint = \"https://otel:MARK-otel@otel.example:4318/v1/traces?api_key=MARK-otel-key\"\n\
         [providers.hook]\nkind = \"webhook\"\nurl = \"https://hook:MARK-hook-pw@auth.example/check?key=MARK-hook-key\"\n\
         signing_secret = \"{SECRET_B64}\"\n\
         headers = {{ Authorization = \"Bearer MARK-header\", X-Api-Key = \"${{file:{}}}\" }}\n\
         [providers.jwt]\nkind = \"jwt\"\nissuer = \"https://issuer.example/\"\naudiences = [\"a\"]\n\
         jwks_url = \"https://j:MARK-jwks-pw@issuer.example/jwks?token=MARK-jwks-key\"\n",
        file.display()
    );
    let env = HashMap::from([("REDIS_PW".to_owned(), "MARK-env-password".to_owned())]);
    (text, env)
}

#[test]
fn config_debug_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (text, env) = config_full_of_secrets(dir.path());
    let config = Config::from_toml(&text, &env).unwrap();
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains("MARK"), "{shown}");
    // The base64 secret in any spelling: the decoded key bytes as Debug prints a Vec<u8>.
    let key = format!("{:?}", b"secret-MARK-file".to_vec());
    assert!(!shown.contains(&key[1..key.len() - 1]), "{shown}");
    assert!(!shown.contains("c2VjcmV0LU1BUkstZmlsZQ"), "{shown}");
    // What is not secret still shows.
    assert!(shown.contains("auth.example/check"), "{shown}");
    assert!(
        shown.contains("Sensitive") || shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn raw_config_debug_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (text, env) = config_full_of_secrets(dir.path());
    let mut value: toml::Value = toml::from_str::<toml::Table>(&text)
        .map(toml::Value::Table)
        .unwrap();
    let mut problems = Vec::new();
    secrets::resolve(&mut value, &mut Vec::new(), &env, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let raw: raw::RawConfig = value.try_into().unwrap();
    let shown = format!("{raw:?} {raw:#?}");
    assert!(!shown.contains("MARK"), "{shown}");
    assert!(!shown.contains("c2VjcmV0LU1BUkstZmlsZQ"), "{shown}");
    assert!(shown.contains("auth.example/check"), "{shown}");
}

#[test]
fn shown_url_hides_user_info_and_query_only() {
    for (url, shown) in [
        ("https://a.example/x", "https://a.example/x"),
        (
            "https://u:p@a.example/x?k=v",
            "https://<redacted>@a.example/x?<redacted>",
        ),
        ("redis://:pw@r:6379/0", "redis://<redacted>@r:6379/0"),
        ("https://a.example/p@th", "https://a.example/p@th"),
        ("u:p@host:1", "<redacted>@host:1"),
    ] {
        assert_eq!(raw::shown_url(url), shown, "{url}");
    }
}

#[test]
fn syntax_error_names_line_and_key_but_never_the_value() {
    for (text, line, key) in [
        (
            "[cluster]\nredis_url = \"redis://:MARK@r:6379\n",
            2,
            "redis_url",
        ),
        ("a = 1\n[cluster]\npassword = MARK-bare\n", 3, "password"),
        (
            "[providers.p]\nheaders = { Authorization = \"Bearer MARK\" \n",
            2,
            "headers",
        ),
        ("x = \"MARK\" \"MARK\"\n", 1, "x"),
        ("[upstream]\nurl = 'MARK\n", 2, "url"),
    ] {
        let e = parse(text).unwrap_err();
        let ConfigError::Syntax(syntax) = &e else {
            panic!("{text:?}: {e}");
        };
        let shown = format!("{e} {e:?} {:?}", e.lines());
        assert!(!shown.contains("MARK"), "{text:?}: {shown}");
        assert_eq!(syntax.line, line, "{text:?}: {shown}");
        assert_eq!(syntax.key.as_deref(), Some(key), "{text:?}: {shown}");
    }
}

#[test]
fn mistyped_value_is_named_by_key_without_the_value() {
    for text in [
        "[upstream]\nurl = \"http://a:1\"\n[aggregator]\nsigning_secret = 12345678\n",
        "[upstream]\nurl = \"http://a:1\"\n[cluster]\nredis_url = \"redis://r:1\"\npassword = 12345678\n",
        "[upstream]\nurl = \"http://a:1\"\n[session]\nmax_ttl_seconds = \"12345678\"\n",
    ] {
        let shown = lines(text).join("\n");
        assert!(!shown.contains("12345678"), "{text:?}: {shown}");
    }
}
