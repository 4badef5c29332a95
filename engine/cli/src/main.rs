//! The `telltale` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    telltale::main()
}
