//! The `hyperdex` binary: see `hyperdex --help` and the `cli` module.

fn main() -> std::process::ExitCode {
    hyperdex::cli::main()
}
