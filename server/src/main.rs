//! The `oncolive` binary: parse the command line into a configuration, set up tracing, run the
//! library; and the demo set-up of `serve --demo`.

use anyhow::Context;
use clap::Parser;
use oncolive_server::api_types::Created;
use oncolive_server::auth::{Keys, SecretSource, load_secret, ttl_for};
use oncolive_server::cli::{Cli, Command, ServeArgs, TokenArgs};
use oncolive_server::model::{Moderation, NewSession, Role};
use oncolive_server::{AppState, api, start};
use serde::Serialize;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve(*args).await,
        Command::Token(args) => token(args),
    }
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let role = Role::from(args.role);
    if role != Role::Admin && args.session.is_none() {
        anyhow::bail!("--session ID is required for expert and moderator tokens");
    }
    let (secret, _) = load_secret(args.common.secret()?.as_deref(), &args.common.data_dir)?;
    let ttl = args
        .ttl_hours
        .map(|h| std::time::Duration::from_secs(h * 3600))
        .unwrap_or(ttl_for(role));
    let session = if role == Role::Admin {
        None
    } else {
        args.session
    };
    let (_, token) =
        Keys::new(&secret).issue_for_links(role, session, None, args.links_version, ttl);
    println!("{token}");
    Ok(())
}

/// What `--ready-file` receives, for tests and scripts. It holds an admin token, so it is
/// written readable by its owner only.
#[derive(Serialize)]
struct ReadyInfo {
    url: String,
    admin_token: String,
    host_link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    demo: Option<Created>,
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let listener =
        listen(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let shutdown = CancellationToken::new();
    let running = start(args.config()?, listener, shutdown.clone()).await?;
    let app = running.app.clone();
    match &running.secret_source {
        SecretSource::Environment => {
            tracing::info!("token secret from --secret, --secret-file or ONCOLIVE_SECRET")
        }
        SecretSource::File { path, created } => tracing::info!(
            %path, created, "token secret kept in the data directory (set ONCOLIVE_SECRET to choose one)"
        ),
    }
    let url = app.public_url.to_string();
    tracing::info!(%url, addr = %running.addr, "listening");
    let (host_link, admin_token) = api::admin_link(&app);
    let demo = if args.demo {
        let created = create_demo(&app).await?;
        println!("\nOncoLive demo session {}\n", created.session.id);
        println!("  host (admin):  {host_link}");
        println!("  expert:        {}", created.links.expert);
        println!("  moderator:     {}", created.links.moderator);
        println!("  patient:       {}", created.links.patient);
        let ws = url.replacen("http", "ws", 1);
        let id = created.session.id;
        println!("  hub socket:    {ws}/api/sessions/{id}/ws (token in Sec-WebSocket-Protocol)\n");
        Some(created)
    } else {
        // A token in the output ends up in terminal scrollback, journald and CI logs, where
        // it outlives its purpose: say how to make one instead.
        println!("OncoLive listening on {url}");
        println!(
            "  host page: {url}/host#token=TOKEN, with TOKEN from `{}`",
            token_command(&args)
        );
        None
    };
    if let Some(path) = &args.ready_file {
        let info = ReadyInfo {
            url: url.clone(),
            admin_token,
            host_link,
            demo,
        };
        oncolive_server::files::write_private(path, &serde_json::to_vec_pretty(&info)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down: closing sockets with 1001");
            shutdown.cancel();
        }
    });
    running.stopped().await
}

/// The `oncolive token` command that makes an admin token this server accepts: the same
/// secret source as the server's.
fn token_command(args: &ServeArgs) -> String {
    let mut command = String::from("oncolive token --role admin");
    if let Some(path) = &args.common.secret_file {
        command += &format!(" --secret-file {}", path.display());
    } else if args.common.secret.is_none() {
        command += &format!(" --data-dir {}", args.common.data_dir.display());
    }
    command
}

/// The demo session of `--demo`, created at start.
async fn create_demo(app: &AppState) -> anyhow::Result<Created> {
    let new = NewSession {
        title: "Demo: lung cancer screening, ask the oncologist".into(),
        topic: "Who should be screened, what low-dose CT finds, what a nodule means".into(),
        expert_name: "Dr. Demo".into(),
        scheduled_start: OffsetDateTime::now_utc(),
        moderation: Moderation::Pre,
        expert_profile: None,
        record: None,
        videos: Vec::new(),
    };
    api::create_session(app, new)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the demo session: {e}"))
}

/// Tokio's default backlog (1024) overflows when thousands of patients reconnect at once and
/// their handshakes wait for SYN retransmits; the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
