//! `telltale store info` and `telltale store backup`: the durable store's database, found
//! where `telltale run` with the same config keeps it, read beside a running engine and
//! never created or changed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use telltale_config::LoadedConfig;
use telltale_store::disk::admin::{AdminError, ReadOnlyDatabase};

/// The `store` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Show what the database holds: its size on disk, each tier's chunks, rows and time
    /// span, what is not yet folded into chunks, alerts and undelivered notifications.
    ///
    /// Safe while `telltale run` has the database open.
    Info {
        /// The configuration `telltale run` uses (default: the embedded one).
        #[arg(short, long, value_name = "FILE", env = "TELLTALE_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the database to FILE, which must not exist, and check it.
    ///
    /// Safe while `telltale run` writes: the copy is one snapshot, and the engine is not
    /// held up. To restore, stop the engine, remove the database's `-wal` and `-shm` files
    /// if there are any, and put the copy in its place.
    Backup {
        /// Where the copy goes.
        #[arg(value_name = "FILE")]
        dest: PathBuf,
        /// The configuration `telltale run` uses (default: the embedded one).
        #[arg(short, long, value_name = "FILE", env = "TELLTALE_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs a `store` subcommand.
pub(crate) fn main(command: StoreCommand) -> ExitCode {
    match command {
        StoreCommand::Info { config, json } => info(config.as_deref(), json),
        StoreCommand::Backup { dest, config } => backup(config.as_deref(), &dest),
    }
}

fn info(config: Option<&Path>, json: bool) -> ExitCode {
    let db = match open(config) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let info = match db.info() {
        Ok(i) => i,
        Err(e) => return failed(&e),
    };
    if json {
        match serde_json::to_string_pretty(&info) {
            Ok(s) => println!("{s}"),
            Err(e) => return failed(&e),
        }
    } else {
        println!("{info}");
    }
    ExitCode::SUCCESS
}

fn backup(config: Option<&Path>, dest: &Path) -> ExitCode {
    let db = match open(config) {
        Ok(db) => db,
        Err(code) => return code,
    };
    match db.backup(dest) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

fn failed(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// Opens, for reading only, the database `telltale run` with this config would use.
pub(crate) fn open(config: Option<&Path>) -> Result<ReadOnlyDatabase, ExitCode> {
    let loaded = crate::load_config(config)?;
    let name = loaded.display_name();
    if !loaded.config.store.enabled {
        eprintln!(
            "error: the store is disabled in {name} (`store.enabled: false`): `telltale run` \
             keeps no database with it"
        );
        eprintln!(
            "  hint: give the config `telltale run` uses: -c FILE. If it is this one, remove \
             `store.enabled: false` from it and restart `telltale run` to keep a database from \
             then on"
        );
        return Err(ExitCode::FAILURE);
    }
    let path = loaded.store_path();
    ReadOnlyDatabase::open(&path).map_err(|e| {
        eprintln!("error: {e}");
        if matches!(e, AdminError::Missing { .. }) {
            eprintln!("  {}", whence(&loaded));
            eprintln!(
                "  hint: has `telltale run` run with this config yet? Give the config it runs \
                 with: -c FILE"
            );
        }
        ExitCode::FAILURE
    })
}

/// Where the database path came from, in the config's words.
fn whence(loaded: &LoadedConfig) -> String {
    let name = loaded.display_name();
    let store = &loaded.config.store.path;
    if store.is_absolute() {
        return format!("(`store.path` in {name})");
    }
    let dir = loaded.data_dir();
    let origin = match &loaded.config.engine.data_dir {
        Some(_) => format!("`engine.data_dir` in {name}"),
        None => format!(
            "the default data directory ($XDG_DATA_HOME/telltale, else \
             ~/.local/share/telltale), as {name} sets no `engine.data_dir`"
        ),
    };
    format!(
        "(`store.path` {} under the data directory {}: {origin})",
        store.display(),
        dir.display()
    )
}
