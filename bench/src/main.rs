//! `bench`: the workspace's benchmarks, as subcommands of one binary. `traces` compares the `rga`
//! crate with peer CRDTs and a plain rope on real editing traces (see [`traces`]); `store` the data
//! layer against raw PostgreSQL inserts (see [`store`]); `load` simulated editors against a running
//! stack (see [`load`]).
//!
//! Every allocation goes through [`alloc::CountingAlloc`], so cells can report their heap growth.

mod alloc;
mod impls;
mod load;
mod realtime;
mod stale;
mod store;
mod traces;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: alloc::CountingAlloc = alloc::CountingAlloc;

/// Benchmarks of the collaborative-editing backend.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay the sequential editing traces in each text implementation: local edits, remote
    /// updates, encode and decode; exits non-zero if any result differs from the trace's end.
    Traces(traces::Args),
    /// The data layer on PostgreSQL (`DATABASE_URL`): appends against raw inserts, cold loads and
    /// warm refreshes.
    Store(store::Args),
    /// Edit-to-other-client latency through the local WebSocket gateway (2, 10, 50 clients),
    /// beside the HTTP round trip of the edit.
    Realtime(realtime::Args),
    /// Simulated editors typing against a running stack (`scripts/load.sh` starts one with
    /// release builds): edit and push latency, errors, throughput, database connections, at 1×,
    /// 2×, 4× the editors until something gives.
    Load(load::Args),
}

fn main() -> anyhow::Result<ExitCode> {
    let all_matched = match Cli::parse().command {
        Command::Traces(args) => traces::run(&args)?,
        Command::Store(args) => store::run(&args)?,
        Command::Realtime(args) => realtime::run(&args)?,
        Command::Load(args) => load::run(&args)?,
    };
    Ok(if all_matched {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
