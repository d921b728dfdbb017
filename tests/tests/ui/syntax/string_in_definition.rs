use nn_runtime::network;

#[network(file = "nets/ok.nn";)]
pub struct Net;

fn main() {}
