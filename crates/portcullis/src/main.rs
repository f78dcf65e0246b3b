//! `portcullis`: the gateway and its command line.
//!
//! # Layout
//! - [`config`]: the TOML file, defaults and validation.
//! - [`app`]: the running gateway (pipeline, upstream, stores, books) shared by requests.
//! - [`server`]: routes and the request-id layer; [`proxy`]: the chat path and pass-through.
//! - [`guards`]: the pipeline built from config. [`books`]: limits, budgets, cost.
//! - [`audit`]: one audit record per request. [`scan`]: guards without a model call.
//! - [`mock`]: the built-in deterministic upstream. [`upstream`]: the provider client.
//! - [`cli`]: the commands other than `serve`.

mod anomaly;
mod app;
mod audit;
mod books;
mod cli;
mod config;
mod guards;
mod metrics;
mod mock;
mod moderation;
mod proxy;
mod scan;
mod server;
mod sse;
mod upstream;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,portcullis=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
