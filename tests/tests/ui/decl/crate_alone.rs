use nn_runtime::network;

#[network(crate = nn_runtime)]
pub struct Net;

fn main() {}
