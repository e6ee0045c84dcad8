//! tern: a NATS-compatible message server. `main` turns flags (and the config file) into a
//! `Config`, sets up logging and the pid file, and runs the poll loop until a stop signal.

#![deny(clippy::too_many_lines)]

use std::process::ExitCode;
use tern::cluster::Cluster;
use tern::config::{self, flags};
use tern::jetstream::source::JetStream;
use tern::monitor::source::Monitoring;
use tern::server::source::Plug;
use tern::server::{signals, Server};
use tern::util::logger;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match flags::parse(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tern: {e}\n{}", flags::usage());
            return ExitCode::from(2);
        }
    };
    if flags.help {
        println!("{}", flags::usage());
        return ExitCode::SUCCESS;
    }
    if flags.version {
        println!(
            "tern: v{} (nats-server {} compatible)",
            config::VERSION,
            config::NATS_VERSION
        );
        return ExitCode::SUCCESS;
    }
    if let Some(spec) = &flags.signal {
        return match signals::send_command(spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tern: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (cfg, warnings) = match flags::build_config(&flags) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("tern: {e}");
            return ExitCode::FAILURE;
        }
    };
    if flags.check_config {
        for w in &warnings {
            eprintln!("tern: warning: {w}");
        }
        match &flags.config {
            Some(path) => println!("tern: configuration file {path} is valid"),
            None => println!("tern: no configuration file given; flags are valid"),
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logger::init(&cfg.log_settings()) {
        eprintln!("tern: cannot open log file: {e}");
        return ExitCode::FAILURE;
    }
    for w in &warnings {
        log::warn!("{w}");
    }
    if let Some(pid_file) = &cfg.pid_file {
        if let Err(e) = std::fs::write(pid_file, std::process::id().to_string()) {
            log::error!("Could not write pidfile: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut server = match Server::new(cfg, flags) {
        Ok(s) => s,
        Err(e) => {
            log::error!("Error listening on port: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The subsystems the loop runs besides clients (server/source.rs), each only if the
    // config turns it on.
    let plugs: [Plug; 3] = [Monitoring::plug, Cluster::plug, JetStream::plug];
    for plug in plugs {
        if let Err(e) = server.plug(plug) {
            log::error!("Error listening on port: {e}");
            return ExitCode::FAILURE;
        }
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
