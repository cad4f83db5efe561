# Evaluates module.nix with the real NixOS module system (nixpkgs' lib.evalModules), for a
# checkout of nixpkgs or of its lib alone (no packages are built or needed):
#
#   nix-instantiate --eval --strict --json contrib/nixos/tests/module-eval.nix \
#     --arg lib 'import /path/to/nixpkgs/lib'
#
# The NixOS options the module sets are declared below with the types NixOS gives them, since
# the NixOS option tree itself is not loaded: this checks the module's own options, defaults,
# assertions and the values it contributes, not NixOS's handling of them.
{ lib }:
let
  inherit (lib) mkOption types;
  nixosOptions = {
    options = {
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule {
          options.source = mkOption { type = types.path; };
          options.mode = mkOption { type = types.str; default = "symlink"; };
        });
        default = { };
      };
      systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
      security.sudo.extraConfig = mkOption { type = types.lines; default = ""; };
      security.sudo.extraRules = mkOption { type = types.listOf types.attrs; default = [ ]; };
      services.openssh.extraConfig = mkOption { type = types.lines; default = ""; };
      users.users = mkOption {
        type = types.attrsOf (types.submodule {
          options.openssh.authorizedKeys.keys = mkOption { type = types.listOf types.str; default = [ ]; };
          options.extraGroups = mkOption { type = types.listOf types.str; default = [ ]; };
        });
        default = { };
      };
      security.pam.loginLimits = mkOption { type = types.listOf types.attrs; default = [ ]; };
      boot.kernel.sysctl = mkOption { type = types.attrsOf types.anything; default = { }; };
    };
  };
  fakePackage = {
    type = "derivation";
    name = "gateway-0.1.0";
    outPath = "/nix/store/00000000000000000000000000000000-gateway-0.1.0";
  };
  eval = extra: lib.evalModules {
    specialArgs.pkgs = { };
    modules = [
      nixosOptions
      ../module.nix
      {
        services.gateway.enable = true;
        services.gateway.package = fakePackage;
        services.gateway.sshKeys.ai-worker = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample agent@box" ];
        users.users.ai-worker.extraGroups = [ "docker" ];
        users.users.vastai_kaalia = { };
        # Another module's line, added after the gateway's Match block.
        services.openssh.extraConfig = lib.mkOrder 3000 "X11Forwarding no";
      }
      extra
    ];
  };
  good = eval { };
  failed = cfg: map (a: a.message) (builtins.filter (a: !a.assertion) cfg.assertions);
  withOldRule = eval {
    security.sudo.extraRules = [
      { users = [ "ai-worker" ]; commands = [ { command = "/run/current-system/sw/bin/docker"; options = [ "NOPASSWD" ]; } ]; }
    ];
  };
in
{
  users = good.config.services.gateway.users;
  failedAssertions = failed good.config;
  failedWithOldRule = failed withOldRule.config;
  warnings = good.config.warnings;
  sudoers = good.config.security.sudo.extraConfig;
  sshd = good.config.services.openssh.extraConfig;
  keys = good.config.users.users.ai-worker.openssh.authorizedKeys.keys;
  vastKeys = good.config.users.users.vastai_kaalia.openssh.authorizedKeys.keys;
  tmpfiles = good.config.systemd.tmpfiles.rules;
  policy = good.config.environment.etc."gateway/gateway.toml".mode;
  limits = good.config.security.pam.loginLimits;
  sysctl = good.config.boot.kernel.sysctl;
}
