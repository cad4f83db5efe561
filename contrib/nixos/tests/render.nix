# What lib.nix renders for a policy, as JSON for tests/nixos.rs (builtins only, no nixpkgs):
#   nix-instantiate --eval --strict --json contrib/nixos/tests/render.nix --arg policyFile ./gateway.toml \
#     --argstr key "ssh-ed25519 AAAA... c"
{ policyFile, key ? "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample test@host" }:
let
  gw = import ../lib.nix;
  policy = gw.readPolicy policyFile;
  users = gw.policyUsers policy;
in
{
  inherit users;
  programs = gw.programsFor policy users;
  sudoers = gw.sudoers (builtins.readFile ../../sudoers.d/gateway) users;
  sshd = gw.sshdMatch users;
  keyLine = gw.keyLine key;
  tmpfiles = gw.tmpfiles "/nix/store/00000000000000000000000000000000-gateway-0.1.0" (gw.programsFor policy users);
  grants = gw.grantsOutsideGateway [
    { users = [ "ai-worker" ]; commands = [ "ALL" ]; }
    { groups = [ "wheel" ]; commands = [ "ALL" ]; }
    { users = [ "alice" ]; commands = [ "ALL" ]; }
  ] users;
}
