//! Every command `drawbridge demo` prints, run as printed from top to bottom in one bash shell, and
//! checked against what its comment promises. A `websocat` line runs the real websocat when it is
//! installed; otherwise (and always for the line left open in the background, since websocat never
//! shows a close code) the same websocket is opened with tokio-tungstenite, built from the printed
//! line as websocat's own command line parser would read it. Also: plain forwards drop the
//! websocket handshake headers, and the demo sync server upgrades only on a real handshake.

mod support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use support::{Gateway, Upstream, client};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long one printed command may take before the test calls it hung.
const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

/// A running `drawbridge demo`, with what it printed.
struct Demo {
    child: support::process::Demo,
    printed: Vec<String>,
}

impl Demo {
    /// Starts the real binary on free ports and reads its output up to the end of its own
    /// websocket walk-through, which it prints after the commands.
    fn start() -> Self {
        let mut child = support::process::Demo::start();
        let stdout = child.0.stdout.take().unwrap();
        let mut printed = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let done = line.trim_start().starts_with("close ") || line.contains("failed");
            printed.push(line);
            if done {
                break;
            }
        }
        Self { child, printed }
    }

    /// The printed commands, in order: the lines under "Try it" that are neither blank nor
    /// comments, without their indent.
    fn commands(&self) -> Vec<String> {
        self.printed
            .iter()
            .skip_while(|l| !l.starts_with("Try it"))
            .skip(1)
            .take_while(|l| !l.starts_with("A websocket session"))
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    /// Stops the demo as Ctrl-C would, so it removes its certificate directory.
    fn stop(mut self) {
        let pid = i32::try_from(self.child.0.id()).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = std::time::Instant::now() + COMMAND_DEADLINE;
        while self.child.0.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the demo did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The certificate the demo made (it writes it under the temporary directory named by its pid).
    fn cert_pem(&self) -> String {
        let dir = std::env::temp_dir().join(format!("drawbridge-demo-{}", self.child.0.id()));
        std::fs::read_to_string(dir.join("tls.crt")).unwrap()
    }
}

/// What a command wrote and how it ended.
#[derive(Debug)]
struct Ran {
    stdout: String,
    stderr: String,
    ok: bool,
}

/// One bash shell's variables carried from line to line: each line runs in a fresh `bash -c`
/// that first sources what the lines before it assigned, and saves its own assignments after.
struct Shell {
    dir: tempfile::TempDir,
    assigned: Vec<String>,
}

impl Shell {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            assigned: Vec::new(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("vars.sh")
    }

    /// The lines that bring a fresh bash to where the shell is.
    fn prelude(&self) -> String {
        format!("[ -f '{0}' ] && . '{0}'\n", self.state().display())
    }

    /// Runs `line` as typed at the prompt.
    async fn run(&mut self, line: &str) -> Ran {
        if let Some((name, _)) = line.split_once('=')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        {
            self.assigned.push(name.to_owned());
        }
        let save = if self.assigned.is_empty() {
            String::new()
        } else {
            format!(
                "declare -p {} > '{}' 2>/dev/null\n",
                self.assigned.join(" "),
                self.state().display()
            )
        };
        let script = format!("{}{line}\n__rc=$?\n{save}exit $__rc\n", self.prelude());
        bash(&script).await
    }

    /// A variable's value as the shell holds it now.
    async fn var(&self, name: &str) -> String {
        bash(&format!("{}printf %s \"${name}\"", self.prelude()))
            .await
            .stdout
    }
}

async fn bash(script: &str) -> Ran {
    let child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(COMMAND_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("hung: {script}"))
        .unwrap();
    Ran {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ok: out.status.success(),
    }
}

fn websocat_installed() -> bool {
    Command::new("bash")
        .args(["-c", "command -v websocat"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A printed `PRODUCER | websocat ARGS [&]` line, split as bash would run it.
struct WebsocatLine {
    /// What feeds websocat's standard input.
    producer: String,
    /// websocat's arguments as bash expands them.
    args: Vec<String>,
    /// The line ends in `&`.
    background: bool,
}

impl WebsocatLine {
    async fn parse(shell: &Shell, line: &str) -> Self {
        let (producer, rest) = line
            .split_once(" | websocat ")
            .unwrap_or_else(|| panic!("not a `... | websocat ...` line: {line}"));
        // The comment starts at the first `   # ` (bash would drop it in any case).
        let words = rest.split_once("   # ").map_or(rest, |(w, _)| w).trim();
        let (words, background) = match words.strip_suffix('&') {
            Some(w) => (w.trim_end(), true),
            None => (words, false),
        };
        let expanded = bash(&format!(
            "{}set -- {words}\nprintf '%s\\0' \"$@\"",
            shell.prelude()
        ))
        .await;
        assert!(expanded.ok, "bash could not expand {words}: {expanded:?}");
        let args = expanded
            .stdout
            .split('\0')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Self {
            producer: producer.to_owned(),
            args,
            background,
        }
    }
}

/// The options of websocat 1.x that the printed lines use, read as its parser (clap 2) reads them:
/// `-H`/`--header` takes every following word that is not an option, so a URL after it is eaten.
#[derive(Debug, Default)]
struct WebsocatArgs {
    url: Option<String>,
    headers: Vec<(String, String)>,
    insecure: bool,
    exit_on_eof: bool,
}

impl WebsocatArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut out = Self::default();
        let header = |out: &mut Self, value: &str| {
            let (name, value) = value
                .split_once(':')
                .ok_or(format!("a header without a colon: {value}"))?;
            out.headers.push((
                name.to_owned(),
                value.strip_prefix(' ').unwrap_or(value).to_owned(),
            ));
            Ok::<_, String>(())
        };
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            match a {
                "-k" | "--insecure" => out.insecure = true,
                "-E" | "--exit-on-eof" => out.exit_on_eof = true,
                "-H" | "--header" => {
                    let mut took = 0;
                    while i + 1 < args.len() && !args[i + 1].starts_with('-') {
                        i += 1;
                        took += 1;
                        header(&mut out, &args[i])?;
                    }
                    if took == 0 {
                        return Err(format!("{a} without a value"));
                    }
                }
                _ if a.starts_with("-H=") || a.starts_with("--header=") => {
                    header(&mut out, a.split_once('=').map(|(_, v)| v).unwrap_or(""))?;
                }
                _ if a.starts_with('-') => {
                    return Err(format!("an option this test does not know: {a}"));
                }
                _ if out.url.is_none() => out.url = Some(a.to_owned()),
                _ => return Err(format!("a second address: {a}")),
            }
            i += 1;
        }
        if out.url.is_none() {
            return Err("No URL specified".into());
        }
        Ok(out)
    }
}

/// Kills a process group when dropped: the producer and whatever it started (`sleep`).
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// How an emulated websocat run ended.
#[derive(Debug)]
enum WsOutcome {
    /// The handshake was answered with this status instead of 101.
    Refused(u16),
    /// The websocket opened; what arrived, and the close frame the server sent.
    Closed {
        stdout: String,
        close: Option<(u16, String)>,
    },
}

/// Runs a printed websocat line with tokio-tungstenite: the producer's lines go out as text
/// messages, every message that arrives is a line of output, the producer's end sends a close,
/// and with `-E` the server's close ends the run. `opened` fires once the handshake is answered.
async fn emulate_websocat(
    shell_prelude: String,
    line: WebsocatLine,
    ca: String,
    opened: oneshot::Sender<()>,
) -> WsOutcome {
    let args = WebsocatArgs::parse(&line.args).unwrap_or_else(|e| panic!("websocat: {e}"));
    let url = args.url.clone().unwrap();
    let rest = url
        .strip_prefix("wss://")
        .unwrap_or_else(|| panic!("the demo's websockets are wss://, not {url}"));
    assert!(
        args.insecure,
        "without -k websocat refuses the demo's self-signed certificate"
    );
    let addr: SocketAddr = rest.split('/').next().unwrap().parse().unwrap();
    // `-k` accepts any certificate; trusting exactly the demo's is stricter, so a pass here is a
    // pass for websocat too.
    let tls = client::connect_tls(addr, &ca, None, &[b"http/1.1"])
        .await
        .unwrap();
    let mut req = url.as_str().into_client_request().unwrap();
    for (name, value) in &args.headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let mut ws = match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            return WsOutcome::Refused(resp.status().as_u16());
        }
        Err(e) => panic!("websocket handshake failed: {e}"),
    };
    let _ = opened.send(());

    let mut producer = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{shell_prelude}{}", line.producer))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _group = Group(producer.id().unwrap());
    let mut input = tokio::io::BufReader::new(producer.stdout.take().unwrap()).lines();
    let mut input_open = true;
    let mut stdout = String::new();
    loop {
        tokio::select! {
            next = input.next_line(), if input_open => match next.unwrap() {
                Some(text) => ws.send(Message::text(text)).await.unwrap(),
                None => {
                    input_open = false;
                    let _ = ws.close(None).await;
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    stdout.push_str(t.as_str());
                    stdout.push('\n');
                }
                Some(Ok(Message::Binary(b))) => {
                    stdout.push_str(&String::from_utf8_lossy(&b));
                    stdout.push('\n');
                }
                Some(Ok(Message::Close(frame))) => {
                    let close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    if !input_open || args.exit_on_eof {
                        return WsOutcome::Closed { stdout, close };
                    }
                    // Without -E websocat waits for its input to end as well.
                    while input.next_line().await.unwrap().is_some() {}
                    return WsOutcome::Closed { stdout, close };
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return WsOutcome::Closed { stdout, close: None },
            },
        }
    }
}

/// The status and JSON body of `curl -i` output.
fn status_and_json(out: &str) -> (u16, serde_json::Value) {
    let status = out
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("no header end in {out:?}"));
    (status, serde_json::from_str(body).unwrap())
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

/// What each printed line must be, in order: a piece of its command text, and its check.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Items,
    HealthOverHttp2,
    UpgradeWithoutSession,
    Login,
    Token,
    Userinfo,
    Refresh,
    Denial,
    Metrics,
    WebsocketEcho,
    WebsocketKeptOpen,
    Logout,
    WebsocketAfterLogout,
}

const STEPS: [(&str, Step); 13] = [
    ("/api/items", Step::Items),
    ("--http2 https://", Step::HealthOverHttp2),
    ("'upgrade: websocket'", Step::UpgradeWithoutSession),
    ("LOGIN=$(curl", Step::Login),
    ("TOKEN=$(", Step::Token),
    ("/auth/userinfo", Step::Userinfo),
    ("/auth/token", Step::Refresh),
    ("\"token\":\"mallory\"", Step::Denial),
    ("/metrics", Step::Metrics),
    (
        "echo 'hello through the drawbridge' | websocat",
        Step::WebsocketEcho,
    ),
    ("| websocat -E", Step::WebsocketKeptOpen),
    ("/auth/logout", Step::Logout),
    ("echo hello | websocat", Step::WebsocketAfterLogout),
];

#[tokio::test]
async fn demo_printed_commands_run_in_order_give_what_their_comments_promise() {
    let demo = Demo::start();
    let printed = demo.printed.join("\n");
    assert!(
        printed.contains("closed the websocket: 4003 session revoked"),
        "{printed}"
    );
    let commands = demo.commands();
    assert_eq!(
        commands.len(),
        STEPS.len(),
        "every printed command needs its check here:\n{}",
        commands.join("\n")
    );
    for (command, (piece, step)) in commands.iter().zip(STEPS) {
        assert!(
            command.contains(piece),
            "{step:?} expected, printed: {command}"
        );
    }
    let ca = demo.cert_pem();
    let real_websocat = websocat_installed();
    let mut shell = Shell::new();
    let mut kept_open = None;

    for (command, (_, step)) in commands.iter().zip(STEPS) {
        if matches!(
            step,
            Step::WebsocketEcho | Step::WebsocketKeptOpen | Step::WebsocketAfterLogout
        ) && !(real_websocat && step != Step::WebsocketKeptOpen)
        {
            let line = WebsocatLine::parse(&shell, command).await;
            assert_eq!(
                line.background,
                step == Step::WebsocketKeptOpen,
                "{command}"
            );
            let (opened, is_open) = oneshot::channel();
            let run = tokio::spawn(emulate_websocat(shell.prelude(), line, ca.clone(), opened));
            if step == Step::WebsocketKeptOpen {
                // At a prompt the next line comes seconds later; here, once the handshake is done.
                tokio::time::timeout(COMMAND_DEADLINE, is_open)
                    .await
                    .expect("the background websocket did not open")
                    .expect("the background websocket did not open");
                kept_open = Some(run);
                continue;
            }
            let outcome = tokio::time::timeout(COMMAND_DEADLINE, run)
                .await
                .unwrap_or_else(|_| panic!("hung: {command}"))
                .unwrap();
            match step {
                Step::WebsocketEcho => match outcome {
                    WsOutcome::Closed { stdout, .. } => {
                        assert_eq!(stdout, "hello through the drawbridge\n", "{command}");
                    }
                    other => panic!("{command}: {other:?}"),
                },
                _ => assert!(
                    matches!(outcome, WsOutcome::Refused(401)),
                    "{command}: {outcome:?}"
                ),
            }
            continue;
        }

        let ran = shell.run(command).await;
        // websocat fails when the handshake is refused; every other line succeeds.
        assert_eq!(
            ran.ok,
            step != Step::WebsocketAfterLogout,
            "{command}: {ran:?}"
        );
        let out = ran.stdout.as_str();
        match step {
            Step::Items => {
                let body = json(out);
                assert_eq!(body["items"][0]["title"], "raise the drawbridge", "{out}");
                assert_eq!(body["seen"]["x-forwarded-proto"], "https", "{out}");
            }
            Step::HealthOverHttp2 => assert_eq!(json(out), serde_json::json!({"status": "ok"})),
            Step::UpgradeWithoutSession => {
                let (status, body) = status_and_json(out);
                assert_eq!(status, 401, "{out}");
                assert!(out.starts_with("HTTP/1.1 401"), "{out}");
                assert_eq!(body["result"], "failure");
                assert_eq!(body["reason"], "InvalidToken");
            }
            Step::Login => {
                let (body, status) = out.trim_end().rsplit_once('\n').expect(out);
                assert_eq!(status, "200", "{out}");
                let body = json(body);
                assert_eq!(body["result"], "success");
                assert_eq!(body["userID"], "alice");
                assert!(body["sessionToken"].as_str().is_some_and(|t| t.len() > 20));
                assert!(body["expiresAt"].is_string(), "{body}");
                assert!(body["expirationSeconds"].as_u64().is_some_and(|s| s > 0));
                assert_eq!(body["permissions"]["write"]["everything"], true);
            }
            Step::Token => {
                assert_eq!(out, "");
                let login = shell.var("LOGIN").await;
                let session = json(login.lines().next().unwrap())["sessionToken"].clone();
                assert_eq!(shell.var("TOKEN").await, session.as_str().unwrap());
            }
            Step::Userinfo => {
                let body = json(out);
                assert_eq!(body["userID"], "alice", "{out}");
                assert_eq!(body["provider"], "demo", "{out}");
            }
            Step::Refresh => {
                let body = json(out);
                assert_eq!(body["result"], "success", "{out}");
                let fresh = body["sessionToken"].as_str().unwrap();
                assert_ne!(fresh, shell.var("TOKEN").await, "no fresh token");
            }
            Step::Denial => {
                let (status, body) = status_and_json(out);
                assert_eq!(status, 401, "{out}");
                assert_eq!(body["result"], "failure");
                assert_eq!(body["reason"], "InvalidCredentials");
            }
            Step::Metrics => {
                for sample in [
                    r#"drawbridge_http_requests_total{route="forward",status_class="2xx"}"#,
                    r#"drawbridge_http_requests_total{route="sync",status_class="4xx"}"#,
                    r#"drawbridge_http_requests_total{route="login",status_class="2xx"}"#,
                    r#"drawbridge_http_requests_total{route="login",status_class="4xx"}"#,
                ] {
                    assert!(
                        out.lines().any(|l| l.starts_with(sample)),
                        "{sample} missing:\n{out}"
                    );
                }
            }
            Step::WebsocketEcho => {
                assert_eq!(out, "hello through the drawbridge\n", "{ran:?}");
            }
            Step::Logout => {
                assert_eq!(json(out), serde_json::json!({"result": "success"}));
                let run = kept_open.take().expect("no websocket was left open");
                let outcome = tokio::time::timeout(COMMAND_DEADLINE, run)
                    .await
                    .expect("the open websocket was not closed after the logout")
                    .unwrap();
                match outcome {
                    WsOutcome::Closed { close, .. } => assert_eq!(
                        close,
                        Some((4003, "session revoked".to_owned())),
                        "the close after logout"
                    ),
                    other => panic!("{other:?}"),
                }
            }
            Step::WebsocketAfterLogout => {
                // The real websocat: it fails and names the status.
                assert!(ran.stderr.contains("401"), "{ran:?}");
            }
            Step::WebsocketKeptOpen => unreachable!("always emulated"),
        }
    }
    demo.stop();
}

#[test]
fn websocat_header_before_url_eats_the_url() {
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let err = WebsocatArgs::parse(&args(&[
        "-k",
        "-H",
        "authorization: Bearer x",
        "wss://h/sync",
    ]))
    .unwrap_err();
    assert_eq!(err, "No URL specified");
    let ok = WebsocatArgs::parse(&args(&[
        "-k",
        "wss://h/sync",
        "-H",
        "authorization: Bearer x",
    ]))
    .unwrap();
    assert_eq!(ok.url.as_deref(), Some("wss://h/sync"));
    assert_eq!(
        ok.headers,
        vec![("authorization".to_owned(), "Bearer x".to_owned())]
    );
    let eq = WebsocatArgs::parse(&args(&["-H=authorization: Bearer x", "wss://h/sync"])).unwrap();
    assert_eq!(eq.url.as_deref(), Some("wss://h/sync"));
}

const HANDSHAKE_HEADERS: [(&str, &str); 4] = [
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("sec-websocket-version", "13"),
    ("sec-websocket-protocol", "chat"),
    ("sec-websocket-extensions", "permessage-deflate"),
];

/// A plain GET of `path` through `gw` (over HTTP/2 when `h2`) carrying every websocket handshake
/// header but no upgrade.
async fn get_with_handshake_headers(
    gw: &Gateway,
    path: &str,
    h2: bool,
) -> http::Response<hyper::body::Incoming> {
    let http = client::https(&gw.ca.pem(), h2);
    let mut req = http::Request::get(gw.url(path));
    for (name, value) in HANDSHAKE_HEADERS {
        req = req.header(name, value);
    }
    http.request(req.body(http_body_util::Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn plain_forward_with_websocket_headers_reaches_upstream_without_them() {
    let up = Upstream::start().await;
    let gw = Gateway::builder(up.url()).spawn().await;
    for h2 in [false, true] {
        let resp = get_with_handshake_headers(&gw, "/items", h2).await;
        assert_eq!(resp.status(), StatusCode::OK, "h2: {h2}");
        let seen = up.seen();
        let h = &seen.last().unwrap().headers;
        for (name, _) in HANDSHAKE_HEADERS {
            assert!(
                !h.contains_key(name),
                "{name} reached the upstream (h2: {h2})"
            );
        }
    }
    assert_eq!(up.seen().len(), 2);
}

/// Sends one raw HTTP/1.1 request to `addr` and returns the answer's status line.
async fn raw_status_line(addr: SocketAddr, head: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(COMMAND_DEADLINE, tcp.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn demo_sync_server_bare_websocket_key_gets_plain_answer() {
    let sync = drawbridge::demo::SyncServer::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let key = "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n";
    let bare = raw_status_line(
        sync.addr(),
        &format!("GET /sync HTTP/1.1\r\nhost: demo\r\n{key}\r\n"),
    )
    .await;
    assert!(bare.starts_with("HTTP/1.1 404"), "{bare}");
    let real = raw_status_line(
        sync.addr(),
        &format!(
            "GET /sync HTTP/1.1\r\nhost: demo\r\nconnection: Upgrade\r\nupgrade: websocket\r\n{key}\r\n"
        ),
    )
    .await;
    assert!(real.starts_with("HTTP/1.1 101"), "{real}");
}

#[tokio::test]
async fn demo_sync_server_upgrade_offer_over_http2_is_answered_not_switched() {
    // curl offers a websocket over HTTP/2 by dropping `connection`/`upgrade` and keeping the key:
    // the gateway forwards it as a plain GET, and it must be answered, not switched (a 502).
    let sync = drawbridge::demo::SyncServer::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = Gateway::builder(format!("http://{}", sync.addr()))
        .spawn()
        .await;
    let resp = get_with_handshake_headers(&gw, "/sync", true).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
