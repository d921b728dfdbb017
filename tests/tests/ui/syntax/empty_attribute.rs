use nn_runtime::network;

#[network]
pub struct Net;

fn main() {}
