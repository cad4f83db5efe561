# services.gateway: the gateway on NixOS, the NixOS way. Instead of editing /etc (which NixOS
# builds from this configuration), the module contributes the sudoers entry, the SSH keys and
# Match block, the shims and the policy to the system, and refuses to build a system in which a
# managed user still has another sudo rule.
#
#   imports = [ ./contrib/nixos/module.nix ];
#   services.gateway = {
#     enable = true;
#     policyFile = ./gateway.toml;
#     sshKeys.ai-worker = [ "ssh-ed25519 AAAA... agent@box" ];
#   };
{ config, lib, pkgs, ... }:

let
  cfg = config.services.gateway;
  gw = import ./lib.nix;
  policy = gw.readPolicy cfg.policyFile;
  users = cfg.users;
  sshUsers = builtins.attrNames cfg.sshKeys;
  programs = gw.programsFor policy users;
  template = builtins.readFile ../sudoers.d/gateway;
in
{
  options.services.gateway = {
    enable = lib.mkEnableOption "the gateway: typed, audited root access for semi-trusted accounts";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./contrib/nixos/package.nix { }";
      description = "The gateway package; its bin/gateway is linked to /usr/local/bin/gateway.";
    };

    policyFile = lib.mkOption {
      type = lib.types.path;
      default = ../../gateway.toml;
      description = "The policy, installed as /etc/gateway/gateway.toml (root-owned, 0444).";
    };

    users = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = gw.policyUsers policy;
      defaultText = lib.literalMD "the users of `policyFile`";
      description = "Accounts whose only sudo is the gateway.";
    };

    sshKeys = lib.mkOption {
      type = lib.types.attrsOf (lib.types.listOf lib.types.str);
      default = { };
      example = { ai-worker = [ "ssh-ed25519 AAAA... agent@box" ]; };
      description = ''
        Public keys per managed user. Each is written with
        `restrict,command="/usr/local/bin/gateway ssh"`, and sshd is told to read only these
        keys (not ~/.ssh/authorized_keys) for these users, with ForceCommand as well.
      '';
    };

    coreLimits = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Core size 0 for the managed users (pam_limits) and fs.suid_dumpable = 0.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions =
      [
        {
          assertion = gw.grantsOutsideGateway config.security.sudo.extraRules users == [ ];
          message = "services.gateway: security.sudo.extraRules still grants "
            + builtins.concatStringsSep ", " (gw.grantsOutsideGateway config.security.sudo.extraRules users)
            + " something; a managed user's only sudo rule must be the gateway's";
        }
      ]
      ++ map
        (u: {
          assertion = config.users.users ? ${u};
          message = "services.gateway: the managed user ${u} is not defined in users.users";
        })
        users
      ++ map
        (u: {
          assertion = builtins.elem u users;
          message = "services.gateway: sshKeys.${u} names a user the gateway does not manage";
        })
        sshUsers;

    warnings = lib.concatMap
      (u:
        let
          groups = (config.users.users.${u}.extraGroups or [ ]);
          bad = builtins.filter (g: builtins.elem g gw.rootGroups) groups;
        in
        lib.optional (bad != [ ])
          "services.gateway: ${u} is in ${builtins.concatStringsSep ", " bad}, which reaches root without the gateway")
      (builtins.filter (u: config.users.users ? ${u}) users);

    environment.etc."gateway/gateway.toml" = {
      source = cfg.policyFile;
      mode = "0444";
    };

    systemd.tmpfiles.rules = gw.tmpfiles cfg.package programs;

    security.sudo.extraConfig = lib.mkAfter (gw.sudoers template users);

    services.openssh.extraConfig = lib.mkIf (sshUsers != [ ]) (lib.mkOrder 2000 (gw.sshdMatch sshUsers));

    users.users = lib.mapAttrs
      (_: keys: { openssh.authorizedKeys.keys = map gw.keyLine keys; })
      cfg.sshKeys;

    security.pam.loginLimits = lib.mkIf cfg.coreLimits
      (map (u: { domain = u; type = "hard"; item = "core"; value = "0"; }) users);

    boot.kernel.sysctl = lib.mkIf cfg.coreLimits { "fs.suid_dumpable" = 0; };
  };
}
