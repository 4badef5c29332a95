//! The `telltale` binary; everything lives in the library (see `cli`).

fn main() -> std::process::ExitCode {
    telltale::cli::main()
}
