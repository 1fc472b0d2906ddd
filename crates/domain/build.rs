//! Generates the gRPC clients and servers for `wgtwo.sipbreakout.v1` and `wgtwo.sms.v1` from
//! `proto/`.
//!
//! Uses `protox` (a pure-Rust protobuf compiler) so that no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/wgtwo/sipbreakout/v1/sipbreakout.proto", "proto/wgtwo/sms/v1/sms.proto"];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
