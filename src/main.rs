//! tern: a NATS-compatible message server. `main` turns flags into a `Config`, sets up
//! logging and the pid file, and runs the poll loop until a stop signal.

use std::process::ExitCode;
use tern::{config, config_file, logger, options, server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match options::parse(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tern: {e}\n{}", options::usage());
            return ExitCode::from(2);
        }
    };
    if flags.help {
        println!("{}", options::usage());
        return ExitCode::SUCCESS;
    }
    if flags.version {
        println!("tern: v{}", config::VERSION);
        return ExitCode::SUCCESS;
    }
    let mut cfg = config::Config::default();
    let mut warnings = Vec::new();
    if let Some(path) = &flags.config {
        match config_file::load(std::path::Path::new(path), &mut cfg) {
            Ok(w) => warnings = w,
            Err(e) => {
                eprintln!("tern: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Flags override the file, as on nats-server.
    if let Err(e) = options::apply(&flags, &mut cfg) {
        eprintln!("tern: {e}");
        return ExitCode::from(2);
    }
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
    let log = logger::LogSettings {
        debug: cfg.debug,
        trace: cfg.trace,
        time: cfg.logtime,
        file: cfg.log_file.clone(),
    };
    if let Err(e) = logger::init(&log) {
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
    let mut server = match server::Server::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            log::error!("Error listening on port: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
