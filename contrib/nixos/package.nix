# The gateway built from this repository with nixpkgs' Rust tooling.
{ lib, rustPlatform }:

rustPlatform.buildRustPackage {
  pname = "gateway";
  version = (builtins.fromTOML (builtins.readFile ../../Cargo.toml)).package.version;
  src = lib.cleanSource ../..;
  cargoLock.lockFile = ../../Cargo.lock;
  # The test suite changes /etc and needs root, sudo and sshd: it runs in CI, not in the sandbox.
  doCheck = false;
  meta = {
    description = "Typed, audited root access for semi-trusted accounts, through sudo or SSH";
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "gateway";
    platforms = lib.platforms.linux;
  };
}
