//! `oncolive-load`: drives a running OncoLive server over its public interfaces.
//!
//! ```sh
//! oncolive-load qa --url http://127.0.0.1:8080 --admin-token T --patients 1000 --duration 30 \
//!     --server-pid $(pidof oncolive) --out qa.json
//! oncolive-load video --url http://127.0.0.1:8080 --admin-token T --viewers 50 --out video.json
//! oncolive-load plot --prefix docs/img/bench results/*.json
//! ```
//! Exit status 1 when a run found a completeness violation (or could not run), 0 otherwise.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use oncolive_load::qa::{self, QaConfig};
use oncolive_load::video::{self, VideoConfig};
use oncolive_load::{common, report};
use oncolive_server::model::SessionId;

#[derive(Parser)]
#[command(name = "oncolive-load", about = "Load generator for OncoLive")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Patients ask and vote in one session; moderator and expert bots.
    Qa(QaArgs),
    /// One WHIP publisher and N WHEP viewers (run in a loopback-only namespace).
    Video(VideoArgs),
    /// SVG plots of latency and cost against load from result files.
    Plot {
        /// Output path prefix (e.g. docs/img/bench).
        #[arg(long)]
        prefix: String,
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct Target {
    /// Base URL of a node; repeat for several nodes (patients are spread round-robin).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Admin token (`oncolive token --role admin`, or `admin_token` of the --ready-file JSON).
    #[arg(long, env = "ONCOLIVE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Read the admin token from a server's --ready-file.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Use an existing session instead of creating one.
    #[arg(long)]
    session: Option<SessionId>,
    #[arg(long)]
    moderator_token: Option<String>,
    #[arg(long)]
    expert_token: Option<String>,
    /// Server pids whose CPU and memory to read from /proc (repeatable).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Results as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl Target {
    fn admin_token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.ready_file {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            let value: serde_json::Value = serde_json::from_str(&text)?;
            return Ok(value["admin_token"].as_str().map(str::to_owned));
        }
        Ok(self.admin_token.clone())
    }
}

#[derive(Args)]
struct QaArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// Seconds of load after every patient connected.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// New connections per second.
    #[arg(long, default_value_t = 1000.0)]
    connect_rate: f64,
    /// Questions per second (all patients together).
    #[arg(long, default_value_t = 5.0)]
    ask_rate: f64,
    /// Votes per second (all patients together).
    #[arg(long, default_value_t = 50.0)]
    vote_rate: f64,
    #[arg(long, default_value_t = 0.1)]
    reject_ratio: f64,
    /// Moderator connections (default: one per 12 questions a second).
    #[arg(long, default_value_t = 0)]
    moderators: usize,
    /// Seconds between the expert's answering/answered steps.
    #[arg(long, default_value_t = 2.0)]
    answer_every: f64,
    /// Patients that never read after connecting.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Seconds into the load when every patient drops and reconnects with `since`.
    #[arg(long)]
    storm_at: Option<f64>,
    /// Reconnects are spread at random over this many seconds.
    #[arg(long, default_value_t = 10.0)]
    storm_window: f64,
    /// Source addresses for patient sockets, comma-separated (e.g. 127.0.0.2,127.0.0.3).
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,
    #[arg(long, default_value_t = 30.0)]
    settle: f64,
}

#[derive(Args)]
struct VideoArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Video kbit/s.
    #[arg(long, default_value_t = 1000)]
    bitrate: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Seconds of the steady phase after every viewer connected.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// New viewers per second.
    #[arg(long, default_value_t = 20.0)]
    connect_rate: f64,
    #[arg(long, default_value_t = 2.0)]
    keyframe_every: f64,
    /// Nodes the viewers connect to, round-robin (repeatable; default: the first --url). The
    /// publisher uses the first --url: with nodes on one Redis, viewers of the others go
    /// through origin–edge.
    #[arg(long = "viewer-url")]
    viewer_urls: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = runtime.block_on(async move {
        match cli.command {
            Command::Qa(args) => run_qa(args).await,
            Command::Video(args) => run_video(args).await,
            Command::Plot { prefix, files } => {
                for path in report::plot(&files, &prefix)? {
                    println!("wrote {}", path.display());
                }
                Ok(true)
            }
        }
    })?;
    // Peer connections and sockets may still hold tasks; do not wait for them.
    runtime.shutdown_background();
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn run_qa(args: QaArgs) -> anyhow::Result<bool> {
    common::raise_fd_limit();
    let t = &args.target;
    let config = QaConfig {
        urls: t.urls.clone(),
        admin_token: t.admin_token()?,
        session: t.session,
        moderator_token: t.moderator_token.clone(),
        expert_token: t.expert_token.clone(),
        patients: args.patients,
        duration_s: args.duration,
        connect_rate: args.connect_rate,
        ask_rate: args.ask_rate,
        vote_rate: args.vote_rate,
        reject_ratio: args.reject_ratio,
        moderators: args.moderators,
        answer_every_s: args.answer_every,
        stalled: args.stalled,
        storm_at_s: args.storm_at,
        storm_window_s: args.storm_window,
        server_pids: t.server_pids.clone(),
        sources: args.sources,
        settle_s: args.settle,
        progress: !t.quiet,
    };
    let mut result = qa::run(config).await?;
    // Tokens are secrets; keep them out of result files.
    result.config.admin_token = None;
    result.config.moderator_token = None;
    result.config.expert_token = None;
    if let Some(out) = &t.out {
        std::fs::write(out, serde_json::to_vec_pretty(&result)?)?;
    }
    println!("{}", report::qa_markdown(&result));
    if !result.completeness.ok {
        eprintln!("completeness violated: see the table");
    }
    Ok(result.completeness.ok)
}

async fn run_video(args: VideoArgs) -> anyhow::Result<bool> {
    let t = &args.target;
    let config = VideoConfig {
        url: t.urls[0].clone(),
        admin_token: t.admin_token()?,
        session: t.session,
        expert_token: t.expert_token.clone(),
        viewers: args.viewers,
        bitrate_kbps: args.bitrate,
        fps: args.fps,
        duration_s: args.duration,
        connect_rate: args.connect_rate,
        keyframe_every_s: args.keyframe_every,
        server_pids: t.server_pids.clone(),
        progress: !t.quiet,
        viewer_urls: args.viewer_urls.clone(),
    };
    let mut result = video::run(config).await?;
    result.config.admin_token = None;
    result.config.expert_token = None;
    if let Some(out) = &t.out {
        std::fs::write(out, serde_json::to_vec_pretty(&result)?)?;
    }
    println!("{}", report::video_markdown(&result));
    Ok(result.viewer_failures == 0)
}
