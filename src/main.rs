//! The `drawbridge` command: run, check, keygen, demo.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drawbridge::config::{self, Config, LogFormat};
use drawbridge::telemetry::Telemetry;
use drawbridge::terminal::{SafeWriter, Spelling};
use drawbridge::{App, demo, shutdown};

/// EX_USAGE: the config (or the command line) is wrong.
const EXIT_USAGE: u8 = 64;

/// `drawbridge --version`: the version and the source revision it was built from.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("DRAWBRIDGE_REVISION"),
    ")"
);

/// An auth gateway for websocket sync servers.
#[derive(Debug, Parser)]
#[command(name = "drawbridge", version, long_version = LONG_VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with the given config file.
    Run {
        /// The TOML config file.
        #[arg(long, short, env = config::ENV_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file and print a summary; exit 64 listing each problem.
    Check {
        /// The TOML config file.
        #[arg(long, short, env = config::ENV_CONFIG)]
        config: PathBuf,
        /// Check syntax and values only: read no TLS file, and take every `${file:..}` as a placeholder.
        #[arg(long)]
        skip_files: bool,
        /// The config the gateway runs with now: list the changed keys a reload cannot apply
        /// (they need a restart).
        #[arg(long, value_name = "RUNNING_CONFIG")]
        against: Option<PathBuf>,
    },
    /// Write a new session signing key (PEM; HS256: a random secret) for `session.key_file`.
    Keygen {
        /// EdDSA (default), ES256, RS256 or HS256.
        #[arg(long, default_value = "EdDSA")]
        algorithm: String,
        /// Where to write it (mode 0600); standard output when absent.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print every config key with its default, one JSON object a line (for deployment tooling).
    #[command(hide = true)]
    ConfigKeys,
    /// Run the gateway with a demo sync server and a self-signed certificate, all on loopback.
    Demo {
        /// Gateway address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        addr: SocketAddr,
        /// Admin address (health, readiness, metrics).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_addr: SocketAddr,
    },
}

/// jemalloc instead of glibc's malloc: freed memory is reused by size class, so the churn of
/// handshakes and logins leaves far less RSS behind (BENCHMARKS.md, "The allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            skip_files,
            against,
        } => check(&config, skip_files, against.as_deref()),
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return usage_error(&config, &e),
            };
            runtime(async move {
                // Inside the runtime: the trace exporter sends from it.
                let (telemetry, set_level) =
                    init_logs(cfg.log.format, &cfg.log.level, cfg.tracing.as_ref())?;
                cli::nofile::raise(cfg.limits.max_connections);
                let app = App::bind(cfg)
                    .await?
                    .reload_on_sighup(config)
                    .log_level_follows(set_level);
                let served = app.run(shutdown::signal()).await;
                if let Some(telemetry) = telemetry {
                    // Sends the last spans; it blocks, so off the runtime's workers.
                    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
                }
                served?;
                Ok(())
            })
        }
        Command::Keygen {
            algorithm,
            out,
            force,
        } => keygen(&algorithm, out.as_deref(), force),
        Command::ConfigKeys => config_keys(),
        Command::Demo { addr, admin_addr } => runtime(async move {
            // The demo has no config file to reload: the level stays.
            let (_, _fixed_level) = init_logs(LogFormat::Text, "info", None)?;
            demo::run(demo::DemoOptions { addr, admin_addr }, shutdown::signal()).await?;
            Ok(())
        }),
    }
}

fn check(path: &std::path::Path, skip_files: bool, against: Option<&std::path::Path>) -> ExitCode {
    let loaded = if skip_files {
        Config::load_with(path, &config::SkipFiles)
    } else {
        Config::load(path)
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => return usage_error(path, &e),
    };
    if let (Some(tls), false) = (&cfg.tls, skip_files)
        && let Err(e) = drawbridge::tls::check_files(tls)
    {
        eprintln!("{}: tls: {e}", path.display());
        return ExitCode::from(EXIT_USAGE);
    }
    for warning in &cfg.warnings {
        match warning.line {
            Some(line) => eprintln!("{}:{line}: warning: {warning}", path.display()),
            None => eprintln!("{}: warning: {warning}", path.display()),
        }
    }
    println!("{}: ok\n\n{}", path.display(), cli::summary(&cfg));
    if let Some(running_path) = against {
        let running = match Config::load_with(running_path, &config::SkipFiles) {
            Ok(c) => c,
            Err(e) => return usage_error(running_path, &e),
        };
        let keys = running.restart_changes(&cfg);
        if keys.is_empty() {
            println!(
                "against {}: a reload applies every change",
                running_path.display()
            );
        } else {
            println!(
                "against {}: a reload applies every change but these keys, which need a restart: {}",
                running_path.display(),
                keys.join(", ")
            );
        }
    }
    ExitCode::SUCCESS
}

fn keygen(algorithm: &str, out: Option<&std::path::Path>, force: bool) -> ExitCode {
    let alg = match algorithm.parse::<jsonwebtoken::Algorithm>() {
        Ok(
            a @ (jsonwebtoken::Algorithm::EdDSA
            | jsonwebtoken::Algorithm::ES256
            | jsonwebtoken::Algorithm::RS256
            | jsonwebtoken::Algorithm::HS256),
        ) => a,
        _ => {
            eprintln!("drawbridge keygen: --algorithm must be EdDSA, ES256, RS256 or HS256");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let key = match drawbridge::auth::session::keygen(alg) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("drawbridge keygen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(path) = out else {
        print!("{key}");
        return ExitCode::SUCCESS;
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, key.as_bytes()))
    {
        Ok(()) => {
            eprintln!(
                "wrote a new {algorithm} key to {}; set session.key_file to it",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "drawbridge keygen: cannot write {}: {e}{}",
                path.display(),
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    " (use --force to replace it)"
                } else {
                    ""
                }
            );
            ExitCode::FAILURE
        }
    }
}

/// One JSON object a line: `{"key": "limits.idle_timeout_ms", "default": 60000}`.
fn config_keys() -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for key in config::keys::config_keys() {
        let line = serde_json::to_string(&key).expect("a key serializes");
        if writeln!(out, "{line}").is_err() {
            // The reader went away (`| head`): not an error of ours.
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Prints every problem of a config as a compiler does, `file:line: key: what`, and exits 64.
fn usage_error(path: &std::path::Path, e: &config::ConfigError) -> ExitCode {
    let problems = e.problems();
    if problems.is_empty() {
        for line in e.lines() {
            eprintln!("{}: {line}", path.display());
        }
    } else {
        for problem in problems {
            match problem.line {
                Some(line) => eprintln!("{}:{line}: {problem}", path.display()),
                None => eprintln!("{}: {problem}", path.display()),
            }
        }
    }
    ExitCode::from(EXIT_USAGE)
}

fn runtime(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    // On one CPU (a pinned sidecar, a CPU limit of 1) a single-threaded runtime does the same work
    // without the work-stealing scheduler's cross-thread wake-ups and atomics.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drawbridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "drawbridge stopped");
            eprintln!("drawbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Changes the diagnostic log's level on a reload.
type SetLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The trace exporter's layer, when `[tracing]` is set.
type TraceLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The diagnostic log on stderr, the trace exporter when `[tracing]` is set, and what changes the
/// log level later (unless [`config::ENV_LOG`] fixes it).
fn init_logs(
    format: LogFormat,
    level: &str,
    tracing: Option<&config::Tracing>,
) -> anyhow::Result<(Option<Telemetry>, SetLevel)> {
    use tracing_subscriber::util::SubscriberInitExt;

    let (telemetry, traces) = match tracing {
        Some(settings) => {
            let (telemetry, layer) = Telemetry::start(settings)?;
            (Some(telemetry), Some(layer))
        }
        None => (None, None),
    };
    let (subscriber, set_level) = log_subscriber(format, level, traces);
    subscriber.init();
    Ok((telemetry, set_level))
}

/// The subscriber [`init_logs`] installs: the registry, the trace layer if any, and the log on
/// stderr under its level.
fn log_subscriber(
    format: LogFormat,
    level: &str,
    traces: Option<TraceLayer>,
) -> (impl tracing::Subscriber + Send + Sync + 'static, SetLevel) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, LevelFilter};
    use tracing_subscriber::layer::SubscriberExt;

    let from_env = std::env::var(config::ENV_LOG)
        .ok()
        .and_then(|l| tracing_subscriber::EnvFilter::try_new(l).ok());
    let fixed = from_env.is_some();
    let filter = from_env
        .or_else(|| tracing_subscriber::EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let set_level: SetLevel = Box::new(move |level: &str| {
        if fixed {
            return Err(format!("{} is set and takes precedence", config::ENV_LOG));
        }
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    // The watcher's own machinery never reaches the log, whatever the level: a log file in a
    // watched directory would make each of its lines the next file event, without end. The
    // filter says it narrows nothing by level: without a hint, the pair would have none, every
    // `trace!` callsite in the process (hyper's and h2's per frame, ours per request) would stay
    // live, and each span would be built in the registry only to be dropped by every layer.
    let filter = filter.and(
        tracing_subscriber::filter::filter_fn(|meta| !drawbridge::watch::feeds_back(meta))
            .with_max_level_hint(LevelFilter::TRACE),
    );
    // Every line goes through a writer that escapes C0, DEL and C1 in all fields (the formatter
    // escapes only the message); colours are off, since their escape codes would be escaped too.
    let spelling = match format {
        LogFormat::Json => Spelling::Json,
        LogFormat::Text => Spelling::Text,
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || SafeWriter::new(std::io::stderr(), spelling));
    let fmt = match format {
        LogFormat::Json => fmt
            .event_format(cli::json_log::FlatJson)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    (
        tracing_subscriber::registry().with(traces).with(fmt),
        set_level,
    )
}

#[cfg(test)]
mod tests {
    use tracing::Subscriber;
    use tracing::level_filters::LevelFilter;

    use super::*;

    #[test]
    fn log_subscriber_without_traces_caps_every_callsite_at_the_log_level() {
        // Set by a developer's shell, the variable would decide the level instead.
        if std::env::var_os(config::ENV_LOG).is_some() {
            return;
        }
        for (level, hint) in [("info", LevelFilter::INFO), ("debug", LevelFilter::DEBUG)] {
            let (subscriber, _) = log_subscriber(LogFormat::Json, level, None);
            assert_eq!(subscriber.max_level_hint(), Some(hint), "{level}");
            tracing::subscriber::with_default(subscriber, || {
                // The request span of every request: built for nothing when no layer wants it.
                assert!(
                    tracing::trace_span!(target: drawbridge::telemetry::TARGET, "request")
                        .is_disabled()
                );
            });
        }
    }

    #[test]
    fn log_subscriber_set_level_raises_the_cap() {
        if std::env::var_os(config::ENV_LOG).is_some() {
            return;
        }
        let (subscriber, set_level) = log_subscriber(LogFormat::Text, "info", None);
        assert_eq!(subscriber.max_level_hint(), Some(LevelFilter::INFO));
        set_level("trace").expect("a valid level");
        assert_eq!(subscriber.max_level_hint(), Some(LevelFilter::TRACE));
    }
}
