use nn_runtime::network;

#[network(path = "nets/ok.nn")]
pub struct Net;

fn main() {}
