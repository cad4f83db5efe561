# Pure helpers of the NixOS module: builtins only (no nixpkgs), so they can be evaluated and
# tested anywhere `nix-instantiate` runs. They render the same files `gateway install` renders
# on other distributions, from the same sources (the policy and contrib/sudoers.d/gateway).
let
  gatewayPath = "/usr/local/bin/gateway";
  shimDir = "/usr/local/lib/gateway/shims";
  unique = list:
    builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ] list;
  concatMap = f: list: builtins.concatLists (map f list);
in
rec {
  inherit gatewayPath shimDir;

  # The policy file as an attribute set.
  readPolicy = file: builtins.fromTOML (builtins.readFile file);

  # The users the policy names (sorted, as builtins.attrNames returns them).
  policyUsers = policy: builtins.attrNames (policy.users or { });

  # The programs the given users' rules name: one shim each (sorted, no duplicates).
  programsFor = policy: users:
    let
      rules = concatMap (u: policy.users.${u}.rules or [ ]) users;
      programs = map (r: policy.rules.${r}.program) (builtins.filter (r: policy.rules ? ${r}) rules);
    in
    builtins.sort builtins.lessThan (unique programs);

  # The sudoers drop-in: contrib/sudoers.d/gateway with the user list filled in (only on the
  # User_Alias line; the comments keep naming the placeholder).
  sudoers = template: users:
    builtins.replaceStrings [ "GATEWAY_USERS = @USERS@" ]
      [ "GATEWAY_USERS = ${builtins.concatStringsSep ", " users}" ]
      template;

  # A public key line that can only reach the gateway.
  keyLine = key: "restrict,command=\"${gatewayPath} ssh\" ${key}";

  # The sshd Match block for the SSH users. NixOS writes the users' keys (openssh.authorizedKeys)
  # to the root-owned /etc/ssh/authorized_keys.d/%u; the block makes sshd read only that file
  # for them. `Match all` ends the block, so sshd_config lines added after it stay global.
  sshdMatch = users: ''
    Match User ${builtins.concatStringsSep "," users}
        AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u
        AuthorizedKeysCommand none
        ForceCommand ${gatewayPath} ssh
        DisableForwarding yes
        PermitTTY no
        PermitUserRC no
        PermitTunnel no
    Match all
  '';

  # systemd-tmpfiles lines: the binary at its fixed path, the shim directory and its links.
  tmpfiles = package: programs:
    [
      "d /usr/local/bin 0755 root root -"
      "L+ ${gatewayPath} - - - - ${package}/bin/gateway"
      "d /usr/local/lib/gateway 0755 root root -"
      "d ${shimDir} 0755 root root -"
      "d /var/log/gateway 0700 root root -"
    ]
    ++ map (p: "L+ ${shimDir}/${p} - - - - ${gatewayPath}") programs;

  # Managed users named by sudo rules other than the gateway's (security.sudo.extraRules).
  grantsOutsideGateway = extraRules: users:
    unique (builtins.filter (u: builtins.elem u users) (concatMap (r: r.users or [ ]) extraRules));

  # Groups that reach root without the gateway, as `gateway install` reports them.
  rootGroups = [ "root" "wheel" "sudo" "admin" "docker" "lxd" "incus" "libvirtd" "libvirt" "disk" "shadow" ];
}
