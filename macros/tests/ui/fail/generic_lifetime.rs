use haul::prelude::*;

#[job]
async fn deliver<'a>(to: std::borrow::Cow<'a, str>) {
    let _ = to;
}

fn main() {}
