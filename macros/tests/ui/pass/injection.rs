//! `State<T>`, `JobContext` and `&JobContext` are injected, in any position, and are
//! not fields of the struct.
#![deny(warnings)]

use haul::prelude::*;

struct Db;
struct Mailer;

#[job]
async fn sync_account(db: State<Db>, account: String, ctx: &JobContext, State(mailer): State<Mailer>) {
    let (_db, _mailer, _attempt) = (db, mailer, ctx.attempt());
    let _ = account;
}

#[job]
async fn owned_context(ctx: JobContext, full_path: haul::State<Db>) {
    let _ = (ctx.kind(), full_path);
}

fn main() {
    let SyncAccount { account } = SyncAccount::new("acme");
    let OwnedContext {} = OwnedContext::new();
    let _ = account;
}
