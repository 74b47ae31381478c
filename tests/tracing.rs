//! OpenTelemetry traces through the real binary, received by an in-test OTLP/HTTP collector (a
//! hyper server decoding the protobuf with `opentelemetry-proto`): the span tree of a login
//! through a group of two webhooks, `traceparent` continued from the client and carried to the
//! webhooks and the sync server, the trace ID in the audit log, and no secret in any attribute.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Response;
use http_body_util::{BodyExt, Full};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::process::Running;
use support::{Gateway, Reply, Upstream, Webhook, client, serve};

const TOKEN: &str = "provider-token-traced-6b0e";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const QUERY_SECRET: &str = "query-secret-5521";

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Got {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attrs: HashMap<String, String>,
}

fn flatten(span: &Span) -> Got {
    let attrs = span
        .attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect();
    Got {
        name: span.name.clone(),
        trace: hex::encode(&span.trace_id),
        id: hex::encode(&span.span_id),
        parent: hex::encode(&span.parent_span_id),
        attrs,
    }
}

/// An OTLP/HTTP collector on 127.0.0.1:0 that keeps every span and resource attribute it gets.
struct Collector {
    served: support::Served,
    spans: Arc<Mutex<Vec<Got>>>,
    resources: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let resources = Arc::new(Mutex::new(Vec::new()));
        let (keep, keep_res) = (spans.clone(), resources.clone());
        let served = serve(move |req: http::Request<hyper::body::Incoming>| {
            let (keep, keep_res) = (keep.clone(), keep_res.clone());
            async move {
                assert_eq!(req.uri().path(), "/v1/traces");
                assert_eq!(
                    req.headers()["content-type"],
                    "application/x-protobuf",
                    "OTLP/HTTP protobuf"
                );
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let export = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                for rs in &export.resource_spans {
                    if let Some(r) = &rs.resource {
                        let attrs = flatten(&Span {
                            attributes: r.attributes.clone(),
                            ..Span::default()
                        })
                        .attrs;
                        keep_res.lock().unwrap().push(attrs);
                    }
                    for ss in &rs.scope_spans {
                        keep.lock().unwrap().extend(ss.spans.iter().map(flatten));
                    }
                }
                let mut resp = Response::new(Full::new(bytes::Bytes::new()));
                resp.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                resp
            }
        })
        .await;
        Self {
            served,
            spans,
            resources,
        }
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Stops `gw` with SIGTERM, which flushes its last spans, and returns every span received
    /// once an upstream request's span is among them.
    async fn after_sigterm(&self, mut gw: Running) -> Vec<Got> {
        kill(Pid::from_raw(gw.child.id() as i32), Signal::SIGTERM).unwrap();
        // Awaited, not blocked on: the collector runs on this test's runtime and must answer the
        // exports drawbridge sends while it drains.
        assert_eq!(gw.exited(Duration::from_secs(15)).await, 0, "{}", gw.logs());
        assert_eventually!(
            self.spans().iter().any(|s| s.name == "upstream_request"),
            "no upstream span exported: {:?}",
            self.spans()
        );
        self.spans()
    }
}

/// The `traceparent` a recorded request carried: (trace ID, parent span ID).
fn traceparent(headers: &http::HeaderMap) -> (String, String) {
    let v = headers
        .get("traceparent")
        .expect("no traceparent")
        .to_str()
        .unwrap();
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn tracing_login_through_a_group_exports_the_span_tree_and_propagates_traceparent() {
    let collector = Collector::start().await;
    let allow = |req: &serde_json::Value| match req["token"].as_str() {
        Some(TOKEN) => Reply::allow("quinn", 600),
        _ => Reply::deny(serde_json::json!({})),
    };
    let a = Webhook::start(allow).await;
    let b = Webhook::start(allow).await;
    let up = Upstream::start().await;
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let builder = Gateway::builder(up.url())
        .webhook_provider("a", &a)
        .webhook_provider("b", &b)
        .extra("[providers.both]\nkind = \"group\"\nmembers = [\"a\", \"b\"]\nstrategy = \"all\"")
        .rate_limit_off()
        .extra(&format!(
            "[tracing]\notlp_endpoint = \"{}\"\nsample_ratio = 1.0\nservice_name = \"gate-7\"\n\
             [audit]\npath = {:?}",
            collector.served.url(),
            audit.to_str().unwrap()
        ));
    let gw = Running::start_with(builder, &[("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let http = client::https(&gw.ca.pem(), false);

    // A login continuing the client's trace.
    let mut req = client::request(
        "POST",
        &gw.url("/auth/login"),
        support::login_body("app", "both", TOKEN).to_string(),
    );
    let h = req.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert(
        "traceparent",
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let (status, _, body) = support::send(&http, req).await;
    assert_eq!(status, 200, "{body}");
    let session = body["sessionToken"].as_str().unwrap().to_owned();

    // A forwarded request with credentials and a query, in a trace of its own.
    let mut req = client::request(
        "GET",
        &gw.url(&format!("/api/items?ticket={QUERY_SECRET}")),
        "",
    );
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {session}").parse().unwrap(),
    );
    req.headers_mut().insert(
        "cookie",
        format!("drawbridge_session={session}").parse().unwrap(),
    );
    let (status, _, _) = support::send(&http, req).await;
    assert_eq!(status, 200);

    // No idle connection of the test's own left for the drain to wait on.
    drop(http);
    let spans = collector.after_sigterm(gw).await;

    // The login's tree, in the client's trace.
    let login: Vec<&Got> = spans.iter().filter(|s| s.trace == CLIENT_TRACE).collect();
    let one = |name: &str, pred: &dyn Fn(&Got) -> bool| -> Got {
        let found: Vec<&&Got> = login.iter().filter(|s| s.name == name && pred(s)).collect();
        assert_eq!(found.len(), 1, "{name}: {login:#?}");
        (*found[0]).clone()
    };
    let request = one("request", &|_| true);
    assert_eq!(
        request.parent, CLIENT_SPAN,
        "the client's span is the parent"
    );
    assert_eq!(request.attrs["drawbridge.route"], "login");
    assert_eq!(request.attrs["url.path"], "/auth/login");
    assert_eq!(request.attrs["client.address"], "127.0.0.1");
    assert_eq!(request.attrs["http.request.method"], "POST");
    assert_eq!(request.attrs["http.response.status_code"], "200");
    let lookup = one("cache_lookup", &|_| true);
    assert_eq!(lookup.parent, request.id);
    assert_eq!(lookup.attrs["drawbridge.cache"], "miss");
    let group = one("provider", &|s| s.attrs["drawbridge.provider"] == "both");
    assert_eq!(group.parent, lookup.id);
    assert_eq!(group.attrs["drawbridge.provider.kind"], "group");
    assert_eq!(group.attrs["drawbridge.outcome"], "allow");
    for (name, hook) in [("a", &a), ("b", &b)] {
        let member = one("provider", &|s| s.attrs["drawbridge.provider"] == name);
        assert_eq!(member.parent, group.id, "{name} under the group");
        assert_eq!(member.attrs["drawbridge.provider.kind"], "webhook");
        assert_eq!(member.attrs["drawbridge.outcome"], "allow");
        let call = one("webhook_request", &|s| {
            s.attrs["drawbridge.provider"] == name
        });
        assert_eq!(call.parent, member.id);
        assert_eq!(call.attrs["drawbridge.attempt"], "1");
        assert_eq!(call.attrs["http.response.status_code"], "200");
        // The webhook service would continue the trace under this call's span.
        let calls = hook.log();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            traceparent(&calls[0].headers),
            (CLIENT_TRACE.to_owned(), call.id.clone()),
            "{name}'s traceparent"
        );
    }

    // The forwarded request: its upstream span, and the sync server saw it as the parent.
    let forward = spans
        .iter()
        .find(|s| s.name == "request" && s.attrs["drawbridge.route"] == "forward")
        .expect("the forwarded request's span");
    assert_ne!(forward.trace, CLIENT_TRACE, "a new trace");
    assert_eq!(forward.parent, "", "a root span");
    assert_eq!(forward.attrs["url.path"], "/api/items");
    let upstream = spans
        .iter()
        .find(|s| s.name == "upstream_request" && s.trace == forward.trace)
        .expect("the upstream span");
    assert_eq!(upstream.parent, forward.id);
    assert_eq!(upstream.attrs["http.response.status_code"], "200");
    let seen = up
        .seen()
        .into_iter()
        .find(|s| s.uri.starts_with("/api/items"))
        .unwrap();
    assert_eq!(
        traceparent(&seen.headers),
        (forward.trace.clone(), upstream.id.clone())
    );

    // The TLS handshakes are spans of their own.
    assert!(
        spans.iter().any(|s| s.name == "tls_handshake"
            && s.attrs.get("tls.outcome").map(String::as_str) == Some("ok")),
        "no handshake span: {spans:#?}"
    );
    assert!(
        collector
            .resources
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.get("service.name").map(String::as_str) == Some("gate-7"))
    );

    // The audit line of the login carries its trace ID.
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    let login_line: serde_json::Value = audit_text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["event"] == "login")
        .unwrap();
    assert_eq!(login_line["trace_id"], CLIENT_TRACE);

    // No secret in any attribute.
    for span in &spans {
        for (key, value) in &span.attrs {
            for secret in [
                TOKEN,
                session.as_str(),
                QUERY_SECRET,
                "Bearer",
                "drawbridge_session",
            ] {
                assert!(
                    !value.contains(secret) && !key.contains(secret),
                    "{} carries {secret:?} in {key}",
                    span.name
                );
            }
        }
    }
}

#[tokio::test]
async fn tracing_sampling_follows_the_incoming_flag_and_otherwise_the_ratio() {
    const SAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const UNSAMPLED_TRACE: &str = "5b8efff798038103d269b633813fc60c";
    let collector = Collector::start().await;
    let hook = Webhook::start(|_req: &serde_json::Value| Reply::allow("quinn", 600)).await;
    let up = Upstream::start().await;
    let builder = Gateway::builder(up.url())
        .webhook_provider("p", &hook)
        .rate_limit_off()
        .extra(&format!(
            "[tracing]\notlp_endpoint = \"{}\"\nsample_ratio = 0.0",
            collector.served.url()
        ));
    let gw = Running::start_with(builder, &[("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let http = client::https(&gw.ca.pem(), false);
    let mut req = client::request(
        "POST",
        &gw.url("/auth/login"),
        support::login_body("app", "p", TOKEN).to_string(),
    );
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let (status, _, body) = support::send(&http, req).await;
    assert_eq!(status, 200, "{body}");
    let session = body["sessionToken"].as_str().unwrap().to_owned();

    // Forwarded requests: no traceparent, a sampled one, an unsampled one, and sampled ones that
    // W3C Trace Context calls invalid, each of which must be ignored as a whole (so at ratio 0
    // nothing is sampled): uppercase hex, version ff, all-zero IDs, two headers.
    let upper = SAMPLED_TRACE.to_ascii_uppercase();
    let zeros = "0".repeat(32);
    let invalid = [
        ("/api/upper", vec![format!("00-{upper}-{CLIENT_SPAN}-01")]),
        (
            "/api/upper-parent",
            vec![format!("00-{UNSAMPLED_TRACE}-{}-01", "B7AD6B7169203331")],
        ),
        (
            "/api/ff",
            vec![format!("ff-{UNSAMPLED_TRACE}-{CLIENT_SPAN}-01")],
        ),
        (
            "/api/zero-trace",
            vec![format!("00-{zeros}-{CLIENT_SPAN}-01")],
        ),
        (
            "/api/zero-parent",
            vec![format!("00-{UNSAMPLED_TRACE}-{}-01", &zeros[..16])],
        ),
        (
            "/api/twice",
            vec![
                format!("00-{UNSAMPLED_TRACE}-{CLIENT_SPAN}-01"),
                format!("00-{UNSAMPLED_TRACE}-{CLIENT_SPAN}-01"),
            ],
        ),
    ];
    for (path, parents) in [
        ("/api/none", vec![]),
        (
            "/api/sampled",
            vec![format!("00-{SAMPLED_TRACE}-{CLIENT_SPAN}-01")],
        ),
        (
            "/api/unsampled",
            vec![format!("00-{UNSAMPLED_TRACE}-{CLIENT_SPAN}-00")],
        ),
    ]
    .into_iter()
    .chain(invalid.clone())
    {
        let mut req = client::request("GET", &gw.url(path), "");
        let h = req.headers_mut();
        h.insert(
            "authorization",
            format!("Bearer {session}").parse().unwrap(),
        );
        for p in parents {
            h.append("traceparent", p.parse().unwrap());
            h.append("tracestate", "vendor=1".parse().unwrap());
        }
        let (status, _, _) = support::send(&http, req).await;
        assert_eq!(status, 200, "{path}");
    }

    // No idle connection of the test's own left for the drain to wait on.
    drop(http);
    let spans = collector.after_sigterm(gw).await;
    // Only the trace the client sampled: at ratio 0 nothing else starts one, not even a handshake.
    assert!(
        spans.iter().all(|s| s.trace == SAMPLED_TRACE),
        "spans outside the sampled trace: {spans:#?}"
    );
    let request = spans
        .iter()
        .find(|s| s.name == "request")
        .expect("the sampled request's span");
    assert_eq!(request.parent, CLIENT_SPAN);
    assert_eq!(request.attrs["url.path"], "/api/sampled");
    let upstream = spans.iter().find(|s| s.name == "upstream_request").unwrap();
    assert_eq!(
        upstream.parent, request.id,
        "children follow their sampled root"
    );

    // The sync server continues the sampled trace under drawbridge's span; the others carry no
    // trace of drawbridge's.
    let seen = up.seen();
    let at = |path: &str| seen.iter().find(|s| s.uri == path).unwrap().headers.clone();
    assert_eq!(
        traceparent(&at("/api/sampled")),
        (SAMPLED_TRACE.to_owned(), upstream.id.clone())
    );
    assert!(at("/api/none").get("traceparent").is_none());
    // What the client sent may pass on untouched; drawbridge adds no trace of its own.
    for (path, sent) in &invalid {
        for v in at(path).get_all("traceparent") {
            assert!(
                sent.iter().any(|s| v == s.as_str()),
                "{path}: an invalid traceparent started or continued a trace: {v:?}"
            );
        }
    }
    if let Some(v) = at("/api/unsampled").get("traceparent") {
        assert!(
            v.to_str().unwrap().ends_with("-00"),
            "still unsampled: {v:?}"
        );
    }
}
