use nn_runtime::network;

#[network(file = "nets/ok.nn", dtype = f16)]
pub struct Net;

fn main() {}
