# A minimal stand-in for the NixOS options services.podspawn sets (and that its tests and the
# flake's example configurations use), with renderers for the files NixOS would write: the sshd
# config (settings, then extraConfig, like nixpkgs' openssh module), the unit files (like
# nixpkgs' systemd module; [Install] is not rendered, wantedBy becomes symlinks there) and the
# session rules of each PAM service (security.pam.services.<name>.rules.session, ordered by
# `order` like nixpkgs' pam module, which gives its own rules 10000 + 100 per rule).
# Option names, types and defaults follow nixpkgs; only the lib functions nixpkgs' lib/ offers
# are used, so run.sh can evaluate this file with either lib.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption types;
  opt = type: default: mkOption { inherit type default; };

  unitOption = types.oneOf [ types.bool types.int types.str (types.listOf (types.oneOf [ types.bool types.int types.str ])) ];
  unitBase = extra: types.submodule ({ name, ... }: {
    options = {
      enable = opt types.bool true;
      description = opt types.str "";
      wantedBy = opt (types.listOf types.str) [ ];
      requiredBy = opt (types.listOf types.str) [ ];
      unitConfig = opt (types.attrsOf unitOption) { };
      "${extra}Config" = opt (types.attrsOf unitOption) { };
      unitName = mkOption { type = types.str; default = name; readOnly = true; };
    };
  });

  showValue = v: if builtins.isBool v then (if v then "true" else "false") else toString v;
  section = name: attrs: "[${name}]\n" + lib.concatStrings (lib.mapAttrsToList
    (k: v: lib.concatMapStrings (x: "${k}=${showValue x}\n") (if builtins.isList v then v else [ v ]))
    attrs);
  renderUnits = kind: sectionName: units: lib.mapAttrs'
    (name: u: lib.nameValuePair "${name}.${kind}" {
      inherit (u) wantedBy;
      text = section "Unit" (lib.optionalAttrs (u.description != "") { Description = u.description; } // u.unitConfig)
        + "\n" + section sectionName u."${kind}Config";
    })
    (lib.filterAttrs (_: u: u.enable) units);

  # security.pam.services.<name>.rules.<type>.<rule>, as in nixpkgs 25.05 (session rules only).
  pamRule = types.submodule {
    options = {
      enable = opt types.bool true;
      order = mkOption { type = types.int; };
      control = mkOption { type = types.str; };
      modulePath = mkOption { type = types.str; };
      args = opt (types.listOf types.str) [ ];
    };
  };
  renderPam = svc:
    let rules = builtins.sort (a: b: a.order < b.order) (builtins.filter (r: r.enable) (builtins.attrValues svc.rules.session));
    in lib.concatMapStrings (r: "session ${r.control} ${r.modulePath}${lib.concatMapStrings (a: " ${a}") r.args}\n") rules;

  sshdValue = v: if builtins.isBool v then (if v then "yes" else "no") else toString v;
  ssh = config.services.openssh;
in
{
  options = {
    assertions = opt (types.listOf types.unspecified) [ ];
    warnings = opt (types.listOf types.str) [ ];
    system.stateVersion = opt types.str "25.11";
    system.build = opt (types.attrsOf types.unspecified) { };
    boot.isContainer = opt types.bool false;
    networking.hostName = opt types.str "nixos";
    networking.firewall.allowedTCPPorts = opt (types.listOf types.int) [ ];
    environment.systemPackages = opt (types.listOf types.package) [ ];
    virtualisation.docker.enable = opt types.bool false;
    virtualisation.memorySize = opt types.int 1024;
    virtualisation.diskSize = opt types.int 1024;

    users.users = opt
      (types.attrsOf (types.submodule ({ name, config, ... }: {
        options = {
          name = opt types.str name;
          isNormalUser = opt types.bool false;
          isSystemUser = opt types.bool false;
          uid = opt (types.nullOr types.int) null;
          group = opt types.str "";
          extraGroups = opt (types.listOf types.str) [ ];
          description = opt types.str "";
          home = opt types.str (if config.isNormalUser then "/home/${name}" else "/var/empty");
          createHome = opt types.bool config.isNormalUser;
          shell = opt (types.nullOr (types.either types.package types.path)) (if config.isNormalUser then "/run/current-system/sw/bin/bash" else "/run/current-system/sw/bin/nologin");
          hashedPassword = opt (types.nullOr types.str) null;
          openssh.authorizedKeys.keys = opt (types.listOf types.singleLineStr) [ ];
        };
      })))
      { };
    users.groups = opt
      (types.attrsOf (types.submodule ({ name, ... }: {
        options = {
          name = opt types.str name;
          gid = opt (types.nullOr types.int) null;
          members = opt (types.listOf types.str) [ ];
        };
      })))
      { };

    services.openssh = {
      enable = opt types.bool false;
      ports = opt (types.listOf types.port) [ 22 ];
      hostKeys = opt (types.listOf types.str) [ "/etc/ssh/ssh_host_ed25519_key" ];
      authorizedKeysFiles = opt (types.listOf types.str) [ ];
      settings = opt (types.attrsOf (types.nullOr (types.oneOf [ types.bool types.int types.str ]))) {
        PasswordAuthentication = true;
        KbdInteractiveAuthentication = true;
        PermitRootLogin = "prohibit-password";
        X11Forwarding = false;
        UsePAM = true;
      };
      extraConfig = opt types.lines "";
    };

    security.pam.services = opt
      (types.attrsOf (types.submodule {
        options.rules.session = opt (types.attrsOf pamRule) { };
      }))
      { };

    systemd.services = opt (types.attrsOf (unitBase "service")) { };
    systemd.sockets = opt (types.attrsOf (unitBase "socket")) { };
    systemd.timers = opt (types.attrsOf (unitBase "timer")) { };
    systemd.tmpfiles.rules = opt (types.listOf types.str) [ ];

    environment.etc = opt
      (types.attrsOf (types.submodule ({ name, config, ... }: {
        options = {
          enable = opt types.bool true;
          target = opt types.str name;
          text = opt (types.nullOr types.lines) null;
          source = mkOption { type = types.path; };
          mode = opt types.str "symlink";
          user = opt types.str "+0";
          group = opt types.str "+0";
        };
        config.source = lib.mkIf (config.text != null)
          (lib.mkDefault (pkgs.writeText "etc-${baseNameOf name}" config.text));
      })))
      { };
  };

  config = {
    assertions = lib.concatLists (lib.mapAttrsToList
      (name: u: [
        {
          assertion = u.isNormalUser != u.isSystemUser;
          message = "Exactly one of users.users.${name}.isSystemUser and users.users.${name}.isNormalUser must be set.";
        }
        {
          assertion = u.group != "" && config.users.groups ? ${u.group};
          message = "users.users.${name}.group (${u.group}) is unset or not a declared group.";
        }
      ])
      config.users.users);

    system.build = {
      sshdConfig = ''
        UsePAM ${sshdValue ssh.settings.UsePAM}
        ${lib.concatMapStrings (p: "Port ${toString p}\n") ssh.ports}${lib.concatMapStrings (k: "HostKey ${k}\n") ssh.hostKeys}AuthorizedKeysFile ${lib.concatStringsSep " " ([ "%h/.ssh/authorized_keys" ] ++ ssh.authorizedKeysFiles)}
        ${lib.concatStrings (lib.mapAttrsToList (k: v: lib.optionalString (v != null) "${k} ${sshdValue v}\n") (builtins.removeAttrs ssh.settings [ "UsePAM" ]))}
        ${ssh.extraConfig}
      '';
      pam = builtins.mapAttrs (_: renderPam) config.security.pam.services;
      units = renderUnits "service" "Service" config.systemd.services
        // renderUnits "socket" "Socket" config.systemd.sockets
        // renderUnits "timer" "Timer" config.systemd.timers;
      toplevel =
        let failed = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
        in
        if failed != [ ] then throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
        else
          derivation {
            name = "nixos-system-${config.networking.hostName}-stand-in";
            inherit (pkgs.stdenv.hostPlatform) system;
            builder = "/bin/sh";
            args = [ "-c" "echo a stand-in system cannot be built >&2; exit 1" ];
            etc = builtins.toJSON (lib.mapAttrs (_: e: { inherit (e) target mode user group; source = toString e.source; }) config.environment.etc);
            units = builtins.toJSON config.system.build.units;
            sshd = config.system.build.sshdConfig;
            packages = map toString config.environment.systemPackages;
          };
    };
  };
}
