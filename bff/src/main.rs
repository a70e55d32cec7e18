//! The BFF: the REST/JSON edge over the gRPC services. Not built yet (see the BFF issue); this
//! binary exits with a clear message so nobody mistakes it for a working edge.

fn main() -> std::process::ExitCode {
    eprintln!("bff: not implemented yet; call the services over gRPC (see README)");
    std::process::ExitCode::FAILURE
}
