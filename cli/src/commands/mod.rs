//! One module per command; [`execute`] picks the one the command line names.

mod actions;
mod cron;
mod jobs;
mod migrate;
mod prune;
mod queues;
mod stats;
mod web;
mod workers;

use std::sync::Arc;

use haul::{AdminAction, Storage};

use crate::{
    Exit, Io,
    args::{Cli, Command, JobsCommand, QueueAction},
    error::CliError,
};

/// Runs the command `cli` names against `storage`. Every command but `migrate` first
/// checks that the storage is ready for this version of haul.
pub(crate) async fn execute(cli: &Cli, shared: Arc<dyn Storage>, io: &mut Io<'_>) -> Result<Exit, CliError> {
    let json = cli.json;
    let storage = shared.as_ref();
    if !matches!(cli.command, Command::Migrate) {
        storage.check_ready().await?;
    }
    match &cli.command {
        Command::Migrate => migrate::run(storage, io, json).await,
        Command::Queues(args) => match &args.action {
            None => queues::list(storage, io, json).await,
            Some(QueueAction::Pause { name }) => queues::pause(storage, io, json, name, true).await,
            Some(QueueAction::Resume { name }) => queues::pause(storage, io, json, name, false).await,
            Some(QueueAction::Limit { name, concurrency, key_concurrency, rate, key_rate, unlimited }) => {
                let change = queues::LimitsChange {
                    concurrency: *concurrency,
                    key_concurrency: *key_concurrency,
                    rate: *rate,
                    key_rate: *key_rate,
                    unlimited: *unlimited,
                };
                queues::limit(storage, io, json, name, change).await
            }
        },
        Command::Jobs(JobsCommand::List(args)) => jobs::list(storage, io, json, args).await,
        Command::Jobs(JobsCommand::Show { id }) => jobs::show(storage, io, json, *id).await,
        Command::Jobs(JobsCommand::Retry(args)) => actions::run(AdminAction::Retry, storage, io, json, args).await,
        Command::Jobs(JobsCommand::Cancel(args)) => actions::run(AdminAction::Cancel, storage, io, json, args).await,
        Command::Jobs(JobsCommand::Delete(args)) => actions::run(AdminAction::Delete, storage, io, json, args).await,
        Command::Stats => stats::run(storage, io, json).await,
        Command::Prune(args) => prune::run(storage, io, json, args).await,
        Command::Workers => workers::run(storage, io, json).await,
        Command::Cron => cron::run(storage, io, json).await,
        Command::Web(args) => web::run(shared.clone(), io, json, args, haul::shutdown_signal()).await,
    }
}
